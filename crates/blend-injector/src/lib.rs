//! What the two mutating webhooks do to a pod, as pure functions: the CacheBlend injector
//! (`lmcache.ai/cacheblend-inject`, cacheblend.md §4–§9) and the LMCache connection injector
//! (`lmcache.ai/lmcache-inject`, connection-webhook.md §3–§4). They share the gate, the skip
//! reasons, payload staging, `PYTHONPATH` and pull-secret handling ([`Webhook`] holds the keys
//! and names that differ); each engine kind says what it changes in the target container
//! ([`Injectable`]).
//!
//! [`inject`] takes the submitted pod, the namespace of the admission request, the engine the
//! pod's engine annotation names (looked up by the caller in that namespace, see
//! [`requested_engine`]) and the cluster domain, and returns an [`Outcome`]: the injected pod,
//! a skipped pod (only the skip-reason annotation added), or no change at all. [`patch`] turns
//! the result into the RFC 6902 JSON Patch the webhook returns.
//!
//! ```
//! use k8s_openapi::api::core::v1::Pod;
//! use lmcache_api::v1alpha1::{CacheBlendEngine, LMCacheEngine};
//! use lmcache_blend_injector::{Outcome, Webhook, inject, patch, requested_engine};
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
//! assert_eq!(requested_engine(&pod, Webhook::CacheBlend), Some("my-cacheblend"));
//! let outcome = inject(&pod, "default", Some(&engine), "cluster.local");
//! let Outcome::Injected(injected) = &outcome else { panic!("{outcome:?}") };
//! assert_eq!(injected.spec.as_ref().and_then(|s| s.host_ipc), Some(true));
//! assert!(!patch(&pod, injected).0.is_empty());
//!
//! // The same pod is not opted into the connection webhook.
//! let none: Option<&LMCacheEngine> = None;
//! assert_eq!(inject(&pod, "default", none, "cluster.local"), Outcome::NotOptedIn);
//! # Ok::<(), serde_json::Error>(())
//! ```

mod args;
mod engine;
mod gate;
mod outcome;
mod stage;
mod webhook;

pub use args::{
    COMPILATION_CONFIG, Flag, PIPELINE_PARALLEL_SIZE, bare_flag, disable_chunked_prefill, has_flag,
    matches_flag, set_cudagraph_mode, set_flag,
};
pub use engine::{Injectable, decode_engine, decode_lmcache_engine};
pub use gate::{inject, requested_engine};
pub use outcome::{Outcome, SkipReason};
pub use stage::stage_resources;
pub use webhook::Webhook;

use k8s_openapi::api::core::v1::Pod;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A stored engine could not be decoded, even leniently.
    #[error("cannot decode the engine: {0}")]
    DecodeEngine(String),
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
