//! The engines a pod can name, as the injector needs them, and how stored engines are read.

use crate::Error;
use crate::webhook::Webhook;
use k8s_openapi::api::core::v1::{Container, EnvVar};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use lmcache_api::v1alpha1::{
    CacheBlendEngine, EngineSpec, HashAlgorithm, Injection, LMCacheEngine, PodConfig,
};
use lmcache_manifest_renderer::{
    ConnectionKind, PYTHON_HASH_SEED, PYTHON_HASH_SEED_ENV, blend_kv_transfer_config, kv_transfer_config,
};
use serde_json::Value;
use std::collections::BTreeMap;

use crate::args::{PIPELINE_PARALLEL_SIZE, bare_flag, disable_chunked_prefill, set_cudagraph_mode, set_flag};
use lmcache_api::v1alpha1::CudaGraphMode;

/// An engine kind one of the webhooks wires pods to.
pub trait Injectable {
    /// The webhook that handles this kind.
    const WEBHOOK: Webhook;
    /// The engine's metadata (name, namespace, deletion).
    fn metadata(&self) -> &ObjectMeta;
    /// The engine's injection settings (target container, payload image, pull secrets).
    fn injection(&self) -> Injection<'_>;
    /// Whether a pod must be skipped (`payload-image-unset`) without a payload image.
    fn requires_payload() -> bool;
    /// The target container's own changes: flags and environment (I7, L2–L3).
    fn wire(&self, container: &mut Container, namespace: &str, cluster_domain: &str);
}

impl Injectable for CacheBlendEngine {
    const WEBHOOK: Webhook = Webhook::CacheBlend;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn injection(&self) -> Injection<'_> {
        self.spec.injection_settings()
    }
    fn requires_payload() -> bool {
        true
    }
    /// I7: the cacheblend.md §8 flags in order, then the §9 CUDA-graph mapping (conformance.md
    /// §2.4: vLLM 0.33 defaults to `FULL_AND_PIECEWISE`, so `piecewise` is asked for
    /// explicitly). With `hashAlgorithm: builtin`, `PYTHONHASHSEED=0` as on the engine pods.
    fn wire(&self, container: &mut Container, namespace: &str, cluster_domain: &str) {
        let name = self.metadata.name.as_deref().unwrap_or_default();
        let kv_config = blend_kv_transfer_config(&self.spec, name, namespace, cluster_domain);
        let args = container.args.get_or_insert_with(Vec::new);
        set_flag(args, "--attention-backend", "CUSTOM");
        set_flag(args, "--kv-transfer-config", &kv_config);
        set_flag(args, "--block-size", "64");
        set_flag(args, PIPELINE_PARALLEL_SIZE, "1");
        disable_chunked_prefill(args);
        bare_flag(args, "--no-async-scheduling");
        let cudagraph = self
            .spec
            .injection
            .as_ref()
            .map(|i| i.cudagraph)
            .unwrap_or_default();
        match cudagraph {
            CudaGraphMode::Eager => bare_flag(args, "--enforce-eager"),
            CudaGraphMode::Piecewise => set_cudagraph_mode(args, "PIECEWISE"),
            CudaGraphMode::FullDecodeOnly => set_cudagraph_mode(args, "FULL_DECODE_ONLY"),
        }
        if self.spec.engine.server.hash_algorithm == HashAlgorithm::Builtin {
            set_hash_seed(container);
        }
    }
}

impl Injectable for LMCacheEngine {
    const WEBHOOK: Webhook = Webhook::Lmcache;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn injection(&self) -> Injection<'_> {
        self.spec.injection_settings()
    }
    fn requires_payload() -> bool {
        false
    }
    /// L2–L3 (connection-webhook.md §4): `PYTHONHASHSEED=0` unless the user sets it, and the
    /// engine's connection JSON exactly as its ConfigMap holds it.
    fn wire(&self, container: &mut Container, namespace: &str, cluster_domain: &str) {
        let name = self.metadata.name.as_deref().unwrap_or_default();
        let kv_config = kv_transfer_config(
            ConnectionKind::Engine,
            &self.spec.engine,
            name,
            namespace,
            cluster_domain,
        );
        set_hash_seed(container);
        let args = container.args.get_or_insert_with(Vec::new);
        args.push("--kv-transfer-config".to_string());
        args.push(kv_config);
    }
}

/// `PYTHONHASHSEED=0` unless an entry of that name exists (any value or `valueFrom` is kept):
/// `hashAlgorithm: builtin` only hits when vLLM and the server seed Python's `hash()` alike.
fn set_hash_seed(container: &mut Container) {
    let env = container.env.get_or_insert_with(Vec::new);
    if !env.iter().any(|e| e.name == PYTHON_HASH_SEED_ENV) {
        env.push(EnvVar {
            name: PYTHON_HASH_SEED_ENV.into(),
            value: Some(PYTHON_HASH_SEED.into()),
            value_from: None,
        });
    }
}

/// What a webhook cache keeps of an engine's metadata: `managedFields` and annotations (such
/// as `kubectl apply`'s copy of the whole object) are never read.
/// What a cached engine keeps of its metadata: its identity and whether it is being deleted.
/// Labels, annotations, owners, finalizers and `managedFields` are never read by an injector,
/// and at 1000 engines of each kind they were a third of the webhook's cache.
fn trim(meta: &mut ObjectMeta) {
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        resource_version: meta.resource_version.take(),
        generation: meta.generation,
        deletion_timestamp: meta.deletion_timestamp.take(),
        ..ObjectMeta::default()
    };
}

