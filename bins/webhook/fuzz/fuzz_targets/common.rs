//! The admitter every target uses: one engine `my-cacheblend` in `default`.

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
    Admitter::new(EngineCache::from_engines([engine], "default"), "cluster.local")
});

/// Every answer is a JSON AdmissionReview with a boolean `allowed`.
pub fn check_answer(verdict: &lmcache_webhook::Verdict) -> serde_json::Value {
    let review: serde_json::Value = serde_json::from_slice(&verdict.to_json()).expect("answer is JSON");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    assert!(review["response"]["allowed"].is_boolean());
    review
}
