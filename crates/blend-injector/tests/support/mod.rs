//! Test builders shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Pod};
use lmcache_api::v1alpha1::CacheBlendEngine;
use lmcache_blend_injector::{Outcome, inject, patch};
use serde_json::{Value, json};
use std::path::PathBuf;

pub const DOMAIN: &str = "cluster.local";

pub fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A CacheBlendEngine `name` in `namespace`; `spec` is merged over a minimal valid spec.
pub fn engine(name: &str, namespace: &str, spec: Value) -> CacheBlendEngine {
    let mut base = json!({
        "l1": {"sizeGB": 60},
        "injection": {"payloadImage": {"repository": "registry.example.com/cacheblend-plugin", "tag": "v1"}}
    });
    merge(&mut base, spec);
    serde_json::from_value(json!({
        "apiVersion": "lmcache.lmcache.ai/v1alpha1",
        "kind": "CacheBlendEngine",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}")},
        "spec": base
    }))
    .unwrap()
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (k, v) in patch {
                if v.is_null() {
                    base.remove(&k);
                } else {
                    merge(base.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (base, patch) => *base = patch,
    }
}

/// An opted-in pod bound to `my-cacheblend` with the given containers (YAML list).
pub fn pod_with(containers: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "generateName": "vllm-",
            "labels": {"app": "vllm", "lmcache.ai/cacheblend-inject": "true"},
            "annotations": {"lmcache.ai/cacheblend-engine": "my-cacheblend"}
        },
        "spec": {"containers": containers}
    }))
    .unwrap()
}

/// An opted-in pod whose single container `vllm` has `args`.
pub fn pod_with_args(args: &[&str]) -> Pod {
    pod_with(json!([{"name": "vllm", "image": "vllm/vllm-openai", "args": args}]))
}

pub fn annotate(mut pod: Pod, key: &str, value: &str) -> Pod {
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.into(), value.into());
    pod
}

pub fn default_engine() -> CacheBlendEngine {
    engine("my-cacheblend", "default", json!({}))
}

pub fn run(pod: &Pod, engine: Option<&CacheBlendEngine>) -> Outcome {
    inject(pod, "default", engine, DOMAIN)
}

pub fn injected(pod: &Pod, engine: &CacheBlendEngine) -> Pod {
    match run(pod, Some(engine)) {
        Outcome::Injected(pod) => pod,
        other => panic!("expected injection, got {other:?}"),
    }
}

pub fn container<'p>(pod: &'p Pod, name: &str) -> &'p Container {
    pod.spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .find(|c| c.name == name)
        .unwrap()
}

pub fn args<'p>(pod: &'p Pod, name: &str) -> Vec<&'p str> {
    container(pod, name)
        .args
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(String::as_str)
        .collect()
}

/// Asserts the only change is the skip-reason annotation.
pub fn assert_skipped_only(pod: &Pod, outcome: &Outcome, reason: &str) {
    let Outcome::Skipped {
        reason: got,
        pod: skipped,
    } = outcome
    else {
        panic!("expected a skip, got {outcome:?}");
    };
    assert_eq!(got.as_str(), reason);
    let mut expected = pod.clone();
    expected
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("lmcache.ai/cacheblend-skip-reason".into(), reason.into());
    assert_eq!(skipped, &expected);
    let ops = serde_json::to_value(patch(pod, skipped)).unwrap();
    assert_eq!(ops.as_array().unwrap().len(), 1, "{ops}");
}

/// The pod of a Deployment's template, as the API server would admit it.
pub fn template_pod(deployment_yaml: &str) -> Pod {
    let deployment: Deployment = serde_saphyr::from_str(deployment_yaml).unwrap();
    let template = deployment.spec.unwrap().template;
    Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: template.spec,
        status: None,
    }
}

/// Applies `patch(original, mutated)` to the original's JSON and checks it yields `mutated`.
pub fn assert_patch_round_trips(original: &Pod, mutated: &Pod) {
    let ops = patch(original, mutated);
    let mut doc = serde_json::to_value(original).unwrap();
    json_patch::patch(&mut doc, &ops).unwrap();
    assert_eq!(doc, serde_json::to_value(mutated).unwrap());
}
