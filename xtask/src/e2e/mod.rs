//! `cargo xtask e2e`: the end-to-end suite against the local cluster.
//!
//! Ensures the cluster is up, installs the CRDs, runs the operator and the webhook as local
//! processes on 127.0.0.1 (the webhook behind a MutatingWebhookConfiguration with a `url`
//! client config), runs `cargo test -p lmcache-e2e -- --ignored`, and always stops the
//! processes again; the cluster is stopped too unless `--keep`.

pub mod kind;
pub mod rbac;

use crate::cluster::pki::{self, Ca};
use crate::cluster::proc::{self, Proc, State};
use crate::cluster::{self, Kubectl, Layout};
use crate::util::{root, run as sh, run_env};
use anyhow::{Context, bail};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Namespace the operator treats as its own (leader Lease, webhook exclusion).
pub const SYSTEM_NAMESPACE: &str = "lmcache-e2e-system";
const MWC_NAME: &str = "lmcache-e2e-cacheblend-injector";
const CRDS: [&str; 3] = [
    "lmcacheengines.lmcache.lmcache.ai",
    "cacheblendengines.lmcache.lmcache.ai",
    "lmcachecoordinators.lmcache.lmcache.ai",
];

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

/// What the suite exports to the tests about the product processes.
pub struct Product {
    pub env: Vec<(&'static str, String)>,
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

/// Debug builds of the operator and the webhook (what [`start_product`] runs).
pub fn build_product() -> anyhow::Result<()> {
    sh(
        "cargo",
        &["build", "-p", "lmcache-operator", "-p", "lmcache-webhook"],
    )
}

/// Applies `deploy/crds/` (server-side, as `field_manager`) and waits until every CRD is
/// Established.
pub fn install_crds(kubectl: &Kubectl, field_manager: &str) -> anyhow::Result<()> {
    let dir = root().join("deploy/crds");
    kubectl.ok(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            &format!("--field-manager={field_manager}"),
            "-f",
            &dir.display().to_string(),
        ],
        None,
    )?;
    // Not `kubectl wait --for=condition=Established`: it fails at once ("`.status.conditions`
    // accessor error") on a CRD so new that it has no conditions yet.
    crate::cluster::wait_until(
        "the CRDs Established",
        std::time::Duration::from_secs(60),
        &[],
        || {
            CRDS.iter().all(|crd| {
                kubectl
                    .ok(
                        &[
                            "get",
                            &format!("crd/{crd}"),
                            "-o",
                            "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
                        ],
                        None,
                    )
                    .is_ok_and(|s| s.trim() == "True")
            })
        },
    )
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Starts the webhook and the operator; a component that does not become ready is reported
/// and left out of the exported environment (its tests then fail on the missing variable).
/// With `detached` they get their own process groups (the demo leaves them running after the
/// terminal's Ctrl-C); either way they are recorded in `e2e-pids`, which `cluster down` stops.
pub fn start_product(layout: &Layout, kubectl: &Kubectl, detached: bool) -> anyhow::Result<Product> {
    kubectl.ok(
        &["apply", "--server-side", "--field-manager=lmcache-e2e", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {SYSTEM_NAMESPACE}\n"
        )),
    )?;
    let ports = proc::free_ports(5)?;
    let addr = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let (webhook_port, webhook_metrics, webhook_health) = (ports[0], addr(ports[1]), addr(ports[2]));
    let (operator_metrics, operator_health) = (addr(ports[3]), addr(ports[4]));
    // Each process runs as its install.yaml ServiceAccount (a TokenRequest token), so a verb
    // missing from the generated RBAC fails the tests, and the audit log tells them apart.
    rbac::apply(kubectl, SYSTEM_NAMESPACE)?;
    let webhook_kubeconfig = rbac::token_kubeconfig(layout, kubectl, SYSTEM_NAMESPACE, rbac::WEBHOOK_SA)?;
    let operator_kubeconfig = rbac::token_kubeconfig(layout, kubectl, SYSTEM_NAMESPACE, rbac::CONTROLLER_SA)?;
    let proc_env = |kubeconfig: &PathBuf| {
        [
            ("KUBECONFIG", kubeconfig.display().to_string()),
            ("POD_NAMESPACE", SYSTEM_NAMESPACE.to_string()),
            ("RUST_LOG", "info".to_string()),
        ]
    };
    let bin = target_dir().join("debug");
    let mut env = Vec::new();

    let certs = layout.dir.join("webhook-certs");
    std::fs::create_dir_all(&certs)?;
    let ca = Ca::new("lmcache-e2e-webhook-ca")?;
    let (crt, key) = ca.serving("lmcache-e2e-webhook")?;
    pki::write(&certs.join("tls.crt"), &crt)?;
    pki::write(&certs.join("tls.key"), &key)?;
    let webhook_args = vec![
        "serve".to_string(),
        "--bind-address=127.0.0.1".to_string(),
        format!("--port={webhook_port}"),
        format!("--cert-dir={}", certs.display()),
        format!("--metrics-bind-address={webhook_metrics}"),
        format!("--health-probe-bind-address={webhook_health}"),
    ];
    // What exclusive tests need to run the product themselves, exactly as here.
    env.push(("LMCACHE_E2E_BIN_DIR", bin.display().to_string()));
    env.push(("LMCACHE_E2E_WEBHOOK_ARGS", serde_json::to_string(&webhook_args)?));
    env.push((
        "LMCACHE_E2E_WEBHOOK_KUBECONFIG",
        webhook_kubeconfig.display().to_string(),
    ));
    env.push((
        "LMCACHE_E2E_OPERATOR_KUBECONFIG",
        operator_kubeconfig.display().to_string(),
    ));
    let webhook = proc::spawn(
        "lmcache-webhook",
        &bin.join("lmcache-webhook"),
        &webhook_args,
        &proc_env(&webhook_kubeconfig),
        &layout.logs(),
        &layout.e2e_pids(),
        detached,
    )?;
    let operator = proc::spawn(
        "lmcache-operator",
        &bin.join("lmcache-operator"),
        &[
            "run".to_string(),
            "--leader-elect".to_string(),
            format!("--metrics-bind-address={operator_metrics}"),
            format!("--health-probe-bind-address={operator_health}"),
            // The ServiceMonitor e2e test installs that CRD mid-run; notice it within seconds.
            "--servicemonitor-recheck=3s".to_string(),
        ],
        &proc_env(&operator_kubeconfig),
        &layout.logs(),
        &layout.e2e_pids(),
        detached,
    )?;

    if ready(layout, &webhook, webhook_health) {
        let base = format!("https://127.0.0.1:{webhook_port}");
        register_webhook(kubectl, &base, &ca.pem())?;
        env.push(("LMCACHE_E2E_WEBHOOK_URL", format!("{base}/mutate-cacheblend-pod")));
        env.push((
            "LMCACHE_E2E_LMCACHE_WEBHOOK_URL",
            format!("{base}/mutate-lmcache-pod"),
        ));
        env.push(("LMCACHE_E2E_WEBHOOK_METRICS", webhook_metrics.to_string()));
        env.push(("LMCACHE_E2E_WEBHOOK_HEALTH", webhook_health.to_string()));
    }
    if ready(layout, &operator, operator_health) {
        env.push(("LMCACHE_E2E_OPERATOR_METRICS", operator_metrics.to_string()));
        env.push(("LMCACHE_E2E_OPERATOR_HEALTH", operator_health.to_string()));
    }
    Ok(Product { env })
}

/// Waits up to 90 s for `/readyz` = 200; false (with the log tail) when it never comes.
fn ready(layout: &Layout, proc: &Proc, health: SocketAddr) -> bool {
    let log = layout.logs().join(format!("{}.log", proc.name));
    let result = cluster::wait_until(
        &format!("{} ready", proc.name),
        Duration::from_secs(90),
        &[(proc, log.clone())],
        || matches!(proc::http_get(health, "/readyz"), Ok((200, _))),
    );
    match result {
        Ok(()) => true,
        Err(e) => {
            eprintln!(
                "[e2e] WARNING: {} is not usable ({e:#}); its tests will fail. Log tail:\n{}",
                proc.name,
                proc::log_tail(&log, 20)
            );
            if proc.state() == State::Running {
                proc.stop(Duration::from_secs(5));
            }
            false
        }
    }
}

/// install.yaml's webhook entries (both injectors) with loopback `url` client configs under
/// `base` (`https://127.0.0.1:PORT`).
fn webhook_configuration(base: &str, ca_pem: &str) -> anyhow::Result<String> {
    let ca = pki::base64(ca_pem.as_bytes());
    let hooks: Vec<serde_json::Value> = crate::release::manifests::webhook_entries(SYSTEM_NAMESPACE)
        .into_iter()
        .map(|(mut hook, path)| {
            hook["clientConfig"] = serde_json::json!({"url": format!("{base}{path}"), "caBundle": ca});
            hook
        })
        .collect();
    let mwc = serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": MWC_NAME, "labels": {"app.kubernetes.io/name": "lmcache-operator",
                                                  "app.kubernetes.io/component": "webhook"}},
        "webhooks": hooks,
    });
    Ok(serde_json::to_string(&mwc)?)
}