/// Drops what only the engine's own pods use (placement, resources, pod extras, storage
/// tiers); an injector reads the server settings, the blend tunables and `injection`.
fn trim_spec(engine: &mut EngineSpec) {
    engine.pod = PodConfig::default();
    engine.l2_backends = None;
    engine.node_selector = BTreeMap::new();
}

/// Decodes a stored CacheBlendEngine as the operator reads it (defaults applied, `null`s and
/// values the schema rejects dropped, so e.g. an unknown `injection.cudagraph` reads as
/// `eager`), with only the metadata [`trim`] keeps and no status. An engine the operator renders is never "not found" here.
pub fn decode_engine(value: Value) -> Result<CacheBlendEngine, Error> {
    let mut engine = lmcache_validation::repair_blend_engine(&value)
        .map_err(|e| Error::DecodeEngine(lmcache_validation::join(&e)))?;
    trim(&mut engine.metadata);
    trim_spec(&mut engine.spec.engine);
    // The status (endpoints, conditions) is the operator's report, never an injector's input.
    engine.status = None;
    Ok(engine)
}

/// [`decode_engine`] for an LMCacheEngine.
pub fn decode_lmcache_engine(value: Value) -> Result<LMCacheEngine, Error> {
    let mut engine = lmcache_validation::repair_engine(&value)
        .map_err(|e| Error::DecodeEngine(lmcache_validation::join(&e)))?;
    trim(&mut engine.metadata);
    trim_spec(&mut engine.spec.engine);
    engine.status = None;
    Ok(engine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(cudagraph: Value) -> Value {
        json!({
            "apiVersion": "lmcache.lmcache.ai/v1alpha1",
            "kind": "CacheBlendEngine",
            "metadata": {
                "name": "cb", "namespace": "team-a",
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": {
                "l1": {"sizeGB": 60},
                "injection": {"payloadImage": {"repository": "reg/a"}, "cudagraph": cudagraph}
            }
        })
    }

    fn mode(engine: &CacheBlendEngine) -> CudaGraphMode {
        engine.spec.injection.as_ref().unwrap().cudagraph
    }

    #[test]
    fn known_modes_decode_strictly() {
        let engine = decode_engine(stored(json!("piecewise"))).unwrap();
        assert_eq!(mode(&engine), CudaGraphMode::Piecewise);
        assert_eq!(engine.metadata.managed_fields, None);
        assert_eq!(engine.spec.blend.recomp_ratio, 0.15);
    }

    #[test]
    fn unknown_modes_are_eager() {
        for bad in [json!("full"), json!("FULL"), json!(null), json!(3)] {
            let engine = decode_engine(stored(bad.clone())).unwrap();
            assert_eq!(mode(&engine), CudaGraphMode::Eager, "{bad}");
        }
    }

    #[test]
    fn legacy_nulls_decode_as_the_operator_reads_them() {
        // Stored before the schema defaulted these (or by a client that sent `null`s).
        let mut value = stored(json!("eager"));
        value["spec"]["server"] = json!(null);
        value["spec"]["blend"] = json!({"checkLayer": null});
        value["spec"]["prometheus"] = json!(null);
        value["spec"]["injection"]["targetContainer"] = json!(null);
        let engine = decode_engine(value.clone()).unwrap();
        assert_eq!(engine.spec.engine.server.port, 5555);
        assert_eq!(engine.spec.blend.check_layer, 1);
        // Read as the operator reads it, less what only the engine's pods use.
        let mut operator = lmcache_validation::decode_blend_engine(&value).unwrap();
        trim_spec(&mut operator.spec.engine);
        assert_eq!(engine.spec, operator.spec);

        let lmc = json!({"apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": "LMCacheEngine",
            "metadata": {"name": "c", "namespace": "n"},
            "spec": {"l1": {"sizeGB": 1}, "server": {"port": null}, "injection": null}});
        let engine = decode_lmcache_engine(lmc).unwrap();
        assert_eq!(engine.spec.engine.server.port, 5555);
        assert!(engine.spec.injection.is_none());
    }

    #[test]
    fn other_damage_is_an_error() {
        assert!(decode_engine(json!("engine")).is_err());
        assert!(decode_lmcache_engine(json!([])).is_err());
    }

    #[test]
    fn a_cached_engine_keeps_only_what_injection_reads() {
        let engine = decode_lmcache_engine(json!({
            "apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": "LMCacheEngine",
            "metadata": {"name": "e", "namespace": "n", "uid": "u", "labels": {"a": "b"},
                         "annotations": {"x": "y"}, "finalizers": ["f"]},
            "spec": {"l1": {"sizeGB": 1}, "server": {"port": 6000, "hashAlgorithm": "builtin"},
                     "nodeSelector": {"k": "v"}, "tolerations": [{"operator": "Exists"}],
                     "resourceOverrides": {"requests": {"cpu": "1"}}, "env": [{"name": "A", "value": "1"}],
                     "podLabels": {"p": "q"}, "extraArgs": ["--x"],
                     "injection": {"targetContainer": "vllm"}},
            "status": {"phase": "Running"}
        }))
        .unwrap();
        assert_eq!(engine.metadata.name.as_deref(), Some("e"));
        assert_eq!(engine.metadata.uid.as_deref(), Some("u"));
        assert!(engine.metadata.labels.is_none() && engine.metadata.annotations.is_none());
        assert!(engine.metadata.finalizers.is_none() && engine.status.is_none());
        let spec = &engine.spec.engine;
        assert!(spec.node_selector.is_empty() && spec.pod == PodConfig::default());
        assert_eq!(spec.server.port, 6000);
        assert_eq!(spec.server.hash_algorithm, HashAlgorithm::Builtin);
        assert_eq!(engine.injection().target_container, Some("vllm"));
    }
}
