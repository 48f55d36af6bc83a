//! Status of the three kinds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of an LMCacheEngine or CacheBlendEngine.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EngineStatus {
    /// `Pending`, `Running`, `Degraded` or `Failed` (validation, a missing coordinator, a name
    /// conflict, or a workload, Service or ConfigMap the API server rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Ready engine pods (DaemonSet `status.numberReady`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_instances: Option<i32>,
    /// Nodes that should run an engine pod (DaemonSet `status.desiredNumberScheduled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_instances: Option<i32>,
    /// Engine pods running the current pod template (DaemonSet `status.updatedNumberScheduled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_instances: Option<i32>,
    /// One entry per engine pod, sorted by node name, then pod name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<Endpoint>>,
    /// `Available`, `AllInstancesReady`, `UpToDate`, `ConfigValid` and, last, `Ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Option<Vec<Condition>>,
    /// `metadata.generation` of the spec last processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods naming this engine that opted into its webhook but were admitted without it (the
    /// webhook was down): they run without LMCache. Absent when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed_injections: Option<i32>,
}

/// One engine pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Node the pod runs on (`""` if not scheduled).
    pub node_name: String,
    /// The node's IP (`""` until known).
    #[serde(rename = "hostIP")]
    pub host_ip: String,
    /// Pod name.
    pub pod_name: String,
    /// Server port (`spec.server.port`).
    pub port: i32,
    /// The pod's `Ready` condition is `True`.
    pub ready: bool,
    /// The pod runs the DaemonSet's current pod template.
    #[serde(default)]
    pub up_to_date: bool,
}

/// Observed state of an LMCacheCoordinator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CoordinatorStatus {
    /// `Pending`, `Running`, `Degraded` or `Failed` (validation, a name conflict, or a
    /// Deployment or Service the API server rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Desired replicas (Deployment `spec.replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Deployment `status.readyReplicas` (0 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// `http://<name>.<namespace>.svc:<port>`, the URL engines use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// `metadata.generation` of the spec last processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Available`, `AllInstancesReady`, `ConfigValid` and, last, `Ready`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Option<Vec<Condition>>,
}
