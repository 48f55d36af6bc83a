//! `LMCacheCoordinator`: the fleet-wide LMCache coordinator HTTP service.

use super::common::{
    ImageSpec, LogLevel, PrometheusDuration, default_interval, default_metrics_port, default_true, positive,
    unit_fraction,
};
use super::engine::{HashAlgorithm, NAME_RULE, NAME_RULE_MESSAGE};
use super::pod::PodConfig;
use super::schema;
use super::status::CoordinatorStatus;
use garde::Validate;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn default_replicas() -> i32 {
    1
}
fn default_host() -> String {
    "0.0.0.0".into()
}
fn default_port() -> i32 {
    9300
}
fn default_instance_timeout() -> f64 {
    30.0
}
fn default_health_check_interval() -> f64 {
    10.0
}
fn default_eviction_check_interval() -> f64 {
    5.0
}
fn default_eviction_ratio() -> f64 {
    0.2
}
fn default_trigger_watermark() -> f64 {
    1.0
}

/// Desired state of an LMCacheCoordinator.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
#[kube(
    group = "lmcache.lmcache.ai",
    version = "v1alpha1",
    kind = "LMCacheCoordinator",
    plural = "lmcachecoordinators",
    singular = "lmcachecoordinator",
    shortname = "lmcc",
    category = "lmcache",
    namespaced,
    status = "CoordinatorStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.replicas"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.endpoint"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new(NAME_RULE).message(NAME_RULE_MESSAGE),
    crates(kube_core = "::kube::core", k8s_openapi = "::k8s_openapi", schemars = "::schemars")
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::pod::coordinator_descriptions)]
pub struct CoordinatorSpec {
    /// Coordinator pods. The registry is per-process in memory, so more than 1 only makes sense
    /// behind a shared durable backend.
    #[serde(default = "default_replicas")]
    #[garde(range(min = 0))]
    pub replicas: i32,

    /// Container image (runs the same `lmcache` binary as the engines).
    #[serde(default)]
    #[schemars(transform = schema::empty_object_default)]
    #[garde(dive)]
    pub image: ImageSpec,

    /// Address the coordinator's HTTP server binds to.
    #[serde(default = "default_host")]
    #[garde(skip)]
    pub host: String,

    /// HTTP port.
    #[serde(default = "default_port")]
    #[garde(range(min = 1, max = 65535))]
    pub port: i32,

    /// Seconds without a heartbeat after which an instance is evicted. Keep comfortably above
    /// the engines' `coordinator.heartbeatInterval`.
    #[serde(default = "default_instance_timeout")]
    #[schemars(transform = schema::exclusive_minimum_zero)]
    #[garde(custom(positive))]
    pub instance_timeout: f64,

    /// Seconds between health-check sweeps; 0 disables the loop.
    #[serde(default = "default_health_check_interval")]
    #[garde(range(min = 0.0))]
    pub health_check_interval: f64,

    /// Seconds between L2 eviction sweeps; 0 disables the loop.
    #[serde(default = "default_eviction_check_interval")]
    #[garde(range(min = 0.0))]
    pub eviction_check_interval: f64,

    /// Fraction of tracked keys (by count) evicted per cycle.
    #[serde(default = "default_eviction_ratio")]
    #[garde(range(min = 0.0, max = 1.0))]
    pub eviction_ratio: f64,

    /// Usage fraction of the quota that fires eviction.
    #[serde(default = "default_trigger_watermark")]
    #[schemars(transform = schema::exclusive_minimum_zero, range(max = 1))]
    #[garde(custom(unit_fraction))]
    pub trigger_watermark: f64,

    /// Tokens per chunk of the global CacheBlend directory (program default 256); must equal
    /// the blend servers' chunk size. `--chunk-size` is rendered only when set; it has no
    /// effect unless `blendLookup` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(range(min = 1))]
    pub blend_chunk_size: Option<i32>,

    /// Positions between match probes (program default 1). `--blend-probe-stride` is rendered
    /// only when set; it has no effect unless `blendLookup` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(range(min = 1))]
    pub blend_probe_stride: Option<i32>,

    /// Run the global CacheBlend fingerprint directory (`--enable-blend-lookup`).
    #[serde(default)]
    #[garde(skip)]
    pub blend_lookup: bool,

    /// Token hash algorithm of the blend directory (`--hash-algorithm`); must equal the
    /// engines' `server.hashAlgorithm`.
    #[serde(default)]
    #[garde(skip)]
    pub hash_algorithm: HashAlgorithm,

    /// Metrics.
    #[serde(default)]
    #[schemars(transform = schema::empty_object_default)]
    #[garde(dive)]
    pub prometheus: CoordinatorPrometheus,

    /// Coordinator log level (`LMCACHE_LOG_LEVEL`).
    #[serde(default)]
    #[garde(skip)]
    pub log_level: LogLevel,

    /// Node selector (no default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// The pod pass-through fields (the same for the engines).
    #[serde(flatten)]
    #[garde(dive)]
    pub pod: PodConfig,
}

impl Default for CoordinatorSpec {
    fn default() -> Self {
        Self {
            replicas: default_replicas(),
            image: ImageSpec::default(),
            host: default_host(),
            port: default_port(),
            instance_timeout: default_instance_timeout(),
            health_check_interval: default_health_check_interval(),
            eviction_check_interval: default_eviction_check_interval(),
            eviction_ratio: default_eviction_ratio(),
            trigger_watermark: default_trigger_watermark(),
            blend_chunk_size: None,
            blend_probe_stride: None,
            blend_lookup: false,
            hash_algorithm: HashAlgorithm::default(),
            prometheus: CoordinatorPrometheus::default(),
            log_level: LogLevel::default(),
            node_selector: None,
            pod: PodConfig::default(),
        }
    }
}

/// Metrics of a coordinator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
#[serde(rename_all = "camelCase")]
pub struct CoordinatorPrometheus {
    /// Serve `/metrics` on the HTTP port (`spec.port`); `false` renders `--disable-metrics`.
    #[serde(default = "default_true")]
    #[garde(skip)]
    pub enabled: bool,
    /// Unused by LMCache 0.5.6, which serves `/metrics` on the HTTP port; accepted so stored
    /// objects stay valid.
    #[serde(default = "default_metrics_port")]
    #[garde(range(min = 1, max = 65535))]
    pub port: i32,
    /// Headless metrics Service and ServiceMonitor.
    #[serde(default)]
    #[schemars(transform = schema::empty_object_default)]
    #[garde(dive)]
    pub service_monitor: CoordinatorServiceMonitor,
}

impl Default for CoordinatorPrometheus {
    fn default() -> Self {
        Self {
            enabled: true,
            port: default_metrics_port(),
            service_monitor: Default::default(),
        }
    }
}

/// ServiceMonitor settings of a coordinator (no `labels` field in v1).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
#[serde(rename_all = "camelCase")]
pub struct CoordinatorServiceMonitor {
    /// Create a headless metrics Service and a ServiceMonitor.
    #[serde(default)]
    #[garde(skip)]
    pub enabled: bool,
    /// Scrape interval.
    #[serde(default = "default_interval")]
    #[garde(length(min = 1), pattern(PrometheusDuration))]
    pub interval: String,
}

impl Default for CoordinatorServiceMonitor {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: default_interval(),
        }
    }
}
