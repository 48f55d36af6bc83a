//! `CacheBlendEngine`: the blend variant of the engine plus the webhook's injection settings.

use super::common::{PullPolicy, default_image_tag, unit_fraction};
use super::engine::{
    EngineSpec, HTTP_METRICS_PORT_RULE, HTTP_METRICS_PORT_RULE_MESSAGE, HTTP_PORT_RULE,
    HTTP_PORT_RULE_MESSAGE, NAME_RULE, NAME_RULE_MESSAGE, PORTS_RULE, PORTS_RULE_MESSAGE,
};
use super::schema;
use super::status::EngineStatus;
use garde::Validate;
use k8s_openapi::api::core::v1::LocalObjectReference;
use kube::CustomResource;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};

/// The only chunk size the blend matcher accepts: vLLM `--block-size` 64 × 4 (B01).
pub const BLEND_CHUNK_SIZE: i32 = 256;

/// Desired state of a CacheBlendEngine: every LMCacheEngine field, plus `blend` and `injection`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
#[kube(
    group = "lmcache.lmcache.ai",
    version = "v1alpha1",
    kind = "CacheBlendEngine",
    plural = "cacheblendengines",
    singular = "cacheblendengine",
    shortname = "cbe",
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
#[schemars(
    transform = blend_chunk_size,
    extend("x-kubernetes-validations" = [
        {"rule": PORTS_RULE, "message": PORTS_RULE_MESSAGE},
        {"rule": HTTP_PORT_RULE, "message": HTTP_PORT_RULE_MESSAGE},
        {"rule": HTTP_METRICS_PORT_RULE, "message": HTTP_METRICS_PORT_RULE_MESSAGE},
    ])
)]
pub struct CacheBlendEngineSpec {
    /// The fields shared with LMCacheEngine.
    #[serde(flatten)]
    #[garde(dive)]
    pub engine: EngineSpec,

    /// CacheBlend tunables.
    #[serde(default)]
    #[schemars(transform = schema::empty_object_default)]
    #[garde(dive)]
    pub blend: BlendConfig,

    /// Webhook injection settings. Optional in Rust so the webhook and operator can still read
    /// engines stored before the schema required it; the schema requires it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[garde(required, dive)]
    pub injection: Option<InjectionConfig>,
}

/// B01 in the schema: `server.chunkSize` is `enum: [256]` instead of `minimum: 1`.
fn blend_chunk_size(schema: &mut Schema) {
    let chunk = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut("server"))
        .and_then(|s| s.get_mut("properties"))
        .and_then(|p| p.get_mut("chunkSize"))
        .and_then(|c| c.as_object_mut());
    if let Some(chunk) = chunk {
        chunk.remove("minimum");
        chunk.insert("enum".into(), serde_json::json!([BLEND_CHUNK_SIZE]));
        chunk.insert(
            "description".into(),
            "Token chunk size (`--chunk-size`). Must be 256: the blend matcher requires chunk_size == vLLM --block-size (64) x 4."
                .into(),
        );
    }
}

fn default_check_layer() -> i32 {
    1
}
fn default_recomp_ratio() -> f64 {
    0.15
}

/// CacheBlend tunables.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
#[serde(rename_all = "camelCase")]
pub struct BlendConfig {
    /// Layer at which token importance is computed (`cb.check_layer`).
    #[serde(default = "default_check_layer")]
    #[garde(range(min = 0))]
    pub check_layer: i32,
    /// Fraction of non-prefix-hit tokens recomputed (`cb.recomp_ratio`).
    #[serde(default = "default_recomp_ratio")]
    #[schemars(transform = schema::exclusive_minimum_zero, range(max = 1))]
    #[garde(custom(unit_fraction))]
    pub recomp_ratio: f64,
}

impl Default for BlendConfig {
    fn default() -> Self {
        Self {
            check_layer: default_check_layer(),
            recomp_ratio: default_recomp_ratio(),
        }
    }
}

/// Webhook injection settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
#[serde(rename_all = "camelCase")]
pub struct InjectionConfig {
    /// The (private) cacheblend-plugin init-container image. Its repository has no default.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[garde(required, dive)]
    pub payload_image: Option<PayloadImage>,
    /// Appended to injected vLLM pods; the Secrets must exist in the vLLM pod's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = schema::embedded_list)]
    #[garde(skip)]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Name of the vLLM container to inject (default: the first container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[garde(length(min = 1))]
    pub target_container: Option<String>,
    /// CUDA-graph mode of the injected vLLM flags.
    #[serde(default)]
    #[garde(skip)]
    pub cudagraph: CudaGraphMode,
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

/// A payload image: its entrypoint copies a Python package into `$SHARED_DIR`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
#[serde(rename_all = "camelCase")]
pub struct PayloadImage {
    /// Payload image repository (required when the image is set; never defaulted).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[garde(required, length(min = 1))]
    pub repository: Option<String>,
    /// Payload image tag.
    #[serde(default = "default_image_tag")]
    #[garde(skip)]
    pub tag: String,
    /// Payload image pull policy.
    #[serde(default)]
    #[garde(skip)]
    pub pull_policy: PullPolicy,
}

impl PayloadImage {
    /// `repository:tag` when the repository is set and not blank.
    pub fn reference(&self) -> Option<String> {
        let repo = self
            .repository
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())?;
        Some(format!("{repo}:{}", self.tag))
    }
}

/// CUDA-graph mode of the injected vLLM flags (B04). `full` is not allowed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CudaGraphMode {
    /// `--enforce-eager`.
    #[default]
    Eager,
    /// `--compilation-config {"cudagraph_mode":"PIECEWISE"}` (vLLM 0.33 otherwise uses
    /// `FULL_AND_PIECEWISE`).
    Piecewise,
    /// `--compilation-config {"cudagraph_mode":"FULL_DECODE_ONLY"}`. For both graph modes a
    /// user's `--compilation-config`/`-cc` JSON object keeps its other keys.
    FullDecodeOnly,
}
