//! Reconcile-time checks on decoded specs: garde's single-field rules plus the cross-field
//! rules (the CEL rules of api.md §8.5 and the operator-only refinements).

use crate::FieldError;
use crate::rules::{self, DECODE_RULE, Kind, Mechanism, RULES};
use garde::Validate;
use lmcache_api::v1alpha1::{
    BLEND_CHUNK_SIZE, CacheBlendEngineSpec, CoordinatorSpec, EngineSpec, LMCacheEngineSpec,
    UpdateStrategyType, max_unavailable_is_valid,
};

/// A failed rule before ordering: `row` indexes [`RULES`] (`RULES.len()` for decode errors).
#[derive(Clone, Debug)]
pub(crate) struct Found {
    pub row: usize,
    pub error: FieldError,
}

impl Found {
    /// The error of table row `row`, with the `[*]` of its path filled from `actual`.
    pub fn rule(row: usize, actual: &str) -> Self {
        match RULES.get(row) {
            Some(r) => Self {
                row,
                error: FieldError {
                    rule: r.id,
                    path: rules::fill(r.path, &rules::indices_of(actual)),
                    message: r.message.to_owned(),
                },
            },
            None => Self::decode(actual, "is not valid"),
        }
    }

    /// An error no table rule covers.
    pub fn decode(path: &str, message: impl Into<String>) -> Self {
        Self {
            row: RULES.len(),
            error: FieldError {
                rule: DECODE_RULE,
                path: path.to_owned(),
                message: message.into(),
            },
        }
    }
}

