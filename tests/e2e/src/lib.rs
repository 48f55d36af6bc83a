//! Harness for the LMCache operator's end-to-end tests.
//!
//! The tests run against the local control plane of `cargo xtask cluster up` (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler and kwok on 127.0.0.1); `cargo xtask
//! e2e` starts it, installs the CRDs, runs the operator and webhook as local processes and then
//! runs `cargo test -p lmcache-e2e -- --ignored`. Every test is
//! `#[ignore = "needs a cluster: cargo xtask e2e"]`; run with `--ignored` and no cluster, each
//! one fails in [`Cluster::connect`].
//!
//! Network rule: the harness connects only to 127.0.0.0/8 (the API server, and the operator's
//! and webhook's metrics/health endpoints); [`settings`] refuses any other address. Tests
//! observe pods only through the API and never dial a pod or Service IP.
//!
//! Building blocks:
//! - [`Cluster`]: a kube [`Client`](kube::Client) and a [`Kubectl`] for the test cluster.
//! - [`TempNamespace`]: a uniquely named namespace (Pod Security `privileged`), deleted on drop.
//! - [`wait::until`]: polling with a deadline and the last observation in the error.
//! - [`crd::check_cases`]: table-driven `kubectl apply` checks of the CRD schemas.
//! - [`audit::AuditLog`]: the API requests the operator or the webhook sent, by identity.
//! - [`json::assert_contains`]: subset comparison of JSON values with the differing path.

pub mod audit;
pub mod capture;
mod cluster;
pub mod crd;
pub mod json;
mod kubectl;
mod namespace;
pub mod objects;
pub mod product;
pub mod scrape;
pub mod settings;
pub mod wait;
pub mod webhook_pods;

pub use cluster::Cluster;
pub use kubectl::{Kubectl, KubectlOutput};
pub use namespace::TempNamespace;

/// Generous bound for "within 30 s" behaviours on a loaded 2-core machine; tests poll for an
/// outcome and never assert on elapsed time.
pub const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);
