//! `LMCacheEngine`: a DaemonSet of LMCache MP servers, one per matching GPU node.

use super::common::{
    ImageSpec, LogLevel, PrometheusDuration, default_interval, default_metrics_port, default_true, positive,
    unit_fraction,
};
use super::pod::PodConfig;
use super::schema;
use super::status::EngineStatus;
use garde::Validate;
use k8s_openapi::api::core::v1::LocalObjectReference;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Label of GPU nodes, the engines' default `nodeSelector`.
pub const GPU_PRESENT_LABEL: &str = "nvidia.com/gpu.present";

/// CEL rule at the schema root of all three kinds (E20, C14).
pub const NAME_RULE: &str =
    "size(self.metadata.name) <= 55 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";
/// Message of [`NAME_RULE`].
pub const NAME_RULE_MESSAGE: &str = "metadata.name must be a DNS-1035 label of at most 55 characters";
/// CEL rule on `spec.coordinator` (E15).
pub const COORDINATOR_RULE: &str = "has(self.ref) != has(self.url)";
/// Message of [`COORDINATOR_RULE`].
pub const COORDINATOR_RULE_MESSAGE: &str = "exactly one of ref or url must be set";
/// CEL rule on the engines' `spec` (E11).
pub const PORTS_RULE: &str = "(has(self.prometheus) && has(self.prometheus.enabled) && !self.prometheus.enabled) || ((has(self.prometheus) && has(self.prometheus.port)) ? self.prometheus.port : 9090) != ((has(self.server) && has(self.server.port)) ? self.server.port : 5555)";
/// Message of [`PORTS_RULE`].
pub const PORTS_RULE_MESSAGE: &str =
    "prometheus.port must differ from server.port when prometheus is enabled";
/// CEL rule on the engines' `spec` (E22): the HTTP frontend and the ZMQ server need two ports.
pub const HTTP_PORT_RULE: &str = "((has(self.server) && has(self.server.httpPort)) ? self.server.httpPort : 8080) != ((has(self.server) && has(self.server.port)) ? self.server.port : 5555)";
/// Message of [`HTTP_PORT_RULE`].
pub const HTTP_PORT_RULE_MESSAGE: &str = "server.httpPort must differ from server.port";
/// CEL rule on the engines' `spec` (E23): the exporter port, when enabled, is a third port.
pub const HTTP_METRICS_PORT_RULE: &str = "(has(self.prometheus) && has(self.prometheus.enabled) && !self.prometheus.enabled) || ((has(self.prometheus) && has(self.prometheus.port)) ? self.prometheus.port : 9090) != ((has(self.server) && has(self.server.httpPort)) ? self.server.httpPort : 8080)";
/// Message of [`HTTP_METRICS_PORT_RULE`].
pub const HTTP_METRICS_PORT_RULE_MESSAGE: &str =
    "server.httpPort must differ from prometheus.port when prometheus is enabled";

/// Desired state of an LMCacheEngine: the engine fields plus the connection webhook's settings.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
#[kube(
    group = "lmcache.lmcache.ai",
    version = "v1alpha1",
    kind = "LMCacheEngine",
    plural = "lmcacheengines",
    singular = "lmcacheengine",
    shortname = "lmc",
    category = "lmcache",
    namespaced,
    status = "EngineStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyInstances"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".status.desiredInstances"}"#,
    printcolumn = r#"{"name":"Updated","type":"integer","jsonPath":".status.updatedInstances","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new(NAME_RULE).message(NAME_RULE_MESSAGE),
    crates(kube_core = "::kube::core", k8s_openapi = "::k8s_openapi", schemars = "::schemars")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": PORTS_RULE, "message": PORTS_RULE_MESSAGE},
    {"rule": HTTP_PORT_RULE, "message": HTTP_PORT_RULE_MESSAGE},
    {"rule": HTTP_METRICS_PORT_RULE, "message": HTTP_METRICS_PORT_RULE_MESSAGE},
]))]
pub struct LMCacheEngineSpec {
    /// The fields shared with CacheBlendEngine.
    #[serde(flatten)]
    #[garde(dive)]
    pub engine: EngineSpec,

    /// Settings of the LMCache connection webhook (pods labelled `lmcache.ai/lmcache-inject:
    /// "true"` and annotated `lmcache.ai/lmcache-engine: <name>`). Optional: without it the
    /// webhook wires the first container and stages no payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub injection: Option<ConnectionInjection>,
}