/// A dry-run pod that opts in and names a missing engine: once the webhook is wired up the
/// apiserver returns it annotated (skip reason `engine-not-found`).
const PROBE_POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: lmcache-e2e-webhook-probe
  namespace: default
  labels:
    lmcache.ai/cacheblend-inject: "true"
  annotations:
    lmcache.ai/cacheblend-engine: lmcache-e2e-probe-no-such-engine
spec:
  containers:
    - name: vllm
      image: example.invalid/vllm:probe
"#;

fn register_webhook(kubectl: &Kubectl, base: &str, ca_pem: &str) -> anyhow::Result<()> {
    kubectl.ok(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=lmcache-e2e",
            "-f",
            "-",
        ],
        Some(&webhook_configuration(base, ca_pem)?),
    )?;
    // The apiserver picks up webhook configurations through an informer: probe until it calls us.
    let mut last = String::new();
    let probe = cluster::wait_until(
        "webhook called by the apiserver",
        Duration::from_secs(60),
        &[],
        || match kubectl.ok(
            &["create", "--dry-run=server", "-o", "json", "-f", "-"],
            Some(PROBE_POD),
        ) {
            Ok(out) => {
                last = out;
                last.contains("lmcache.ai/cacheblend-skip-reason")
                    || last.contains("lmcache.ai/cacheblend-injected")
            }
            Err(e) => {
                last = format!("{e:#}");
                false
            }
        },
    );
    probe.with_context(|| format!("last dry-run answer: {last}"))
}

