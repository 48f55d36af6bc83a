//! `cargo xtask e2e`: the end-to-end suite against the local cluster.
//!
//! Ensures the cluster is up, installs the CRDs, runs the operator and the webhook as local
//! processes on 127.0.0.1 (the webhook behind a MutatingWebhookConfiguration with a `url`
//! client config), runs `cargo test -p lmcache-e2e -- --ignored`, and always stops the
//! processes again; the cluster is stopped too unless `--keep`.

pub mod kind;
pub mod product;
pub mod rbac;

use crate::cluster::proc;
use crate::cluster::{self, Kubectl, Layout};
use crate::util::{run as sh, run_env};
use product::{SYSTEM_NAMESPACE, build_product, install_crds, remove_webhook_configuration, start_product};
use std::path::PathBuf;
use std::time::Instant;

/// Flags of `cargo xtask e2e`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Leave the cluster running afterwards (the operator and webhook are always stopped).
    #[arg(long)]
    keep: bool,
    /// Instead: run the suite against install.yaml in a kind cluster (needs Docker and kind;
    /// not exercised by CI; see docs/e2e.md).
    #[arg(long)]
    kind: bool,
    /// Write every test namespace's objects as conformance case files into this directory
    /// (what `cargo xtask ci` feeds to `cargo xtask conformance`).
    #[arg(long)]
    pub capture: Option<PathBuf>,
    /// Extra arguments for the test binaries (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    test_args: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.kind {
        return kind::run(&args.test_args);
    }
    let started = Instant::now();
    let layout = Layout::new();
    let _lock = layout.lock()?;
    // Leftovers of an interrupted run would reconcile alongside the new operator.
    proc::stop_all(&layout.e2e_pids())?;
    let result = cluster::up(&layout).and_then(|_| {
        eprintln!("[e2e] cluster ready at {:.1}s", started.elapsed().as_secs_f64());
        suite(&layout, &args)
    });
    // Cleanup runs whatever happened above, so failing tests leave no processes behind.
    let stopped = proc::stop_all(&layout.e2e_pids());
    let cleaned = if args.keep {
        remove_webhook_configuration(&layout)
    } else {
        cluster::down(&layout)
    };
    eprintln!("[e2e] finished in {:.1}s", started.elapsed().as_secs_f64());
    result?;
    stopped?;
    cleaned
}

fn suite(layout: &Layout, args: &Args) -> anyhow::Result<()> {
    let kubectl = Kubectl::new(layout);
    install_crds(&kubectl, "lmcache-e2e")?;
    // Build everything first, so no process idles against the cluster while cargo compiles.
    build_product()?;
    sh("cargo", &["test", "-p", "lmcache-e2e", "--tests", "--no-run"])?;
    let product = start_product(layout, &kubectl, false)?;

    let mut env: Vec<(&str, String)> = vec![
        (
            "LMCACHE_E2E_KUBECONFIG",
            layout.kubeconfig().display().to_string(),
        ),
        ("LMCACHE_E2E_KUBECTL", kubectl.bin.display().to_string()),
        ("LMCACHE_E2E_OPERATOR_NAMESPACE", SYSTEM_NAMESPACE.to_string()),
        ("LMCACHE_E2E_LOGS", layout.logs().display().to_string()),
        ("LMCACHE_E2E_AUDIT_LOG", layout.audit_log().display().to_string()),
    ];
    env.extend(product.env);
    if let Some(dir) = &args.capture {
        std::fs::create_dir_all(dir)?;
        env.push(("LMCACHE_CONFORMANCE_CAPTURE", dir.display().to_string()));
    }
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let started = Instant::now();
    // Phase 1: every test against the shared operator and webhook, except `alone_*` ones.
    let mut shared = test_command(4);
    shared.extend(["--skip", EXCLUSIVE]);
    shared.extend(args.test_args.iter().map(String::as_str));
    let result = run_env("cargo", &shared, &env_refs);
    eprintln!(
        "[e2e] shared tests took {:.1}s; product logs in {}",
        started.elapsed().as_secs_f64(),
        layout.logs().display()
    );
    // Phase 2: tests that start and stop the product themselves (leader hand-over, the webhook
    // down), one at a time with the shared processes stopped.
    let filters = exclusive_filters(&args.test_args);
    let exclusive = if filters.is_empty() {
        Ok(())
    } else {
        proc::stop_all(&layout.e2e_pids())?;
        let started = Instant::now();
        let mut alone = test_command(1);
        alone.extend(filters.iter().map(String::as_str));
        let result = run_env("cargo", &alone, &env_refs);
        eprintln!(
            "[e2e] exclusive tests took {:.1}s",
            started.elapsed().as_secs_f64()
        );
        result
    };
    result.and(exclusive)
}

/// Name prefix of the tests that need the cluster to themselves.
const EXCLUSIVE: &str = "alone_";

/// `cargo test` of the e2e suite with `threads` test threads.
fn test_command(threads: usize) -> Vec<&'static str> {
    // `--tests`: every suite is an integration test; skipping doctests saves a rustdoc build.
    let threads = if threads == 1 {
        "--test-threads=1"
    } else {
        "--test-threads=4"
    };
    vec![
        "test",
        "-p",
        "lmcache-e2e",
        "--tests",
        // Report every failing suite, not only the first.
        "--no-fail-fast",
        "--",
        "--ignored",
        threads,
    ]
}

/// The filters of the exclusive phase: all exclusive tests without a user filter, else only
/// the user's filters that name exclusive tests (libtest ORs filters).
fn exclusive_filters(user: &[String]) -> Vec<String> {
    if user.is_empty() {
        return vec![EXCLUSIVE.to_string()];
    }
    user.iter()
        .filter(|f| f.starts_with(EXCLUSIVE))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_phase_filters() {
        assert_eq!(exclusive_filters(&[]), ["alone_"]);
        let user = ["b64".to_string(), "alone_leader".to_string()];
        assert_eq!(exclusive_filters(&user), ["alone_leader"]);
        assert!(exclusive_filters(&["b64".to_string()]).is_empty());
    }
}
