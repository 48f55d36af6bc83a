//! The crate's one error type.

/// Why a custom resource could not be rendered, or its YAML read or written. Validation
/// problems are not reported here (`lmcache-validation` runs first); these are the inputs
/// rendering itself needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The custom resource has no `metadata.name`.
    #[error("metadata.name: is required")]
    MissingName,
    /// The custom resource has no `metadata.namespace`.
    #[error("metadata.namespace: is required")]
    MissingNamespace,
    /// `spec.coordinator.ref` is used but the caller resolved no URL for it.
    #[error("spec.coordinator.ref.name: the coordinator URL was not resolved")]
    UnresolvedCoordinator,
    /// `spec.coordinator` has neither `ref` nor `url`.
    #[error("spec.coordinator: exactly one of ref or url must be set")]
    CoordinatorWithoutTarget,
    /// A document of a YAML stream does not parse ([`crate::yaml::documents`]).
    #[error("document {document}: invalid YAML: {message}")]
    Yaml {
        /// 1-based, among the stream's non-empty documents.
        document: usize,
        /// The parser's message, with line and column.
        message: String,
    },
    /// An object cannot be written as YAML.
    #[error("cannot write YAML: {0}")]
    YamlOutput(String),
}
