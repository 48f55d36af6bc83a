//! Where the test cluster and the product processes are, from `LMCACHE_E2E_*` variables.
//!
//! `cargo xtask e2e` exports them. For a cluster started with `cargo xtask cluster up`, the
//! kubeconfig and kubectl also come from `target/cluster/e2e.env`. The user's `KUBECONFIG` is
//! deliberately never read, so the suite cannot run against a real cluster by accident.

use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The kubeconfig of the test cluster.
pub fn kubeconfig() -> anyhow::Result<PathBuf> {
    required("LMCACHE_E2E_KUBECONFIG").map(PathBuf::from)
}

/// The kubectl binary built with the control plane.
pub fn kubectl() -> anyhow::Result<PathBuf> {
    required("LMCACHE_E2E_KUBECTL").map(PathBuf::from)
}

/// The API server's audit log (requests of the operator and webhook identities only).
pub fn audit_log() -> anyhow::Result<PathBuf> {
    required("LMCACHE_E2E_AUDIT_LOG").map(PathBuf::from)
}

/// The product's debug binaries.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    required("LMCACHE_E2E_BIN_DIR").map(PathBuf::from)
}

/// Where product logs go (`target/cluster/logs`).
pub fn logs() -> anyhow::Result<PathBuf> {
    required("LMCACHE_E2E_LOGS").map(PathBuf::from)
}

/// The operator's install.yaml ServiceAccount as a kubeconfig (a TokenRequest token).
pub fn operator_kubeconfig() -> anyhow::Result<PathBuf> {
    required("LMCACHE_E2E_OPERATOR_KUBECONFIG").map(PathBuf::from)
}

/// The webhook's install.yaml ServiceAccount as a kubeconfig.
pub fn webhook_kubeconfig() -> anyhow::Result<PathBuf> {
    required("LMCACHE_E2E_WEBHOOK_KUBECONFIG").map(PathBuf::from)
}

/// The namespace the operator runs in (its leader Lease; excluded from the webhook).
pub fn operator_namespace() -> String {
    lookup("LMCACHE_E2E_OPERATOR_NAMESPACE").unwrap_or_else(|| "lmcache-e2e-system".to_string())
}

/// The operator's metrics address (`127.0.0.1:<port>`), set once it became ready.
pub fn operator_metrics() -> anyhow::Result<SocketAddr> {
    loopback("LMCACHE_E2E_OPERATOR_METRICS", "lmcache-operator")
}

/// The operator's `/healthz` + `/readyz` address.
pub fn operator_health() -> anyhow::Result<SocketAddr> {
    loopback("LMCACHE_E2E_OPERATOR_HEALTH", "lmcache-operator")
}

/// The webhook's metrics address.
pub fn webhook_metrics() -> anyhow::Result<SocketAddr> {
    loopback("LMCACHE_E2E_WEBHOOK_METRICS", "lmcache-webhook")
}

/// The webhook's `/healthz` + `/readyz` address.
pub fn webhook_health() -> anyhow::Result<SocketAddr> {
    loopback("LMCACHE_E2E_WEBHOOK_HEALTH", "lmcache-webhook")
}

/// The URL the MutatingWebhookConfiguration calls (`https://127.0.0.1:<port>/...`); set only
/// when the webhook became ready and the apiserver was seen calling it.
pub fn webhook_url() -> anyhow::Result<String> {
    product("LMCACHE_E2E_WEBHOOK_URL", "lmcache-webhook")
}

/// The URL of the connection injector (`/mutate-lmcache-pod`) registered by `cargo xtask e2e`.
pub fn lmcache_webhook_url() -> anyhow::Result<String> {
    product("LMCACHE_E2E_LMCACHE_WEBHOOK_URL", "lmcache-webhook")
}

/// A variable `cargo xtask e2e` sets only once `component` is ready.
fn product(name: &str, component: &str) -> anyhow::Result<String> {
    lookup(name).with_context(|| {
        format!(
            "{name} is not set: {component} is not running. `cargo xtask e2e` exports it once the \
             process is ready; if it did not become ready, see target/cluster/logs/{component}.log"
        )
    })
}

fn loopback(name: &str, component: &str) -> anyhow::Result<SocketAddr> {
    let value = product(name, component)?;
    let addr: SocketAddr = value
        .parse()
        .with_context(|| format!("{name}={value:?} is not host:port"))?;
    ensure_loopback(addr)?;
    Ok(addr)
}

/// Fails for any address outside 127.0.0.0/8 (and ::1): the harness dials nothing else.
pub fn ensure_loopback(addr: SocketAddr) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        bail!("refusing {addr}: end-to-end tests only connect to 127.0.0.0/8");
    }
    Ok(())
}

/// A variable `cargo xtask e2e` exports, or an error saying how to run the suite.
pub fn required(name: &str) -> anyhow::Result<String> {
    lookup(name).with_context(|| {
        format!(
            "{name} is not set: run the suite with `cargo xtask e2e` (it starts the cluster, the \
             operator and the webhook); for the cluster alone, `cargo xtask cluster up`"
        )
    })
}

/// The environment variable, else the line `NAME=value` of `target/cluster/e2e.env`.
fn lookup(name: &str) -> Option<String> {
    if let Some(value) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return Some(value);
    }
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/cluster/e2e.env");
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_pass() {
        assert!(ensure_loopback("127.0.0.1:8080".parse().unwrap()).is_ok());
        assert!(ensure_loopback("127.1.0.5:80".parse().unwrap()).is_ok());
        assert!(ensure_loopback("[::1]:80".parse().unwrap()).is_ok());
        assert!(ensure_loopback("10.0.0.1:80".parse().unwrap()).is_err());
        assert!(ensure_loopback("192.0.2.2:6443".parse().unwrap()).is_err());
    }

    #[test]
    fn a_missing_variable_says_how_to_run_the_suite() {
        let err = required("LMCACHE_E2E_SURELY_UNSET_VARIABLE").unwrap_err();
        assert!(err.to_string().contains("cargo xtask e2e"), "{err}");
    }
}
