//! Reconcile-time validation of the LMCache custom resources (skeleton; rules being filled in).

use lmcache_api::v1alpha1::{
    CacheBlendEngine, CacheBlendEngineSpec, CoordinatorSpec, EngineSpec, LMCacheCoordinator, LMCacheEngine,
};
use std::fmt;

/// One failed rule: `"<path>: <message>"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Rule id from api.md §8 (`"E02"`, `"B01"`, `"C07"`).
    pub rule: &'static str,
    /// JSON path with actual list indices, e.g. `spec.l2Backends[1].type`.
    pub path: String,
    /// The operator message text after the path.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Schema mechanism that enforces a rule at apply time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// `enum`.
    Enum,
    /// `minimum`.
    Minimum,
    /// `exclusiveMinimum` (with `minimum: 0`).
    ExclusiveMinimum,
    /// `maximum`.
    Maximum,
    /// `minLength`.
    MinLength,
    /// `pattern`.
    Pattern,
    /// `required`.
    Required,
    /// `type: object`.
    Type,
    /// CEL `x-kubernetes-validations`.
    Cel,
}

/// Kinds a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// LMCacheEngine.
    Engine,
    /// CacheBlendEngine.
    BlendEngine,
    /// LMCacheCoordinator.
    Coordinator,
}

/// One row of the rule tables.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// Rule id.
    pub id: &'static str,
    /// Kinds it applies to.
    pub kinds: &'static [Kind],
    /// JSON path pattern, `[*]` for list indices.
    pub path: &'static str,
    /// Operator message (text after `"<path>: "`).
    pub message: &'static str,
    /// Schema mechanisms.
    pub mechanisms: &'static [Mechanism],
}

/// The rule tables of api.md §8 (filled in by the next commit).
pub const RULES: &[Rule] = &[];

/// Validates an LMCacheEngine spec (E01..E20).
pub fn validate_engine(_name: &str, _spec: &EngineSpec) -> Result<(), Vec<FieldError>> {
    Ok(())
}

/// Validates a CacheBlendEngine spec (E01..E20 without E07, then B01..B07).
pub fn validate_blend_engine(_name: &str, _spec: &CacheBlendEngineSpec) -> Result<(), Vec<FieldError>> {
    Ok(())
}

/// Validates an LMCacheCoordinator spec (C01..C14).
pub fn validate_coordinator(_name: &str, _spec: &CoordinatorSpec) -> Result<(), Vec<FieldError>> {
    Ok(())
}

/// Decodes a stored LMCacheEngine and validates it.
pub fn decode_engine(obj: &serde_json::Value) -> Result<LMCacheEngine, Vec<FieldError>> {
    serde_json::from_value(obj.clone()).map_err(|e| {
        vec![FieldError {
            rule: "E01",
            path: "spec".into(),
            message: e.to_string(),
        }]
    })
}

/// Decodes a stored CacheBlendEngine and validates it.
pub fn decode_blend_engine(obj: &serde_json::Value) -> Result<CacheBlendEngine, Vec<FieldError>> {
    serde_json::from_value(obj.clone()).map_err(|e| {
        vec![FieldError {
            rule: "E01",
            path: "spec".into(),
            message: e.to_string(),
        }]
    })
}

/// Decodes a stored LMCacheCoordinator and validates it.
pub fn decode_coordinator(obj: &serde_json::Value) -> Result<LMCacheCoordinator, Vec<FieldError>> {
    serde_json::from_value(obj.clone()).map_err(|e| {
        vec![FieldError {
            rule: "C14",
            path: "spec".into(),
            message: e.to_string(),
        }]
    })
}

/// All messages joined with `"; "`.
pub fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
