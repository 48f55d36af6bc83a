//! What the CacheBlend webhook does to a pod (cacheblend.md §4–§9), as pure functions.
//!
//! [`inject`] takes the submitted pod, the namespace of the admission request, the
//! CacheBlendEngine the pod's `lmcache.ai/cacheblend-engine` annotation names (looked up by the
//! caller in that namespace, see [`requested_engine`]) and the cluster domain, and returns an
//! [`Outcome`]: the injected pod, a skipped pod (only the skip-reason annotation added), or no
//! change at all. [`patch`] turns the result into the RFC 6902 JSON Patch the webhook returns.
//!
//! ```
//! use k8s_openapi::api::core::v1::Pod;
//! use lmcache_api::v1alpha1::CacheBlendEngine;
//! use lmcache_blend_injector::{Outcome, inject, patch, requested_engine};
//!
//! let pod: Pod = serde_json::from_value(serde_json::json!({
//!     "metadata": {
//!         "labels": {"lmcache.ai/cacheblend-inject": "true"},
//!         "annotations": {"lmcache.ai/cacheblend-engine": "my-cacheblend"}
//!     },
//!     "spec": {"containers": [{"name": "vllm", "image": "vllm", "args": ["m"]}]}
//! }))?;
//! let engine: CacheBlendEngine = serde_json::from_value(serde_json::json!({
//!     "apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": "CacheBlendEngine",
//!     "metadata": {"name": "my-cacheblend", "namespace": "default"},
//!     "spec": {"l1": {"sizeGB": 60}, "injection": {"payloadImage": {"repository": "reg/plugin"}}}
//! }))?;
//! assert_eq!(requested_engine(&pod), Some("my-cacheblend"));
//! let outcome = inject(&pod, "default", Some(&engine), "cluster.local");
//! let Outcome::Injected(injected) = &outcome else { panic!("{outcome:?}") };
//! assert_eq!(injected.spec.as_ref().and_then(|s| s.host_ipc), Some(true));
//! assert!(!patch(&pod, injected).0.is_empty());
//! # Ok::<(), serde_json::Error>(())
//! ```

mod args;
mod engine;
mod gate;
mod mutate;
mod outcome;

pub use args::{
    COMPILATION_CONFIG, Flag, PIPELINE_PARALLEL_SIZE, bare_flag, disable_chunked_prefill, has_flag,
    matches_flag, set_cudagraph_mode, set_flag,
};
pub use engine::decode_engine;
pub use gate::{inject, requested_engine};
pub use outcome::{Outcome, SkipReason};

use k8s_openapi::api::core::v1::Pod;

/// Name of the plugin volume, its init container and its mount path.
pub const PLUGIN_VOLUME: &str = "cb-plugin";
/// Name of the init container that copies the plugin.
pub const STAGE_CONTAINER: &str = "cb-plugin-stage";
/// Where the plugin is mounted (and `PYTHONPATH`'s new first entry).
pub const PLUGIN_PATH: &str = "/cb-plugin";

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A stored CacheBlendEngine could not be decoded, even leniently.
    #[error("cannot decode CacheBlendEngine: {0}")]
    DecodeEngine(#[source] serde_json::Error),
}

/// The RFC 6902 patch that turns `original` into `mutated` (an empty patch when they are equal).
///
/// Both pods are serialised the same way, so only what [`inject`] changed appears; fields the
/// typed `Pod` does not know are absent on both sides and are therefore never touched.
pub fn patch(original: &Pod, mutated: &Pod) -> json_patch::Patch {
    // A Pod always serialises (string keys only); a failure would give an empty patch.
    let before = serde_json::to_value(original).unwrap_or_default();
    let after = serde_json::to_value(mutated).unwrap_or_default();
    json_patch::diff(&before, &after)
}