fn remove_webhook_configuration(layout: &Layout) -> anyhow::Result<()> {
    if !cluster::is_up(layout)? {
        return Ok(());
    }
    let out = Kubectl::new(layout).output(
        &[
            "delete",
            "mutatingwebhookconfiguration",
            MWC_NAME,
            "--ignore-not-found",
        ],
        None,
    )?;
    if !out.status.success() {
        bail!(
            "deleting {MWC_NAME}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    eprintln!(
        "[e2e] cluster kept running; KUBECONFIG={}",
        layout.kubeconfig().display()
    );
    Ok(())
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

    #[test]
    fn webhook_configuration_is_install_yamls_with_loopback_urls() {
        let text = webhook_configuration("https://127.0.0.1:9443", "PEM").unwrap();
        let mwc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let hooks = mwc["webhooks"].as_array().unwrap();
        let urls: Vec<&str> = hooks
            .iter()
            .map(|h| h["clientConfig"]["url"].as_str().unwrap())
            .collect();
        assert_eq!(
            urls,
            [
                "https://127.0.0.1:9443/mutate-cacheblend-pod",
                "https://127.0.0.1:9443/mutate-lmcache-pod"
            ]
        );
        for (hook, label) in hooks
            .iter()
            .zip(["lmcache.ai/cacheblend-inject", "lmcache.ai/lmcache-inject"])
        {
            assert_eq!(hook["failurePolicy"], "Ignore");
            assert_eq!(hook["clientConfig"]["caBundle"], "UEVN");
            assert_eq!(hook["objectSelector"]["matchLabels"][label], "true");
            let excluded = &hook["namespaceSelector"]["matchExpressions"][0]["values"];
            assert_eq!(
                excluded,
                &serde_json::json!(["kube-system", "kube-public", "lmcache-e2e-system"])
            );
        }
    }
}
