//! The product as `cargo xtask e2e` and `cargo xtask demo` run it: the CRDs, and the operator
//! and the webhook as local processes on 127.0.0.1 running as their install.yaml ServiceAccounts
//! (the webhook behind a MutatingWebhookConfiguration with loopback `url` client configs).

use crate::cluster::pki::{self, Ca};
use crate::cluster::proc::{self, Proc, State};
use crate::cluster::{self, Kubectl, Layout};
use crate::e2e::rbac;
use crate::util::{root, run as sh, target_dir};
use anyhow::{Context, bail};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Namespace the operator treats as its own (leader Lease, webhook exclusion).
pub const SYSTEM_NAMESPACE: &str = "lmcache-e2e-system";
const MWC_NAME: &str = "lmcache-e2e-cacheblend-injector";
const CRDS: [&str; 3] = [
    "lmcacheengines.lmcache.lmcache.ai",
    "cacheblendengines.lmcache.lmcache.ai",
    "lmcachecoordinators.lmcache.lmcache.ai",
];

/// What the suite exports to the tests about the product processes.
pub struct Product {
    pub env: Vec<(&'static str, String)>,
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

/// Loopback addresses of the product processes: the webhook's HTTPS port and the admin
/// endpoints of both.
struct Ports {
    webhook: u16,
    webhook_metrics: SocketAddr,
    webhook_health: SocketAddr,
    operator_metrics: SocketAddr,
    operator_health: SocketAddr,
}

impl Ports {
    fn free() -> anyhow::Result<Self> {
        let ports = proc::free_ports(5)?;
        let addr = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        Ok(Self {
            webhook: ports[0],
            webhook_metrics: addr(ports[1]),
            webhook_health: addr(ports[2]),
            operator_metrics: addr(ports[3]),
            operator_health: addr(ports[4]),
        })
    }
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
    let ports = Ports::free()?;
    // Each process runs as its install.yaml ServiceAccount (a TokenRequest token), so a verb
    // missing from the generated RBAC fails the tests, and the audit log tells them apart.
    rbac::apply(kubectl, SYSTEM_NAMESPACE)?;
    let webhook_kubeconfig = rbac::token_kubeconfig(layout, kubectl, SYSTEM_NAMESPACE, rbac::WEBHOOK_SA)?;
    let operator_kubeconfig = rbac::token_kubeconfig(layout, kubectl, SYSTEM_NAMESPACE, rbac::CONTROLLER_SA)?;
    let bin = target_dir().join("debug");
    let (ca, webhook_args) = webhook_serving(layout, &ports)?;
    // What exclusive tests need to run the product themselves, exactly as here.
    let mut env = vec![
        ("LMCACHE_E2E_BIN_DIR", bin.display().to_string()),
        ("LMCACHE_E2E_WEBHOOK_ARGS", serde_json::to_string(&webhook_args)?),
        (
            "LMCACHE_E2E_WEBHOOK_KUBECONFIG",
            webhook_kubeconfig.display().to_string(),
        ),
        (
            "LMCACHE_E2E_OPERATOR_KUBECONFIG",
            operator_kubeconfig.display().to_string(),
        ),
    ];
    let spawn = |name: &str, args: &[String], kubeconfig: &PathBuf| {
        let env = [
            ("KUBECONFIG", kubeconfig.display().to_string()),
            ("POD_NAMESPACE", SYSTEM_NAMESPACE.to_string()),
            ("RUST_LOG", "info".to_string()),
        ];
        let (logs, pids) = (layout.logs(), layout.e2e_pids());
        proc::spawn(name, &bin.join(name), args, &env, &logs, &pids, detached)
    };
    let webhook = spawn("lmcache-webhook", &webhook_args, &webhook_kubeconfig)?;
    let operator = spawn("lmcache-operator", &operator_args(&ports), &operator_kubeconfig)?;

    if ready(layout, &webhook, ports.webhook_health) {
        let base = format!("https://127.0.0.1:{}", ports.webhook);
        register_webhook(kubectl, &base, &ca.pem())?;
        env.push(("LMCACHE_E2E_WEBHOOK_URL", format!("{base}/mutate-cacheblend-pod")));
        env.push((
            "LMCACHE_E2E_LMCACHE_WEBHOOK_URL",
            format!("{base}/mutate-lmcache-pod"),
        ));
        env.push(("LMCACHE_E2E_WEBHOOK_METRICS", ports.webhook_metrics.to_string()));
        env.push(("LMCACHE_E2E_WEBHOOK_HEALTH", ports.webhook_health.to_string()));
    }
    if ready(layout, &operator, ports.operator_health) {
        env.push(("LMCACHE_E2E_OPERATOR_METRICS", ports.operator_metrics.to_string()));
        env.push(("LMCACHE_E2E_OPERATOR_HEALTH", ports.operator_health.to_string()));
    }
    Ok(Product { env })
}

/// A fresh CA and serving certificate for the webhook in `webhook-certs/`; returns the CA (for
/// the webhook configuration) and the webhook's command line.
fn webhook_serving(layout: &Layout, ports: &Ports) -> anyhow::Result<(Ca, Vec<String>)> {
    let certs = layout.dir.join("webhook-certs");
    std::fs::create_dir_all(&certs)?;
    let ca = Ca::new("lmcache-e2e-webhook-ca")?;
    let (crt, key) = ca.serving("lmcache-e2e-webhook")?;
    pki::write(&certs.join("tls.crt"), &crt)?;
    pki::write(&certs.join("tls.key"), &key)?;
    let args = vec![
        "serve".to_string(),
        "--bind-address=127.0.0.1".to_string(),
        format!("--port={}", ports.webhook),
        format!("--cert-dir={}", certs.display()),
        format!("--metrics-bind-address={}", ports.webhook_metrics),
        format!("--health-probe-bind-address={}", ports.webhook_health),
    ];
    Ok((ca, args))
}

fn operator_args(ports: &Ports) -> Vec<String> {
    vec![
        "run".to_string(),
        "--leader-elect".to_string(),
        format!("--metrics-bind-address={}", ports.operator_metrics),
        format!("--health-probe-bind-address={}", ports.operator_health),
        // The ServiceMonitor e2e test installs that CRD mid-run; notice it within seconds.
        "--servicemonitor-recheck=3s".to_string(),
    ]
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
    kubectl.force_apply("lmcache-e2e", &webhook_configuration(base, ca_pem)?)?;
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

/// Deletes the loopback MutatingWebhookConfiguration of a kept cluster (the webhook it points at
/// is stopped).
pub fn remove_webhook_configuration(layout: &Layout) -> anyhow::Result<()> {
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
