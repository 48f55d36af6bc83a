//! The rule tables of api.md §8, one row per reported path.

use Kind::{BlendEngine as B, Coordinator as C, Engine as E};
use Mechanism::{Cel, Enum, ExclusiveMinimum as ExMin, Maximum as Max, MinLength, Minimum as Min};
use Mechanism::{Pattern, Required, Type};

pub use lmcache_api::Kind;

/// The schema keyword that enforces a rule at apply time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// `enum`.
    Enum,
    /// `minimum`.
    Minimum,
    /// `exclusiveMinimum: true` (always next to `minimum: 0`).
    ExclusiveMinimum,
    /// `maximum`.
    Maximum,
    /// `minLength`.
    MinLength,
    /// `pattern`.
    Pattern,
    /// The property is listed in its parent's `required`.
    Required,
    /// The property's `type` (only E14 names it as a rule).
    Type,
    /// A CEL rule in `x-kubernetes-validations` of the object at the constraint's path.
    Cel,
}

impl Mechanism {
    /// The schema keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::Enum => "enum",
            Self::Minimum => "minimum",
            Self::ExclusiveMinimum => "exclusiveMinimum",
            Self::Maximum => "maximum",
            Self::MinLength => "minLength",
            Self::Pattern => "pattern",
            Self::Required => "required",
            Self::Type => "type",
            Self::Cel => "x-kubernetes-validations",
        }
    }
}

/// Where and how the CRD schema enforces (part of) a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Constraint {
    /// Property path in the object (`spec.l2Backends[*].type`; `""` is the schema root).
    pub at: &'static str,
    /// Schema keyword.
    pub mechanism: Mechanism,
}

/// One row of the rule tables: a rule id and the path its message names.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// Rule id (`E02`, `B01`, `C07`).
    pub id: &'static str,
    /// Kinds the rule applies to.
    pub kinds: &'static [Kind],
    /// The path the message names, `[*]` standing for a list index.
    pub path: &'static str,
    /// The operator message after `"<path>: "`.
    pub message: &'static str,
    /// How the CRD schema enforces the rule.
    pub schema: &'static [Constraint],
}

const fn at(at: &'static str, mechanism: Mechanism) -> Constraint {
    Constraint { at, mechanism }
}

const ENGINES: &[Kind] = &[E, B];
const ENGINE: &[Kind] = &[E];
const BLEND: &[Kind] = &[B];
const COORD: &[Kind] = &[C];

const NAME_MESSAGE: &str = "must be a DNS-1035 label of at most 55 characters";
const DURATION_MESSAGE: &str = "must be a duration such as 30s, 1m or 1h30m";
const PULL_POLICY_MESSAGE: &str = "must be one of Always, Never, IfNotPresent";
const LOG_LEVEL_MESSAGE: &str = "must be one of DEBUG, INFO, WARNING, ERROR";

const fn rule(
    id: &'static str,
    kinds: &'static [Kind],
    path: &'static str,
    message: &'static str,
    schema: &'static [Constraint],
) -> Rule {
    Rule {
        id,
        kinds,
        path,
        message,
        schema,
    }
}

