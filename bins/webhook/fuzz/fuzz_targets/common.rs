//! The admitter every target uses: one CacheBlendEngine `my-cacheblend` and one LMCacheEngine
//! `my-cache` in `default`.

use lmcache_blend_injector::Webhook;
use lmcache_webhook::{Admitter, EngineCache};
use std::sync::LazyLock;

pub static ADMITTER: LazyLock<Admitter> = LazyLock::new(|| {
    let engine = lmcache_blend_injector::decode_engine(serde_json::json!({
        "apiVersion": "lmcache.lmcache.ai/v1alpha1",
        "kind": "CacheBlendEngine",
        "metadata": {"name": "my-cacheblend", "namespace": "default"},
        "spec": {
            "l1": {"sizeGB": 60},
            "injection": {
                "payloadImage": {"repository": "registry.example.com/cacheblend-plugin", "tag": "v1"},
                "imagePullSecrets": [{"name": "my-registry-secret"}]
            }
        }
    }))
    .expect("valid engine");
    let lmcache = lmcache_blend_injector::decode_lmcache_engine(serde_json::json!({
        "apiVersion": "lmcache.lmcache.ai/v1alpha1",
        "kind": "LMCacheEngine",
        "metadata": {"name": "my-cache", "namespace": "default"},
        "spec": {"l1": {"sizeGB": 60}, "injection": {"payloadImage": {"repository": "reg/payload"}}}
    }))
    .expect("valid engine");
    Admitter::new(
        EngineCache::from_engines([engine], "default"),
        EngineCache::from_engines([lmcache], "default"),
        "cluster.local",
    )
});

/// The webhook a fuzz input goes to: its first byte's low bit.
pub fn webhook_of(data: &[u8]) -> Webhook {
    match data.first() {
        Some(b) if b & 1 == 1 => Webhook::Lmcache,
        _ => Webhook::CacheBlend,
    }
}

/// An answer is either an allowing JSON AdmissionReview, or a 400 for a body without a uid.
pub fn check_answer(verdict: &lmcache_webhook::Verdict, body: &[u8]) -> serde_json::Value {
    if verdict.status != http::StatusCode::OK {
        assert_eq!(verdict.status, http::StatusCode::BAD_REQUEST);
        assert_eq!(lmcache_webhook::admission::readable_uid(body), None);
        return serde_json::Value::Null;
    }
    let review: serde_json::Value = serde_json::from_slice(&verdict.body()).expect("answer is JSON");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(review["response"]["allowed"], true, "never denied");
    review
}
