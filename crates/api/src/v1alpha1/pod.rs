//! The pod pass-through fields every kind has, flattened into the engines' and the
//! coordinator's spec.

use super::schema;
use garde::Validate;
use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration, Volume, VolumeMount,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a user adds to the pods of an engine or a coordinator, passed through to the rendered
/// pod template. Several fields are described per kind in the CRDs (the pods are an engine's or
/// a coordinator's, and `resourceOverrides` means something else for each): the kind's schema
/// sets those descriptions (`engine_descriptions`, `coordinator_descriptions`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema, Validate)]
#[serde(rename_all = "camelCase")]
pub struct PodConfig {
    /// Pull secrets for the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = schema::embedded_list)]
    #[garde(skip)]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,

    /// Pod affinity rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = schema::strip_embedded_descriptions)]
    #[garde(skip)]
    pub affinity: Option<Affinity>,

    /// Pod tolerations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = schema::embedded_list)]
    #[garde(skip)]
    pub tolerations: Option<Vec<Toleration>>,

    /// Priority class for the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub priority_class_name: Option<String>,

    /// Resources of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = schema::strip_embedded_descriptions)]
    #[garde(skip)]
    pub resource_overrides: Option<ResourceRequirements>,

    /// Extra environment variables of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = schema::embedded_list)]
    #[garde(skip)]
    pub env: Option<Vec<EnvVar>>,

    /// Extra pod volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = schema::embedded_list)]
    #[garde(skip)]
    pub volumes: Option<Vec<Volume>>,

    /// Extra mounts on the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = schema::embedded_list)]
    #[garde(skip)]
    pub volume_mounts: Option<Vec<VolumeMount>>,

    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub pod_annotations: Option<BTreeMap<String, String>>,

    /// Extra pod labels (cannot override selector labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub pod_labels: Option<BTreeMap<String, String>>,

    /// ServiceAccount for the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(skip)]
    pub service_account_name: Option<String>,

    /// Extra CLI arguments, appended last (may override generated flags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = schema::atomic_list)]
    #[garde(skip)]
    pub extra_args: Option<Vec<String>>,
}

/// The engines' wording of the [`PodConfig`] fields whose description names the kind.
const ENGINE_DESCRIPTIONS: [(&str, &str); 7] = [
    (
        "imagePullSecrets",
        "Pull secrets for engine pods (same namespace).",
    ),
    ("priorityClassName", "Priority class for engine pods."),
    (
        "resourceOverrides",
        "When present, replaces the auto-computed resources entirely.",
    ),
    ("env", "Extra environment variables for the engine container."),
    ("volumeMounts", "Extra mounts on the engine container."),
    ("serviceAccountName", "ServiceAccount for engine pods."),
    (
        "extraArgs",
        "Extra server CLI arguments, appended last (may override generated flags).",
    ),
];

/// The coordinator's wording of the [`PodConfig`] fields whose description names the kind.
const COORDINATOR_DESCRIPTIONS: [(&str, &str); 7] = [
    ("imagePullSecrets", "Pull secrets for coordinator pods."),
    ("priorityClassName", "Priority class for coordinator pods."),
    (
        "resourceOverrides",
        "Pod resources, used verbatim (no auto-compute).",
    ),
    ("env", "Extra environment variables."),
    ("volumeMounts", "Extra container mounts."),
    ("serviceAccountName", "ServiceAccount for coordinator pods."),
    ("extraArgs", "Appended last; can override any generated flag."),
];

/// Container transform of the engines' spec: the engine wording of the pod fields.
pub(crate) fn engine_descriptions(schema: &mut schemars::Schema) {
    schema::describe(schema, &ENGINE_DESCRIPTIONS);
}

/// Container transform of the coordinator's spec: the coordinator wording of the pod fields.
pub(crate) fn coordinator_descriptions(schema: &mut schemars::Schema) {
    schema::describe(schema, &COORDINATOR_DESCRIPTIONS);
}
