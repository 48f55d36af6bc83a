//! Custom resource types of the LMCache operator, API group `lmcache.lmcache.ai/v1alpha1`.
//!
//! Three namespaced kinds:
//!
//! * [`LMCacheEngine`](v1alpha1::LMCacheEngine) (`lmc`): a DaemonSet of LMCache MP cache servers,
//!   one per matching GPU node, with a node-local Service and a `<name>-connection` ConfigMap
//!   holding vLLM's `--kv-transfer-config` JSON;
//! * [`CacheBlendEngine`](v1alpha1::CacheBlendEngine) (`cbe`): the same with the blend engine,
//!   plus the settings a mutating webhook uses to inject the CacheBlend plugin into vLLM pods;
//! * [`LMCacheCoordinator`](v1alpha1::LMCacheCoordinator) (`lmcc`): the fleet-wide coordinator.
//!
//! The types carry serde defaults equal to the CRD schema's, so a deserialised object always
//! has its defaults applied, and `garde` rules equal to the schema's bounds (`lmcache-validation`
//! adds the cross-field rules and the exact messages). This crate depends on `kube`'s derive
//! only: no client, no runtime, no I/O.
//!
//! Building an engine in Rust and printing it as YAML:
//!
//! ```
//! use lmcache_api::v1alpha1::{L1Config, LMCacheEngine, LMCacheEngineSpec};
//!
//! let spec: LMCacheEngineSpec = serde_json::from_value(serde_json::json!({"l1": {"sizeGB": 60}}))?;
//! assert_eq!(spec.engine.server.port, 5555); // defaults are applied on deserialisation
//! let mut engine = LMCacheEngine::new("my-cache", spec);
//! engine.spec.engine.l1 = L1Config { size_gb: 80.0 };
//! let yaml = serde_saphyr::to_string(&engine)?;
//! assert!(yaml.contains("kind: LMCacheEngine"));
//! assert!(yaml.contains("sizeGB: 80.0"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`crds`] returns the three CustomResourceDefinitions exactly as `deploy/crds/` holds them.

pub mod constants;
mod kind;
pub mod v1alpha1;

pub use kind::Kind;

pub use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The three CRDs, in install order. Prefer this to `LMCacheCoordinator::crd()`: it also makes
/// the coordinator's `spec` optional with `default: {}` (every coordinator field has a default),
/// which the derive cannot express.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        v1alpha1::LMCacheEngine::crd(),
        v1alpha1::CacheBlendEngine::crd(),
        coordinator_crd(),
    ]
}

fn coordinator_crd() -> CustomResourceDefinition {
    let mut crd = v1alpha1::LMCacheCoordinator::crd();
    let root = crd
        .spec
        .versions
        .iter_mut()
        .filter_map(|v| v.schema.as_mut()?.open_api_v3_schema.as_mut());
    for root in root {
        if let Some(required) = root.required.as_mut() {
            required.retain(|r| r != "spec");
        }
        if root.required.as_ref().is_some_and(Vec::is_empty) {
            root.required = None;
        }
        if let Some(spec) = root.properties.as_mut().and_then(|p| p.get_mut("spec")) {
            spec.default = Some(
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(serde_json::json!(
                    {}
                )),
            );
        }
    }
    crd
}

#[cfg(test)]
mod tests;
