//! `cargo xtask install-test`: the shipped install paths, executed on the local control plane.
//!
//! deploy/install.yaml and then the Helm chart are installed as a user would; the real scheduler
//! puts their pods on kwok nodes (loopback pod IPs), [`crate::install::pod_runner`] runs the binaries of
//! the built OCI image archives for those pods, and the API server reaches the webhook through
//! install.yaml's Service and MutatingWebhookConfiguration ([`crate::install::egress_proxy`] stands in
//! for cluster DNS and kube-proxy). Checked, each a failure when it breaks:
//!
//! 1. both Deployments' processes become ready; the webhook's self-managed Secret exists and its
//!    CA is every webhook entry's `caBundle`;
//! 2. a minimal LMCacheEngine reaches `Running`, and an opted-in vLLM pod created through the
//!    API server is injected;
//! 3. leader election: the controller's pod is deleted, its replacement takes the Lease and
//!    reconciles a spec change;
//! 4. certificate rotation: the webhook runs with a 30 s serving and a 90 s CA lifetime; over a
//!    window holding several serving rotations and a CA rotation, every admission (a dry-run
//!    pod every 250 ms) is injected;
//! 5. `kubectl delete -f install.yaml` leaves nothing: no namespace, cluster-scoped object, CRD,
//!    engine child or process;
//! 6. the chart (default values) does 1–2, and `helm uninstall` leaves the CRDs and their
//!    custom resources (documented) and nothing else of the chart, the self-managed Secret
//!    included.

mod checks;
pub mod egress_proxy;
pub mod pod_runner;

use crate::cluster::client::connect;
use crate::cluster::{self, K8S_VERSION, Kubectl, Layout};
use crate::release::image::{self, Built};
use crate::util::root;
use anyhow::ensure;
use checks::{NS, engine_runs_and_injects, installed, leader_election, nothing_left, rotation, step};
use kube::Client;
use pod_runner::Runner;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Package the existing target/release binaries instead of rebuilding them.
    #[arg(long)]
    pub skip_build: bool,
    /// Leave the cluster running afterwards.
    #[arg(long)]
    pub keep: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let built = image::run(args.skip_build)?;
    run_with(&built, args.keep)
}

/// Runs the install test with already built image archives (CI builds them once).
pub fn run_with(built: &[Built], keep: bool) -> anyhow::Result<()> {
    let layout = Layout::new();
    let _lock = layout.lock()?;
    cluster::up(&layout)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let result = runtime.block_on(scenario(&layout, built));
    runtime.shutdown_timeout(Duration::from_secs(5));
    if !keep {
        cluster::down(&layout)?;
    }
    match &result {
        Ok(()) => eprintln!(
            "[install-test] passed in {:.0} s",
            started.elapsed().as_secs_f64()
        ),
        Err(_) => eprintln!(
            "[install-test] failed; logs in {} (pod-*.log are the runner's processes)",
            layout.logs().display()
        ),
    }
    result
}

async fn scenario(layout: &Layout, built: &[Built]) -> anyhow::Result<()> {
    let client = connect(&layout.kubeconfig()).await?;
    let kubectl = Kubectl::new(layout);
    let version = env!("CARGO_PKG_VERSION");
    let mut images = HashMap::new();
    for b in built {
        let unpacked = pod_runner::unpack(&b.archive, &layout.dir.join("images").join(&b.name))?;
        images.insert(format!("lmcache/{}:{version}", b.name), unpacked);
    }
    let (proxy, routed) = egress_proxy::start(client.clone(), &layout.egress_socket())?;
    let runner = Runner::start(client.clone(), layout, NS, images);
    let result = phases(layout, &client, &kubectl).await;
    let report = runner_report(&runner);
    let result = result.and(report);
    let routed = routed
        .lock()
        .map(|r| format!("{:?}", r.by_endpoint))
        .unwrap_or_default();
    step(&format!(
        "API server connections routed to webhook pods: {routed}"
    ));
    runner.stop();
    proxy.abort();
    result
}

/// Every pod's process started once (none crashed and was restarted) and none failed to start.
fn runner_report(runner: &Runner) -> anyhow::Result<()> {
    let stats = runner
        .stats
        .lock()
        .map_err(|_| anyhow::anyhow!("runner stats poisoned"))?;
    step(&format!("processes started per pod: {:?}", stats.starts));
    ensure!(
        stats.failures.is_empty(),
        "pods the runner could not start: {:?}",
        stats.failures
    );
    let restarted: Vec<&String> = stats
        .starts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(p, _)| p)
        .collect();
    ensure!(
        restarted.is_empty(),
        "processes that exited and were restarted: {restarted:?} (see pod-*.log)"
    );
    Ok(())
}

async fn phases(layout: &Layout, client: &Client, kubectl: &Kubectl) -> anyhow::Result<()> {
    let install = root().join("deploy/install.yaml").display().to_string();
    step("phase 1: kubectl apply --server-side -f deploy/install.yaml");
    kubectl.ok(&["apply", "--server-side", "-f", &install], None)?;
    installed(client).await?;
    let engine = engine_runs_and_injects(client, kubectl, "install-test-a").await?;
    leader_election(client, &engine).await?;
    rotation(client, kubectl, "install-test-a").await?;

    step("kubectl delete -f deploy/install.yaml");
    kubectl.ok(&["delete", "-f", &install, "--wait=true", "--timeout=180s"], None)?;
    nothing_left(client, kubectl, true, "install-test-a").await?;

    step("phase 2: helm install (default values)");
    let helm = crate::release::chart::helm()?;
    let chart = crate::release::chart::chart_dir().display().to_string();
    let kubeconfig = layout.kubeconfig().display().to_string();
    let helm_run = |args: &[&str]| -> anyhow::Result<()> {
        let mut all = vec!["--kubeconfig", kubeconfig.as_str()];
        all.extend_from_slice(args);
        crate::util::run(&helm.display().to_string(), &all)
    };
    helm_run(&[
        "install",
        "lmcache-operator",
        &chart,
        "-n",
        NS,
        "--create-namespace",
        "--wait",
        "--timeout=180s",
    ])?;
    installed(client).await?;
    engine_runs_and_injects(client, kubectl, "install-test-b").await?;
    step("helm uninstall");
    helm_run(&[
        "uninstall",
        "lmcache-operator",
        "-n",
        NS,
        "--wait",
        "--timeout=180s",
    ])?;
    nothing_left(client, kubectl, false, "install-test-b").await?;
    step(&format!(
        "install.yaml and the chart work on Kubernetes {K8S_VERSION}"
    ));
    Ok(())
}
