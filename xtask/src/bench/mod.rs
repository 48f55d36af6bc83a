//! `cargo xtask bench`: convergence, steady-state writes, webhook latency and memory of the
//! release binaries on the local control plane (issue 8; docs/benchmarks.md). Not part of `ci`.
//!
//! Everything is measured against a floor doing the least possible work on the same machine in
//! the same run, because the 2 shared cores make absolute figures noisy. The bench re-runs
//! itself as a release build (a debug load generator or floor client would flatter the product)
//! and by default starts its own control plane in `target/bench/cluster` (same processes and
//! flags as `cargo xtask cluster`), so an e2e run can neither reconcile the bench's engines nor
//! restart the cluster mid-measurement; it uses `bench-*` namespaces and its own ports, and
//! stops the cluster afterwards only if it started it (and not with `--keep`).

mod args;
mod change;
mod children;
mod converge;
pub mod engines;
mod floor;
pub mod load;
mod phase;
mod report;
mod stats;
mod webhook;

pub use args::Args;

use crate::cluster::proc;
use crate::cluster::{self, Kubectl, Layout, Profile};
use crate::util::{root, run as sh, target_dir};
use anyhow::{Context, bail};
use phase::Paths;
use report::Report;
use std::time::Instant;

/// Set in the re-executed release process.
const RELEASE_ENV: &str = "LMCACHE_BENCH_RELEASE";

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.engines == 0 || args.namespaces == 0 || args.concurrency == 0 {
        bail!("--engines, --namespaces and --concurrency must be positive");
    }
    if cfg!(debug_assertions) && std::env::var_os(RELEASE_ENV).is_none() {
        return reexec_release();
    }
    let started = Instant::now();
    let layout = if args.shared_cluster {
        Layout::new()
    } else {
        Layout {
            dir: target_dir().join("bench/cluster"),
            profile: Profile::Bench,
        }
    };
    let _lock = layout.lock()?;
    let paths = Paths::new(&layout)?;
    std::fs::create_dir_all(&paths.logs)?;
    // Leftovers of an interrupted bench would skew every figure.
    proc::stop_all(&paths.pids)?;
    let started_cluster = cluster::up(&layout)?;
    let result = prepare(&Kubectl::new(&layout)).and_then(|()| measure(&args, &paths));
    let stopped = proc::stop_all(&paths.pids);
    let cleaned = if started_cluster && !args.keep {
        cluster::down(&layout)
    } else {
        Ok(())
    };
    eprintln!("[bench] finished in {:.1}s", started.elapsed().as_secs_f64());
    let report = result?;
    stopped?;
    cleaned?;
    let markdown = report.to_markdown();
    std::fs::write(
        paths.out.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(paths.out.join("report.md"), &markdown)?;
    println!("{markdown}");
    eprintln!(
        "[bench] wrote {} and report.md",
        paths.out.join("report.json").display()
    );
    Ok(())
}

/// Builds the operator, the webhook and xtask with their release profiles and runs the bench
/// there.
fn reexec_release() -> anyhow::Result<()> {
    sh(
        "cargo",
        &["build", "--release", "-p", "lmcache-operator", "-p", "xtask"],
    )?;
    let webhook_profile = crate::release::image::profile_of("lmcache-webhook");
    sh(
        "cargo",
        &["build", "--profile", webhook_profile, "-p", "lmcache-webhook"],
    )?;
    let exe = target_dir().join("release/xtask");
    let mut command = std::process::Command::new(&exe);
    for var in crate::util::cargo_run_vars() {
        command.env_remove(var);
    }
    let status = command
        .args(std::env::args_os().skip(1))
        .env(RELEASE_ENV, "1")
        .current_dir(root())
        .status()
        .with_context(|| format!("starting {}", exe.display()))?;
    if !status.success() {
        bail!("the release bench failed with {status}");
    }
    Ok(())
}

/// A second Service CIDR: the cluster's own /24 holds 254 ClusterIPs and every engine has a
/// ClusterIP Service, so 300+ engines would fail with "range is full". Never dialled.
const SERVICE_CIDR: &str = "apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata:
  name: lmcache-bench
spec:
  cidrs: [10.96.0.0/16]
";

/// CRDs and room for thousands of Services.
fn prepare(kubectl: &Kubectl) -> anyhow::Result<()> {
    kubectl.ok(
        &[
            "apply",
            "--server-side",
            "--field-manager=lmcache-bench",
            "-f",
            "-",
        ],
        Some(SERVICE_CIDR),
    )?;
    crate::e2e::product::install_crds(kubectl, "lmcache-bench")
}

fn measure(args: &Args, paths: &Paths) -> anyhow::Result<Report> {
    crate::bench::load::install_crypto_provider();
    let mut report = Report::new(args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = crate::cluster::client::connect(&paths.kubeconfig).await?;
        if !args.skip_convergence {
            report.convergence = Some(converge::run(&client, args, paths).await?);
        }
        if !args.skip_webhook {
            report.webhook = Some(webhook::run(&client, args, paths).await?);
        }
        anyhow::Ok(())
    })?;
    Ok(report)
}
