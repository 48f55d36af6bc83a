//! `cargo xtask e2e --kind`: the suite against the packaged product in a kind cluster.
//!
//! Thin and not exercised by this repository's CI (it needs Docker and kind): creates the kind
//! cluster `lmcache-e2e`, builds and loads the image archives, installs deploy/install.yaml
//! (self-managed webhook TLS: no cert-manager), waits for the Deployments, port-forwards the operator's and the
//! webhook's metrics/health ports to 127.0.0.1 and runs the same test binaries. Tests that need
//! the local-process setup (audit log, loopback webhook URL, fast ServiceMonitor recheck, kwok
//! fake nodes) are skipped; docs/e2e.md lists them.

use crate::cluster::proc;
use crate::release::image;
use crate::util::{root, run as sh, run_env};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

const CLUSTER: &str = "lmcache-e2e";
const NAMESPACE: &str = "lmcache-operator-system";
/// Tests that rely on the local-process setup of plain `cargo xtask e2e`.
pub const SKIPPED: [&str; 4] = [
    // The apiserver audit log of the product identities exists only on the local cluster.
    "f101_admission_with_a_synced_cache_sends_no_api_requests",
    // Expects the loopback `url` webhook registration.
    "f104_registered_webhook_configuration_matches_the_spec",
    // Needs `--servicemonitor-recheck=3s`, which install.yaml does not set.
    "b56_to_b59_g110_service_monitors_without_and_then_with_the_monitoring_api",
    // Adds a kwok fake node.
    "d_a_node_that_starts_matching_gets_a_pod_and_desired_becomes_four",
];

fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn run(test_args: &[String]) -> anyhow::Result<()> {
    for tool in ["docker", "kind", "kubectl"] {
        if !on_path(tool) {
            bail!("`cargo xtask e2e --kind` needs {tool} on PATH");
        }
    }
    let dir = root().join("target/kind");
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    let kc = kubeconfig.display().to_string();
    create_cluster(&kc)?;
    for built in image::run(false)? {
        sh(
            "kind",
            &[
                "load",
                "image-archive",
                &built.archive.display().to_string(),
                "--name",
                CLUSTER,
            ],
        )?;
    }
    install(&kc)?;
    // Metrics and health ports reach the tests through kubectl port-forward on 127.0.0.1.
    let pids = dir.join("port-forward-pids");
    let ports = port_forward(&kc, &dir, &pids)?;
    let kubectl_bin = which("kubectl")?;
    let result = run_tests(&kc, &kubectl_bin, &ports, test_args);
    let stopped = proc::stop_all(&pids);
    eprintln!("[e2e --kind] kind cluster {CLUSTER} kept; delete with `kind delete cluster --name {CLUSTER}`");
    result?;
    stopped.map(|_| ())
}

/// Creates the kind cluster, or writes the kubeconfig of the existing one to `kc`.
fn create_cluster(kc: &str) -> anyhow::Result<()> {
    let clusters = Command::new("kind").args(["get", "clusters"]).output()?;
    if !String::from_utf8_lossy(&clusters.stdout)
        .lines()
        .any(|l| l == CLUSTER)
    {
        sh(
            "kind",
            &[
                "create",
                "cluster",
                "--name",
                CLUSTER,
                "--kubeconfig",
                kc,
                "--wait",
                "120s",
            ],
        )
    } else {
        sh(
            "kind",
            &["export", "kubeconfig", "--name", CLUSTER, "--kubeconfig", kc],
        )
    }
}

/// Applies install.yaml and waits for both Deployments.
fn install(kc: &str) -> anyhow::Result<()> {
    let kubectl = |args: &[&str]| -> anyhow::Result<()> {
        let mut all = vec!["--kubeconfig", kc];
        all.extend_from_slice(args);
        sh("kubectl", &all)
    };
    let install = root().join("deploy/install.yaml").display().to_string();
    kubectl(&["apply", "--server-side", "-f", &install])?;
    for deployment in ["lmcache-operator-controller", "lmcache-operator-webhook"] {
        kubectl(&[
            "rollout",
            "status",
            "-n",
            NAMESPACE,
            &format!("deployment/{deployment}"),
            "--timeout=300s",
        ])?;
    }
    Ok(())
}

/// Port-forwards (recorded in `pids`) of the operator's and the webhook's metrics and health
/// ports; returns the local ports: operator metrics, health, webhook metrics, health.
fn port_forward(kc: &str, dir: &Path, pids: &Path) -> anyhow::Result<Vec<u16>> {
    proc::stop_all(pids)?;
    let ports = proc::free_ports(4)?;
    let logs = dir.join("logs");
    for (deployment, metrics, health) in [
        ("lmcache-operator-controller", ports[0], ports[1]),
        ("lmcache-operator-webhook", ports[2], ports[3]),
    ] {
        proc::spawn(
            &format!("port-forward-{deployment}"),
            Path::new("kubectl"),
            &[
                format!("--kubeconfig={kc}"),
                "port-forward".into(),
                "--address=127.0.0.1".into(),
                "-n".into(),
                NAMESPACE.into(),
                format!("deployment/{deployment}"),
                format!("{metrics}:8080"),
                format!("{health}:8081"),
            ],
            &[],
            &logs,
            pids,
            false,
        )?;
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    Ok(ports)
}

/// The e2e test binaries against the kind cluster, without the [`SKIPPED`] tests.
fn run_tests(kc: &str, kubectl_bin: &Path, ports: &[u16], test_args: &[String]) -> anyhow::Result<()> {
    let addr = |port: u16| format!("127.0.0.1:{port}");
    let env = [
        ("LMCACHE_E2E_KUBECONFIG", kc.to_string()),
        ("LMCACHE_E2E_KUBECTL", kubectl_bin.display().to_string()),
        ("LMCACHE_E2E_OPERATOR_NAMESPACE", NAMESPACE.to_string()),
        ("LMCACHE_E2E_OPERATOR_METRICS", addr(ports[0])),
        ("LMCACHE_E2E_OPERATOR_HEALTH", addr(ports[1])),
        ("LMCACHE_E2E_WEBHOOK_METRICS", addr(ports[2])),
        ("LMCACHE_E2E_WEBHOOK_HEALTH", addr(ports[3])),
        // What the apiserver calls; tests use it only as "the webhook is installed" and never dial it.
        (
            "LMCACHE_E2E_WEBHOOK_URL",
            format!("https://lmcache-operator-webhook.{NAMESPACE}.svc:443/mutate-cacheblend-pod"),
        ),
    ];
    let mut test = vec![
        "test",
        "-p",
        "lmcache-e2e",
        "--tests",
        "--",
        "--ignored",
        "--test-threads=4",
    ];
    for name in SKIPPED {
        test.extend(["--skip", name]);
    }
    test.extend(test_args.iter().map(String::as_str));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_env("cargo", &test, &env_refs)
}

fn which(program: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").context("PATH is not set")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("{program} not found on PATH"))
}