/// Orders as api.md §8.4 says (table order, then list indices) and drops duplicates.
pub(crate) fn finish(mut found: Vec<Found>) -> Result<(), Vec<FieldError>> {
    found.sort_by_cached_key(|f| (f.row, rules::indices_of(&f.error.path)));
    let mut errors: Vec<FieldError> = Vec::with_capacity(found.len());
    for f in found {
        if !errors.contains(&f.error) {
            errors.push(f.error);
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// Validates an LMCacheEngine spec (E01..E29), errors in table order.
pub fn validate_engine(name: &str, spec: &LMCacheEngineSpec) -> Result<(), Vec<FieldError>> {
    finish(lmcache_engine_errors(name, spec))
}

/// Validates a CacheBlendEngine spec: the engine rules except E07, then B01..B07.
pub fn validate_blend_engine(name: &str, spec: &CacheBlendEngineSpec) -> Result<(), Vec<FieldError>> {
    finish(blend_errors(name, spec))
}

/// Validates an LMCacheCoordinator spec (C01..C15).
pub fn validate_coordinator(name: &str, spec: &CoordinatorSpec) -> Result<(), Vec<FieldError>> {
    finish(coordinator_errors(name, spec))
}

pub(crate) fn lmcache_engine_errors(name: &str, spec: &LMCacheEngineSpec) -> Vec<Found> {
    let mut found = garde_errors(Kind::Engine, spec.validate());
    engine_cross_field(name, &spec.engine, &mut found);
    // E25: the schema's minLength accepts "  "; the operator trims (as for B02).
    if spec.injection_settings().blank_payload_repository() {
        push(&mut found, "E25", "spec.injection.payloadImage.repository");
    }
    found
}

pub(crate) fn blend_errors(name: &str, spec: &CacheBlendEngineSpec) -> Vec<Found> {
    let mut found = garde_errors(Kind::BlendEngine, spec.validate());
    engine_cross_field(name, &spec.engine, &mut found);
    // B01 replaces E07 (whose garde range error maps to B01 for this kind, see `garde_errors`).
    if spec.engine.server.chunk_size != BLEND_CHUNK_SIZE {
        push(&mut found, "B01", "spec.server.chunkSize");
    }
    // B02: the schema's minLength accepts "  "; the operator trims.
    if spec.injection_settings().blank_payload_repository() {
        push(&mut found, "B02", "spec.injection.payloadImage.repository");
    }
    found
}

pub(crate) fn coordinator_errors(name: &str, spec: &CoordinatorSpec) -> Vec<Found> {
    let mut found = garde_errors(Kind::Coordinator, spec.validate());
    if !is_name_valid(name) {
        push(&mut found, "C14", "metadata.name");
    }
    found
}

/// E11, E15, E20, E22, E23, E28, E29: the CEL rules of the engines.
fn engine_cross_field(name: &str, spec: &EngineSpec, found: &mut Vec<Found>) {
    if spec.prometheus.enabled && spec.prometheus.port == spec.server.port {
        push(found, "E11", "spec.prometheus.port");
    }
    if spec.server.http_port == spec.server.port {
        push(found, "E22", "spec.server.httpPort");
    }
    if spec.prometheus.enabled && spec.prometheus.port == spec.server.http_port {
        push(found, "E23", "spec.server.httpPort");
    }
    if let Some(c) = &spec.coordinator
        && c.ref_.is_some() == c.url.is_some()
    {
        push(found, "E15", "spec.coordinator");
    }
    if !is_name_valid(name) {
        push(found, "E20", "metadata.name");
    }
    if let Some(strategy) = &spec.update_strategy {
        if strategy.rolling_update.is_some() && strategy.type_ != UpdateStrategyType::RollingUpdate {
            push(found, "E28", "spec.updateStrategy.rollingUpdate");
        }
        if let Some(rolling) = &strategy.rolling_update
            && !max_unavailable_is_valid(&rolling.max_unavailable)
        {
            push(found, "E29", "spec.updateStrategy.rollingUpdate.maxUnavailable");
        }
    }
}

fn push(found: &mut Vec<Found>, id: &str, path: &str) {
    found.push(Found::rule(rules::row(id, path), path));
}

/// DNS-1035 label of at most 55 characters (`^[a-z]([-a-z0-9]*[a-z0-9])?$`): the name is used
/// for the Services `N` and `N-metrics`, which must stay within 63 characters.
pub fn is_name_valid(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    bytes.len() <= 55
        && first.is_ascii_lowercase()
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Maps each garde report entry to its table row by the entry's path.
fn garde_errors(kind: Kind, result: Result<(), garde::Report>) -> Vec<Found> {
    let Err(report) = result else {
        return Vec::new();
    };
    report
        .iter()
        .map(|(path, error)| {
            let actual = spec_path(kind, &path.to_string());
            match garde_row(kind, &rules::pattern_of(&actual)) {
                Some(row) => Found::rule(row, &actual),
                // Only reachable if the API's garde rules gain a rule the tables lack; the
                // schema consistency test keeps them in step.
                None => Found::decode(&actual, error.message()),
            }
        })
        .collect()
}

/// The table row of a garde error at `pattern`. A path with both a `required` row and a
/// value-rule row (`spec.l1.sizeGB`: E01 and E02) maps to the value rule, because garde only
/// sees values that decoded; a path with only a `required` row (`spec.injection`) maps to it.
fn garde_row(kind: Kind, pattern: &str) -> Option<usize> {
    use Mechanism::{ExclusiveMinimum, Maximum, MinLength, Minimum, Pattern, Required};
    // For the blend engine, garde's `server.chunkSize` range (E07) is B01's `enum` row.
    let value_rules = [
        Minimum,
        ExclusiveMinimum,
        Maximum,
        MinLength,
        Pattern,
        Mechanism::Enum,
    ];
    value_rules
        .iter()
        .find_map(|m| rules::rows_at(kind, pattern, *m).next())
        .or_else(|| rules::rows_at(kind, pattern, Required).next())
}

/// garde path (`engine.server.chunk_size`, `l1.size_gb`, `l2_backends[0].type_`) to the object
/// path (`spec.server.chunkSize`): the flattened `engine` and `pod` are dropped and the Rust
/// field names are camelCased, as serde names them. garde 0.23 parses `#[garde(rename)]` but does
/// not use it in report paths, so the one field serde does not simply camelCase is mapped here.
fn spec_path(kind: Kind, garde_path: &str) -> String {
    let garde_path = match kind {
        Kind::Engine | Kind::BlendEngine => garde_path.strip_prefix("engine.").unwrap_or(garde_path),
        _ => garde_path,
    };
    let garde_path = garde_path.strip_prefix("pod.").unwrap_or(garde_path);
    let garde_path = garde_path.replace("size_gb", "sizeGB");
    let mut out = String::from("spec.");
    let mut upper = false;
    for c in garde_path.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}