/// The connection webhook's settings of an LMCacheEngine.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema, Validate)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInjection {
    /// Name of the vLLM container to wire (default: the first container; a pod's
    /// `lmcache.ai/lmcache-container` annotation wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(length(min = 1))]
    pub target_container: Option<String>,
    /// Optional image whose entrypoint copies a Python payload (e.g. the `lmcache` package
    /// matching the engine) into `$SHARED_DIR`; staged into the vLLM pod and prepended to its
    /// `PYTHONPATH`. Its repository has no default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub payload_image: Option<super::blend::PayloadImage>,
    /// Appended to wired vLLM pods (for the payload image); the Secrets must exist in the pod's
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = schema::embedded_list)]
    #[garde(skip)]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Recreate opted-in pods the webhook missed: a pod naming this engine that was admitted
    /// while the webhook was down (its `failurePolicy` is `Ignore`, so pod creation never
    /// waits for it) runs without LMCache. The operator always reports such pods
    /// (`InjectionMissed` Events, `status.missedInjections`); with this set it also evicts
    /// those that have a controller (Deployment, StatefulSet, Job, ...) once the webhook is
    /// ready again, so the controller recreates them through the webhook. Bare pods are only
    /// reported. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[garde(skip)]
    pub repair_missed: bool,
}

/// The fields LMCacheEngine and CacheBlendEngine share (flattened into both specs).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::pod::engine_descriptions)]
pub struct EngineSpec {
    /// Engine container image.
    #[serde(default)]
    #[schemars(transform = schema::empty_object_default)]
    #[garde(dive)]
    pub image: ImageSpec,

    /// LMCache MP server settings.
    #[serde(default)]
    #[schemars(transform = schema::empty_object_default)]
    #[garde(dive)]
    pub server: ServerConfig,

    /// L1 (CPU memory) cache.
    #[garde(dive)]
    pub l1: L1Config,

    /// L1 eviction.
    #[serde(default)]
    #[schemars(transform = schema::empty_object_default)]
    #[garde(dive)]
    pub eviction: EvictionConfig,

    /// Prometheus metrics.
    #[serde(default)]
    #[schemars(transform = schema::empty_object_default)]
    #[garde(dive)]
    pub prometheus: PrometheusConfig,

    /// L2 backends, in order; each becomes one `--l2-adapter` flag.
    #[serde(default, rename = "l2Backends", skip_serializing_if = "Option::is_none")]
    #[schemars(transform = schema::atomic_list)]
    #[garde(rename("l2Backends"), dive)]
    pub l2_backends: Option<Vec<L2Backend>>,

    /// Nodes that run an engine pod. An explicit empty map `{}` means "no node selector".
    #[serde(default = "default_node_selector")]
    #[garde(skip)]
    pub node_selector: BTreeMap<String, String>,

    /// Server log level (`LMCACHE_LOG_LEVEL`).
    #[serde(default)]
    #[garde(skip)]
    pub log_level: LogLevel,

    /// The pod pass-through fields (the same for the coordinator).
    #[serde(flatten)]
    #[garde(dive)]
    pub pod: PodConfig,

    /// Connection to an LMCacheCoordinator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(dive)]
    pub coordinator: Option<CoordinatorConnection>,

    /// How engine pods are replaced when their rendered template changes (a spec change, or an
    /// operator upgrade that renders a different template). Absent: `RollingUpdate` with
    /// `maxUnavailable: 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub update_strategy: Option<super::rollout::UpdateStrategy>,
}

/// The default `nodeSelector`: GPU nodes.
pub fn default_node_selector() -> BTreeMap<String, String> {
    BTreeMap::from([(GPU_PRESENT_LABEL.to_string(), "true".to_string())])
}

fn default_server_port() -> i32 {
    5555
}
fn default_http_port() -> i32 {
    8080
}
fn default_chunk_size() -> i32 {
    256
}
fn default_max_workers() -> i32 {
    1
}

/// LMCache MP server settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
#[serde(rename_all = "camelCase")]
pub struct ServerConfig {
    /// ZMQ listen port. Also the lookup Service port and the port in the connection ConfigMap.
    #[serde(default = "default_server_port")]
    #[garde(range(min = 1024, max = 65535))]
    pub port: i32,
    /// Port of the server's HTTP frontend (`--http-port`, bound to `0.0.0.0`): `/metrics`, and
    /// the API the coordinator calls back (L2 quota eviction, prefetch, delete). Unauthenticated.
    #[serde(default = "default_http_port")]
    #[garde(range(min = 1024, max = 65535))]
    pub http_port: i32,
    /// Token chunk size (`--chunk-size`). CacheBlendEngine requires 256.
    #[serde(default = "default_chunk_size")]
    #[garde(range(min = 1))]
    pub chunk_size: i32,
    /// Worker threads for ZMQ requests (`--max-workers`).
    #[serde(default = "default_max_workers")]
    #[garde(range(min = 1))]
    pub max_workers: i32,
    /// Token hash algorithm (`--hash-algorithm`).
    #[serde(default)]
    #[garde(skip)]
    pub hash_algorithm: HashAlgorithm,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            port: default_server_port(),
            http_port: default_http_port(),
            chunk_size: default_chunk_size(),
            max_workers: default_max_workers(),
            hash_algorithm: HashAlgorithm::default(),
        }
    }
}

/// Token hash algorithm (E09).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HashAlgorithm {
    /// Python's builtin hash.
    Builtin,
    /// SHA-256 over CBOR.
    Sha256Cbor,
    /// BLAKE3.
    #[default]
    Blake3,
}

impl HashAlgorithm {
    /// The command-line spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::Sha256Cbor => "sha256_cbor",
            Self::Blake3 => "blake3",
        }
    }
}

