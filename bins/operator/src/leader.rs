//! Leader election on the Lease `lmcache-operator-controller-leader` in the operator's own
//! namespace (operations.md §6, MT-9: the namespace is never hard-coded).

use anyhow::{Context as _, bail};
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use std::path::Path;
use tokio::sync::watch;

/// Name of the Lease.
pub const LEASE_NAME: &str = "lmcache-operator-controller-leader";
/// The service-account namespace file, the fallback when `POD_NAMESPACE` is unset.
pub const SERVICE_ACCOUNT_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// Lease duration (seconds).
pub const LEASE_DURATION: u64 = 15;
/// Renew this long before expiry (duration 15 s − renew deadline 10 s).
pub const LEASE_GRACE: u64 = 5;

/// The operator's namespace: `POD_NAMESPACE`, else the service-account namespace file.
pub fn operator_namespace(pod_namespace: Option<String>, sa_file: &Path) -> anyhow::Result<String> {
    if let Some(ns) = pod_namespace
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
    {
        return Ok(ns);
    }
    match std::fs::read_to_string(sa_file) {
        Ok(ns) if !ns.trim().is_empty() => Ok(ns.trim().to_string()),
        _ => bail!(
            "cannot determine the operator namespace for the leader-election Lease: set POD_NAMESPACE \
             (Downward API metadata.namespace) or run with a service account ({} missing)",
            sa_file.display()
        ),
    }
}

/// A unique identity for this replica: the pod name (`HOSTNAME`) plus the process id.
pub fn identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "lmcache-operator".to_string());
    format!("{host}_{}", std::process::id())
}

/// Starts competing for the Lease. The receiver says whether this replica leads; the task ends
/// with an error if the lease manager fails.
pub async fn start(
    client: Client,
    namespace: &str,
) -> anyhow::Result<(
    watch::Receiver<bool>,
    tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
)> {
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_identity(identity())
        .with_duration(LEASE_DURATION)
        .with_grace(LEASE_GRACE)
        .build()
        .await
        .with_context(|| format!("cannot set up the Lease {namespace}/{LEASE_NAME}"))?;
    Ok(manager.watch().await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_from_env_then_file_else_error() {
        let dir = std::env::temp_dir().join(format!("lmcache-operator-ns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("namespace");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(operator_namespace(Some("ops".into()), &file).unwrap(), "ops");
        assert_eq!(operator_namespace(Some(" ".into()), &file).unwrap(), "from-file");
        assert_eq!(operator_namespace(None, &file).unwrap(), "from-file");
        let missing = dir.join("missing");
        let err = operator_namespace(None, &missing).unwrap_err().to_string();
        assert!(err.contains("POD_NAMESPACE"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
