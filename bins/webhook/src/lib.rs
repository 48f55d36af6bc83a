//! The two mutating admission webhooks in one program: the CacheBlend injector
//! (`/mutate-cacheblend-pod`, cacheblend.md §4–§11) and the LMCache connection injector
//! (`/mutate-lmcache-pod`, connection-webhook.md).
//!
//! * [`engines`] — the CacheBlendEngine and LMCacheEngine watch caches (reflectors keyed by
//!   namespace/name);
//! * [`admission`] — AdmissionReview in, AdmissionReview out, no I/O ([`Admitter::review`]);
//! * [`server`] — HTTPS on hyper 1 + tokio-rustls, the two `POST` paths only;
//! * [`metrics`] — `lmcache_webhook_*`;
//! * self-managed TLS: [`pki`] (issuing and reading certificates), [`rotation`] (the pure
//!   state machine), [`ca_bundle`] (the webhook configuration's `caBundle`) and
//!   [`self_managed`] (the Secret and configuration I/O, the in-memory swap);
//! * [`inject_cmd`] — the offline `inject` command;
//! * [`cli`] — flags.
//!
//! The pod mutation itself is the pure `lmcache-blend-injector` crate.

pub mod admission;
pub mod ca_bundle;
pub mod cli;
pub mod engines;
pub mod inject_cmd;
pub mod metrics;
pub mod pki;
pub mod rotation;
pub mod self_managed;
pub mod server;

pub use admission::{Admitter, MUTATE_LMCACHE_PATH, MUTATE_PATH, Verdict};
pub use engines::{EngineCache, EngineCacheWriter, StoredEngine};
pub use metrics::Metrics;
pub use self_managed::SelfManaged;
pub use server::WebhookServer;

use std::path::PathBuf;

/// Errors of the webhook library (the `inject` command's inputs, self-managed TLS).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input is not YAML (or output cannot be written as YAML).
    #[error(transparent)]
    Yaml(#[from] lmcache_manifest_renderer::RenderError),
    /// An engines file holds something other than an engine.
    #[error("engine document {index} has kind {kind:?}, expected CacheBlendEngine or LMCacheEngine")]
    NotAnEngine {
        /// Zero-based document index.
        index: usize,
        /// The kind found.
        kind: String,
    },
    /// An engine could not be decoded.
    #[error("engine document {index} cannot be decoded")]
    Engine {
        /// Zero-based document index.
        index: usize,
        /// Why.
        #[source]
        source: lmcache_blend_injector::Error,
    },
    /// A pod template could not be decoded as a Pod.
    #[error("cannot decode a pod template")]
    DecodePod(#[source] serde_json::Error),
    /// The computed patch did not apply (a bug).
    #[error("cannot apply the computed patch")]
    Patch(#[source] json_patch::PatchError),
    /// A certificate could not be generated.
    #[error("cannot issue a certificate")]
    Issue(#[source] rcgen::Error),
    /// A time a certificate cannot carry.
    #[error("time {0} cannot be written into a certificate")]
    Time(i64),
    /// A serving certificate was to be signed without a CA key (a bug in the plan).
    #[error("the Secret holds no signing CA")]
    NoSigner,
    /// A Kubernetes API call failed.
    #[error("{action} failed")]
    Kube {
        /// What was attempted.
        action: String,
        /// Why.
        #[source]
        source: Box<kube::Error>,
    },
    /// Other writers kept winning (or the plan kept finding work): retried at the next pass.
    #[error("Secret {name} still changing after {attempts} writes")]
    NotConverged {
        /// The Secret.
        name: String,
        /// Writes attempted.
        attempts: usize,
    },
    /// The serving pair from the Secret was rejected.
    #[error("cannot serve the certificate from the Secret")]
    Serving(#[source] lmcache_runtime::Error),
    /// The namespace of the webhook is unknown.
    #[error(
        "cannot determine the webhook namespace for its TLS Secret: set POD_NAMESPACE (Downward API \
         metadata.namespace) or run with a service account ({} missing)", .0.display()
    )]
    Namespace(PathBuf),
}
