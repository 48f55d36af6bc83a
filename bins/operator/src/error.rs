//! The operator's one error type.

use lmcache_manifest_renderer::RenderError;

/// Why a reconcile failed (it is retried with per-object backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or could not be reached.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be converted to or from JSON.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Rendering failed for a reason validation did not catch.
    #[error("rendering: {0}")]
    Render(#[from] RenderError),
    /// The object lacks a field every stored object has.
    #[error("object has no {0}")]
    MissingField(&'static str),
    /// The API server rejected children (reported in the status and Events; retried with
    /// backoff).
    #[error("children rejected: {0}")]
    Rejected(String),
    /// The object's namespace is being deleted: nothing more is written there.
    #[error("namespace is being terminated")]
    NamespaceTerminating,
    /// A referenced coordinator exists but could not be decoded.
    #[error("LMCacheCoordinator {namespace}/{name} cannot be read: {message}")]
    UnreadableCoordinator {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Decoding error.
        message: String,
    },
}

impl Error {
    /// A short stable label for logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Json(_) => "json",
            Self::Render(_) => "render",
            Self::MissingField(_) => "missing-field",
            Self::Rejected(_) => "rejected",
            Self::NamespaceTerminating => "namespace-terminating",
            Self::UnreadableCoordinator { .. } => "unreadable-coordinator",
        }
    }
}
