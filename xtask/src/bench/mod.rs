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

mod change;
mod children;
mod converge;
pub mod engines;
mod floor;
pub mod load;
mod report;
mod stats;
mod webhook;

use crate::bench::report::Report;
use crate::cluster::proc::{self, Proc, State};
use crate::cluster::{self, Kubectl, Layout, Profile};
use crate::util::{root, run as sh};
use anyhow::{Context, bail};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Set in the re-executed release process.
const RELEASE_ENV: &str = "LMCACHE_BENCH_RELEASE";

/// Flags of `cargo xtask bench`.
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Engines applied at once in the convergence phase.
    #[arg(long, default_value_t = 1000)]
    pub engines: usize,
    /// Namespaces the engines are spread over.
    #[arg(long, default_value_t = 100)]
    pub namespaces: usize,
    /// Engines present when the operator's memory is measured (no extra engines when not
    /// above --engines).
    #[arg(long, default_value_t = 1000)]
    pub memory_engines: usize,
    /// The operator's --max-concurrent-reconciles, and the floor client's requests in flight.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u16,
    /// Seconds of the steady-state write window after convergence.
    #[arg(long, default_value_t = 60)]
    pub steady_seconds: u64,
    /// Seconds per webhook rate step.
    #[arg(long, default_value_t = 15)]
    pub duration: u64,
    /// Webhook request rates (per second), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000,2000")]
    pub rates: Vec<u32>,
    /// Limit for each wait for convergence, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Skip convergence, steady state and operator memory.
    #[arg(long)]
    pub skip_convergence: bool,
    /// Skip the webhook phase.
    #[arg(long)]
    pub skip_webhook: bool,
    /// Skip the change-latency phase (an operator restart with every engine converged).
    #[arg(long)]
    pub skip_change: bool,
    /// Engines of each kind (LMCacheEngine, CacheBlendEngine) the webhook caches while loaded.
    #[arg(long, default_value_t = 1000)]
    pub webhook_engines: usize,
    /// Leave the cluster running when the bench started it, with the operator phase's engines
    /// (for profiling: run an operator against them by hand).
    #[arg(long)]
    pub keep: bool,
    /// Skip the floor client (no ratios): for quick runs and profiling.
    #[arg(long)]
    pub skip_floor: bool,
    /// Use the shared cluster of `cargo xtask cluster` (target/cluster) instead of the bench's
    /// own (target/bench/cluster), which nothing else starts, stops or loads.
    #[arg(long)]
    pub shared_cluster: bool,
}

/// Where the bench keeps its files and finds the release binaries.
pub struct Paths {
    pub out: PathBuf,
    pub logs: PathBuf,
    pub pids: PathBuf,
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Paths {
    fn new(layout: &Layout) -> anyhow::Result<Self> {
        let out = target_dir().join("bench");
        let exe = std::env::current_exe().context("locating the xtask binary")?;
        Ok(Self {
            logs: out.join("logs"),
            pids: out.join("pids"),
            out,
            bin: exe.parent().map(Path::to_path_buf).unwrap_or_default(),
            kubeconfig: layout.kubeconfig(),
        })
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

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
    crate::e2e::install_crds(kubectl, "lmcache-bench")
}

fn measure(args: &Args, paths: &Paths) -> anyhow::Result<Report> {
    crate::bench::load::install_crypto_provider();
    let mut report = Report::new(args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = crate::bench::engines::connect(&paths.kubeconfig).await?;
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

/// Addresses of a product process' admin endpoints.
pub struct Admin {
    pub metrics: SocketAddr,
    pub health: SocketAddr,
}

impl Admin {
    pub fn new() -> anyhow::Result<Self> {
        let ports = proc::free_ports(2)?;
        Ok(Self {
            metrics: SocketAddr::from((Ipv4Addr::LOCALHOST, ports[0])),
            health: SocketAddr::from((Ipv4Addr::LOCALHOST, ports[1])),
        })
    }
}

/// Starts release binary `program` with its output in `target/bench/logs/<name>.log`.
pub fn spawn(
    paths: &Paths,
    name: &str,
    program: &str,
    args: &[String],
    extra_env: &[(&str, &str)],
) -> anyhow::Result<Proc> {
    let mut env = vec![
        ("KUBECONFIG", paths.kubeconfig.display().to_string()),
        ("RUST_LOG", String::new()),
    ];
    env.extend(extra_env.iter().map(|(key, value)| (*key, value.to_string())));
    // Each product binary is in its release profile's directory next to xtask's.
    let dir = match crate::release::image::profile_of(program) {
        "release" => paths.bin.clone(),
        profile => paths.bin.with_file_name(profile),
    };
    proc::spawn(
        name,
        &dir.join(program),
        args,
        &env,
        &paths.logs,
        &paths.pids,
        false,
    )
}

/// Waits until `/readyz` answers 200 (blocking: call through `spawn_blocking`).
pub async fn wait_ready(paths: &Paths, proc: &Proc, health: SocketAddr) -> anyhow::Result<()> {
    let log = paths.logs.join(format!("{}.log", proc.name));
    let proc = proc.clone();
    tokio::task::spawn_blocking(move || {
        cluster::wait_until(
            &format!("{} ready", proc.name),
            Duration::from_secs(90),
            &[(&proc, log)],
            || matches!(proc::http_get(health, "/readyz"), Ok((200, _))),
        )
    })
    .await?
}

/// The parsed `/metrics` of a local process.
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<Vec<crate::bench::stats::Sample>> {
    let (code, body) = tokio::task::spawn_blocking(move || proc::http_get(addr, "/metrics")).await??;
    if code != 200 {
        bail!("GET {addr}/metrics answered {code}");
    }
    Ok(crate::bench::stats::parse_samples(&body))
}

/// Stops a process started by [`spawn`].
pub async fn stop(proc: Proc) {
    let _ = tokio::task::spawn_blocking(move || {
        if proc.state() == State::Running {
            proc.stop(Duration::from_secs(10));
        }
    })
    .await;
}