/// Every rule of api.md §8.2 and §8.3, in table order (the order of reported errors).
pub const RULES: &[Rule] = &[
    rule(
        "E01",
        ENGINES,
        "spec.l1.sizeGB",
        "is required",
        &[
            at("spec", Required),
            at("spec.l1", Required),
            at("spec.l1.sizeGB", Required),
        ],
    ),
    rule(
        "E02",
        ENGINES,
        "spec.l1.sizeGB",
        "must be greater than 0",
        &[at("spec.l1.sizeGB", Min), at("spec.l1.sizeGB", ExMin)],
    ),
    rule(
        "E03",
        ENGINES,
        "spec.eviction.policy",
        "must be LRU",
        &[at("spec.eviction.policy", Enum)],
    ),
    rule(
        "E04",
        ENGINES,
        "spec.eviction.triggerWatermark",
        "must be in (0.0, 1.0]",
        &[
            at("spec.eviction.triggerWatermark", Min),
            at("spec.eviction.triggerWatermark", ExMin),
            at("spec.eviction.triggerWatermark", Max),
        ],
    ),
    rule(
        "E05",
        ENGINES,
        "spec.eviction.evictionRatio",
        "must be in (0.0, 1.0]",
        &[
            at("spec.eviction.evictionRatio", Min),
            at("spec.eviction.evictionRatio", ExMin),
            at("spec.eviction.evictionRatio", Max),
        ],
    ),
    rule(
        "E06",
        ENGINES,
        "spec.server.port",
        "must be in [1024, 65535]",
        &[at("spec.server.port", Min), at("spec.server.port", Max)],
    ),
    rule(
        "E07",
        ENGINE,
        "spec.server.chunkSize",
        "must be at least 1",
        &[at("spec.server.chunkSize", Min)],
    ),
    rule(
        "E08",
        ENGINES,
        "spec.server.maxWorkers",
        "must be at least 1",
        &[at("spec.server.maxWorkers", Min)],
    ),
    rule(
        "E09",
        ENGINES,
        "spec.server.hashAlgorithm",
        "must be one of builtin, sha256_cbor, blake3",
        &[at("spec.server.hashAlgorithm", Enum)],
    ),
    rule(
        "E10",
        ENGINES,
        "spec.prometheus.port",
        "must be in [1, 65535]",
        &[at("spec.prometheus.port", Min), at("spec.prometheus.port", Max)],
    ),
    rule(
        "E11",
        ENGINES,
        "spec.prometheus.port",
        "must differ from spec.server.port when prometheus is enabled",
        &[at("spec", Cel)],
    ),
    rule(
        "E12",
        ENGINES,
        "spec.prometheus.serviceMonitor.interval",
        DURATION_MESSAGE,
        &[
            at("spec.prometheus.serviceMonitor.interval", MinLength),
            at("spec.prometheus.serviceMonitor.interval", Pattern),
        ],
    ),
    rule(
        "E13",
        ENGINES,
        "spec.l2Backends[*].type",
        "must be non-empty",
        &[
            at("spec.l2Backends[*].type", Required),
            at("spec.l2Backends[*].type", MinLength),
        ],
    ),
    rule(
        "E14",
        ENGINES,
        "spec.l2Backends[*].config",
        "must be an object",
        &[at("spec.l2Backends[*].config", Type)],
    ),
    rule(
        "E15",
        ENGINES,
        "spec.coordinator",
        "exactly one of ref or url must be set",
        &[at("spec.coordinator", Cel)],
    ),
    rule(
        "E16",
        ENGINES,
        "spec.coordinator.ref.name",
        "must be non-empty",
        &[
            at("spec.coordinator.ref.name", Required),
            at("spec.coordinator.ref.name", MinLength),
        ],
    ),
    rule(
        "E16",
        ENGINES,
        "spec.coordinator.url",
        "must be non-empty",
        &[at("spec.coordinator.url", MinLength)],
    ),
    rule(
        "E17",
        ENGINES,
        "spec.coordinator.heartbeatInterval",
        "must be greater than 0",
        &[
            at("spec.coordinator.heartbeatInterval", Min),
            at("spec.coordinator.heartbeatInterval", ExMin),
        ],
    ),
    rule(
        "E18",
        ENGINES,
        "spec.logLevel",
        LOG_LEVEL_MESSAGE,
        &[at("spec.logLevel", Enum)],
    ),
    rule(
        "E19",
        ENGINES,
        "spec.image.pullPolicy",
        PULL_POLICY_MESSAGE,
        &[at("spec.image.pullPolicy", Enum)],
    ),
    rule("E20", ENGINES, "metadata.name", NAME_MESSAGE, &[at("", Cel)]),
    rule(
        "E21",
        ENGINES,
        "spec.server.httpPort",
        "must be in [1024, 65535]",
        &[at("spec.server.httpPort", Min), at("spec.server.httpPort", Max)],
    ),
    rule(
        "E22",
        ENGINES,
        "spec.server.httpPort",
        "must differ from spec.server.port",
        &[at("spec", Cel)],
    ),
    rule(
        "E23",
        ENGINES,
        "spec.server.httpPort",
        "must differ from spec.prometheus.port when prometheus is enabled",
        &[at("spec", Cel)],
    ),
    rule(
        "E24",
        ENGINE,
        "spec.injection.targetContainer",
        "must be non-empty when set",
        &[at("spec.injection.targetContainer", MinLength)],
    ),
    rule(
        "E25",
        ENGINE,
        "spec.injection.payloadImage.repository",
        "must be set to the payload image when payloadImage is present",
        &[
            at("spec.injection.payloadImage.repository", Required),
            at("spec.injection.payloadImage.repository", MinLength),
        ],
    ),
    rule(
        "E26",
        ENGINE,
        "spec.injection.payloadImage.pullPolicy",
        PULL_POLICY_MESSAGE,
        &[at("spec.injection.payloadImage.pullPolicy", Enum)],
    ),
    rule(
        "E27",
        ENGINES,
        "spec.updateStrategy.type",
        "must be one of RollingUpdate, OnDelete",
        &[at("spec.updateStrategy.type", Enum)],
    ),
    rule(
        "E28",
        ENGINES,
        "spec.updateStrategy.rollingUpdate",
        "may only be set when spec.updateStrategy.type is RollingUpdate",
        &[at("spec.updateStrategy", Cel)],
    ),
    rule(
        "E29",
        ENGINES,
        "spec.updateStrategy.rollingUpdate.maxUnavailable",
        "must be an integer of at least 1 or a percentage from 1% to 100%",
        &[at("spec.updateStrategy.rollingUpdate", Cel)],
    ),
    rule(
        "B01",
        BLEND,
        "spec.server.chunkSize",
        "must be 256 for CacheBlendEngine (chunk_size must equal vLLM --block-size 64 * 4)",
        &[at("spec.server.chunkSize", Enum)],
    ),
    rule(
        "B02",
        BLEND,
        "spec.injection.payloadImage.repository",
        "must be set to the cacheblend-plugin payload image",
        &[
            at("spec.injection", Required),
            at("spec.injection.payloadImage", Required),
            at("spec.injection.payloadImage.repository", Required),
            at("spec.injection.payloadImage.repository", MinLength),
        ],
    ),
    rule(
        "B03",
        BLEND,
        "spec.injection.payloadImage.pullPolicy",
        PULL_POLICY_MESSAGE,
        &[at("spec.injection.payloadImage.pullPolicy", Enum)],
    ),
    rule(
        "B04",
        BLEND,
        "spec.injection.cudagraph",
        "must be one of eager, piecewise, full_decode_only",
        &[at("spec.injection.cudagraph", Enum)],
    ),
    rule(
        "B05",
        BLEND,
        "spec.blend.checkLayer",
        "must be at least 0",
        &[at("spec.blend.checkLayer", Min)],
    ),
    rule(
        "B06",
        BLEND,
        "spec.blend.recompRatio",
        "must be in (0.0, 1.0]",
        &[
            at("spec.blend.recompRatio", Min),
            at("spec.blend.recompRatio", ExMin),
            at("spec.blend.recompRatio", Max),
        ],
    ),
    rule(
        "B07",
        BLEND,
        "spec.injection.targetContainer",
        "must be non-empty when set",
        &[at("spec.injection.targetContainer", MinLength)],
    ),
    rule(
        "C01",
        COORD,
        "spec.port",
        "must be in [1, 65535]",
        &[at("spec.port", Min), at("spec.port", Max)],
    ),
    rule(
        "C02",
        COORD,
        "spec.replicas",
        "must be at least 0",
        &[at("spec.replicas", Min)],
    ),
    rule(
        "C03",
        COORD,
        "spec.instanceTimeout",
        "must be greater than 0",
        &[at("spec.instanceTimeout", Min), at("spec.instanceTimeout", ExMin)],
    ),
    rule(
        "C04",
        COORD,
        "spec.healthCheckInterval",
        "must be at least 0",
        &[at("spec.healthCheckInterval", Min)],
    ),
    rule(
        "C05",
        COORD,
        "spec.evictionCheckInterval",
        "must be at least 0",
        &[at("spec.evictionCheckInterval", Min)],
    ),
    rule(
        "C06",
        COORD,
        "spec.evictionRatio",
        "must be in [0.0, 1.0]",
        &[at("spec.evictionRatio", Min), at("spec.evictionRatio", Max)],
    ),
    rule(
        "C07",
        COORD,
        "spec.triggerWatermark",
        "must be in (0.0, 1.0]",
        &[
            at("spec.triggerWatermark", Min),
            at("spec.triggerWatermark", ExMin),
            at("spec.triggerWatermark", Max),
        ],
    ),
    rule(
        "C08",
        COORD,
        "spec.blendChunkSize",
        "must be greater than 0",
        &[at("spec.blendChunkSize", Min)],
    ),
    rule(
        "C09",
        COORD,
        "spec.blendProbeStride",
        "must be greater than 0",
        &[at("spec.blendProbeStride", Min)],
    ),
    rule(
        "C10",
        COORD,
        "spec.logLevel",
        LOG_LEVEL_MESSAGE,
        &[at("spec.logLevel", Enum)],
    ),
    rule(
        "C11",
        COORD,
        "spec.image.pullPolicy",
        PULL_POLICY_MESSAGE,
        &[at("spec.image.pullPolicy", Enum)],
    ),
    rule(
        "C12",
        COORD,
        "spec.prometheus.port",
        "must be in [1, 65535]",
        &[at("spec.prometheus.port", Min), at("spec.prometheus.port", Max)],
    ),
    rule(
        "C13",
        COORD,
        "spec.prometheus.serviceMonitor.interval",
        DURATION_MESSAGE,
        &[
            at("spec.prometheus.serviceMonitor.interval", MinLength),
            at("spec.prometheus.serviceMonitor.interval", Pattern),
        ],
    ),
    rule("C14", COORD, "metadata.name", NAME_MESSAGE, &[at("", Cel)]),
    rule(
        "C15",
        COORD,
        "spec.hashAlgorithm",
        "must be one of builtin, sha256_cbor, blake3",
        &[at("spec.hashAlgorithm", Enum)],
    ),
];