/// L1 (CPU memory) cache.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
pub struct L1Config {
    /// L1 cache size in GB; also drives resource sizing.
    #[serde(rename = "sizeGB")]
    #[schemars(transform = schema::exclusive_minimum_zero)]
    #[garde(rename("sizeGB"), custom(positive))]
    pub size_gb: f64,
}

fn default_trigger_watermark() -> f64 {
    0.8
}
fn default_eviction_ratio() -> f64 {
    0.2
}

/// L1 eviction.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
#[serde(rename_all = "camelCase")]
pub struct EvictionConfig {
    /// Only `LRU` is supported.
    #[serde(default)]
    #[garde(skip)]
    pub policy: EvictionPolicy,
    /// Usage fraction that triggers eviction.
    #[serde(default = "default_trigger_watermark")]
    #[schemars(transform = schema::exclusive_minimum_zero, range(max = 1))]
    #[garde(custom(unit_fraction))]
    pub trigger_watermark: f64,
    /// Fraction evicted per eviction cycle.
    #[serde(default = "default_eviction_ratio")]
    #[schemars(transform = schema::exclusive_minimum_zero, range(max = 1))]
    #[garde(custom(unit_fraction))]
    pub eviction_ratio: f64,
}

impl Default for EvictionConfig {
    fn default() -> Self {
        Self {
            policy: EvictionPolicy::default(),
            trigger_watermark: default_trigger_watermark(),
            eviction_ratio: default_eviction_ratio(),
        }
    }
}

/// L1 eviction policy (E03).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum EvictionPolicy {
    /// Least recently used.
    #[default]
    #[serde(rename = "LRU")]
    Lru,
}

impl EvictionPolicy {
    /// The command-line spelling.
    pub fn as_str(self) -> &'static str {
        "LRU"
    }
}

/// Prometheus metrics of an engine.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusConfig {
    /// Serve Prometheus metrics (`/metrics` on the HTTP frontend, `server.httpPort`); `false`
    /// renders `--disable-metrics`.
    #[serde(default = "default_true")]
    #[garde(skip)]
    pub enabled: bool,
    /// Passed as `--prometheus-port`. LMCache 0.5.6 serves `/metrics` on the HTTP frontend
    /// (`server.httpPort`) and does not open this port; kept for images that do.
    #[serde(default = "default_metrics_port")]
    #[garde(range(min = 1, max = 65535))]
    pub port: i32,
    /// Prometheus Operator integration.
    #[serde(default)]
    #[schemars(transform = schema::empty_object_default)]
    #[garde(dive)]
    pub service_monitor: ServiceMonitorConfig,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            port: default_metrics_port(),
            service_monitor: ServiceMonitorConfig::default(),
        }
    }
}

/// ServiceMonitor settings of an engine.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorConfig {
    /// Create a ServiceMonitor.
    #[serde(default)]
    #[garde(skip)]
    pub enabled: bool,
    /// Scrape interval.
    #[serde(default = "default_interval")]
    #[garde(length(min = 1), pattern(PrometheusDuration))]
    pub interval: String,
    /// Extra labels on the ServiceMonitor (e.g. `release: kube-prometheus-stack`); cannot override
    /// the selector labels (`app.kubernetes.io/name`, `instance`, `managed-by`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub labels: Option<BTreeMap<String, String>>,
}

impl Default for ServiceMonitorConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: default_interval(),
            labels: None,
        }
    }
}

/// One L2 backend; `config` is passed through uninterpreted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
pub struct L2Backend {
    /// Adapter type, passed through uninterpreted.
    #[serde(rename = "type")]
    #[garde(rename("type"), length(min = 1))]
    pub type_: String,
    /// Adapter configuration, passed through uninterpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    #[garde(skip)]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "Adapter configuration, passed through uninterpreted.",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

fn default_heartbeat() -> f64 {
    5.0
}

/// Connection to an LMCacheCoordinator: exactly one of `ref` or `url`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": COORDINATOR_RULE, "message": COORDINATOR_RULE_MESSAGE}]))]
pub struct CoordinatorConnection {
    /// Reference to an LMCacheCoordinator in the same namespace.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    #[garde(rename("ref"), dive)]
    pub ref_: Option<CoordinatorRef>,
    /// Explicit coordinator base URL, e.g. `http://my-coordinator.default.svc:9300`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(length(min = 1))]
    pub url: Option<String>,
    /// Heartbeat interval to the coordinator, in seconds.
    #[serde(default = "default_heartbeat")]
    #[schemars(transform = schema::exclusive_minimum_zero)]
    #[garde(custom(positive))]
    pub heartbeat_interval: f64,
    /// Report L2 store/lookup events for fleet eviction (`--coordinator-event-reporting`).
    #[serde(default)]
    #[garde(skip)]
    pub l2_event_reporting: bool,
}

/// Names an LMCacheCoordinator in the engine's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
pub struct CoordinatorRef {
    /// Coordinator name.
    #[garde(length(min = 1))]
    pub name: String,
}