/// Rule id of a value that cannot be decoded and that no table rule covers (a wrong JSON type
/// in a field without its own rule, such as `spec.server.port: "x"`). Not part of the spec's
/// tables; such errors are reported after all table rules.
pub const DECODE_RULE: &str = "D01";

/// Index of the row with this id and message path. Every call site names an existing row
/// (the table tests cover them); a miss yields `RULES.len()`, which sorts last.
pub(crate) fn row(id: &str, path: &str) -> usize {
    RULES
        .iter()
        .position(|r| r.id == id && r.path == path)
        .unwrap_or(RULES.len())
}

/// The rows of `kind` that the schema enforces at `pattern` with `mechanism`.
pub(crate) fn rows_at(kind: Kind, pattern: &str, mechanism: Mechanism) -> impl Iterator<Item = usize> {
    let pattern = pattern.to_owned();
    RULES.iter().enumerate().filter_map(move |(i, r)| {
        (r.kinds.contains(&kind)
            && r.schema
                .iter()
                .any(|c| c.at == pattern && c.mechanism == mechanism))
        .then_some(i)
    })
}

/// `spec.l2Backends[3].type` -> `spec.l2Backends[*].type`.
pub(crate) fn pattern_of(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[*]");
            }
            ']' => in_index = false,
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// The list indices in a path, in order.
pub(crate) fn indices_of(path: &str) -> Vec<usize> {
    path.split('[')
        .skip(1)
        .filter_map(|s| s.split(']').next()?.parse().ok())
        .collect()
}

/// Fills the `[*]` of `pattern` with `indices`, in order.
pub(crate) fn fill(pattern: &str, indices: &[usize]) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut parts = pattern.split("[*]");
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for (n, part) in parts.enumerate() {
        match indices.get(n) {
            Some(i) => out.push_str(&format!("[{i}]")),
            None => out.push_str("[*]"),
        }
        out.push_str(part);
    }
    out
}
