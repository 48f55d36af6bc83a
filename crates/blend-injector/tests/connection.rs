//! The LMCache connection injector (connection-webhook.md §3–§4, behaviours K3–K6), through the
//! same public API the webhook uses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use k8s_openapi::api::core::v1::Pod;
use lmcache_api::v1alpha1::{CacheBlendEngine, LMCacheEngine};
use lmcache_blend_injector::{
    Outcome, SkipReason, Webhook, decode_lmcache_engine, inject, patch, requested_engine,
};
use lmcache_manifest_renderer::{RenderContext, render_engine};
use serde_json::{Value, json};
use support::{DOMAIN, assert_patch_round_trips};

fn engine(name: &str, namespace: &str, spec: Value) -> LMCacheEngine {
    let mut full = json!({"l1": {"sizeGB": 60}});
    if let (Some(base), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
        base.extend(extra.clone());
    }
    decode_lmcache_engine(json!({
        "apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": "LMCacheEngine",
        "metadata": {"name": name, "namespace": namespace}, "spec": full
    }))
    .unwrap()
}

fn my_cache() -> LMCacheEngine {
    engine("my-cache", "default", json!({}))
}

/// A KServe-style predictor pod: label, engine annotation, container `vllm`, no command.
fn pod(containers: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "generateName": "predictor-",
            "labels": {"app": "llm", "lmcache.ai/lmcache-inject": "true"},
            "annotations": {"lmcache.ai/lmcache-engine": "my-cache"}
        },
        "spec": {"containers": containers}
    }))
    .unwrap()
}

fn vllm_pod() -> Pod {
    pod(json!([{"name": "vllm", "image": "vllm/vllm-openai",
                "args": ["--model", "m", "--port", "8080"]}]))
}

fn run(pod: &Pod, engine: Option<&LMCacheEngine>) -> Outcome {
    inject(pod, "default", engine, DOMAIN)
}

fn injected(pod: &Pod, engine: &LMCacheEngine) -> Pod {
    match run(pod, Some(engine)) {
        Outcome::Injected(pod) => pod,
        other => panic!("expected injection, got {other:?}"),
    }
}

fn json_of(pod: &Pod) -> Value {
    serde_json::to_value(pod).unwrap()
}

fn annotate(mut pod: Pod, key: &str, value: &str) -> Pod {
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.into(), value.into());
    pod
}

#[test]
fn k1_wires_host_ipc_hash_seed_and_the_configmap_json_and_nothing_else() {
    let engine = my_cache();
    let before = vllm_pod();
    let after = injected(&before, &engine);
    let config_map = render_engine(&engine, &RenderContext::new(DOMAIN))
        .unwrap()
        .config_map;
    let json = config_map.data.unwrap()["kv-transfer-config.json"].clone();
    let mut want = json_of(&before);
    want["spec"]["hostIPC"] = json!(true);
    want["spec"]["containers"][0]["env"] = json!([{"name": "PYTHONHASHSEED", "value": "0"}]);
    want["spec"]["containers"][0]["args"] =
        json!(["--model", "m", "--port", "8080", "--kv-transfer-config", json]);
    want["metadata"]["annotations"]["lmcache.ai/lmcache-injected"] = json!("true");
    assert_eq!(json_of(&after), want);
    assert_patch_round_trips(&before, &after);
}

#[test]
fn k2_each_namespace_gets_its_own_host_and_port() {
    for (namespace, port) in [("team-a", 5555), ("team-b", 6555)] {
        let engine = engine("my-cache", namespace, json!({"server": {"port": port}}));
        let Outcome::Injected(after) = inject(&vllm_pod(), namespace, Some(&engine), DOMAIN) else {
            panic!("not injected in {namespace}");
        };
        let args = after.spec.unwrap().containers[0].args.clone().unwrap();
        let config: Value = serde_json::from_str(args.last().unwrap()).unwrap();
        let extra = &config["kv_connector_extra_config"];
        assert_eq!(
            extra["lmcache.mp.host"],
            format!("tcp://my-cache.{namespace}.svc.cluster.local").as_str()
        );
        assert_eq!(extra["lmcache.mp.port"], port.to_string().as_str());
    }
    // The engine of another namespace is never used.
    let other = engine("my-cache", "team-b", json!({}));
    let outcome = inject(&vllm_pod(), "team-a", Some(&other), DOMAIN);
    assert_eq!(outcome.skip_reason(), Some(SkipReason::EngineNotFound));
}

/// Asserts that only `lmcache.ai/lmcache-skip-reason: reason` was added.
fn assert_skipped_only(pod: &Pod, outcome: &Outcome, reason: &str) {
    let Outcome::Skipped {
        reason: got,
        pod: skipped,
    } = outcome
    else {
        panic!("expected a skip, got {outcome:?}");
    };
    assert_eq!(got.as_str(), reason);
    let mut want = json_of(pod);
    want["metadata"]["annotations"]["lmcache.ai/lmcache-skip-reason"] = json!(reason);
    assert_eq!(json_of(skipped), want);
    assert_eq!(patch(pod, skipped).0.len(), 1);
}

#[test]
fn k3_every_skip_reason_adds_only_the_annotation() {
    let engine = my_cache();
    // 6: no engine, another name, being deleted.
    assert_skipped_only(&vllm_pod(), &run(&vllm_pod(), None), "engine-not-found");
    let other = engine_named("other");
    assert_skipped_only(&vllm_pod(), &run(&vllm_pod(), Some(&other)), "engine-not-found");
    let mut deleting = my_cache();
    deleting.metadata.deletion_timestamp =
        Some(serde_json::from_value(json!("2026-12-01T00:00:00Z")).unwrap());
    assert_skipped_only(
        &vllm_pod(),
        &run(&vllm_pod(), Some(&deleting)),
        "engine-not-found",
    );
    // 7: the annotation, then targetContainer, name a container that does not exist.
    let named = annotate(vllm_pod(), "lmcache.ai/lmcache-container", "server");
    assert_skipped_only(&named, &run(&named, Some(&engine)), "target-container-not-found");
    let targeted = self::engine(
        "my-cache",
        "default",
        json!({"injection": {"targetContainer": "kserve-container"}}),
    );
    assert_skipped_only(
        &vllm_pod(),
        &run(&vllm_pod(), Some(&targeted)),
        "target-container-not-found",
    );
    let empty = pod(json!([]));
    assert_skipped_only(&empty, &run(&empty, Some(&engine)), "target-container-not-found");
    // 8: a shell wrapper.
    let shell = pod(json!([{"name": "vllm", "command": ["/bin/sh", "-c", "vllm serve m"]}]));
    assert_skipped_only(&shell, &run(&shell, Some(&engine)), "command-override");
    // 9: the user already passes a connection, in either spelling.
    for token in ["--kv-transfer-config", "--kv_transfer_config={}"] {
        let present = pod(json!([{"name": "vllm", "args": ["m", token, "{}"]}]));
        assert_skipped_only(
            &present,
            &run(&present, Some(&engine)),
            "kv-transfer-config-present",
        );
    }
}

fn engine_named(name: &str) -> LMCacheEngine {
    engine(name, "default", json!({}))
}

#[test]
fn steps_1_to_5_leave_the_pod_alone() {
    let engine = my_cache();
    // 3: label missing or not exactly "true".
    for value in [None, Some("True"), Some("yes")] {
        let mut p = vllm_pod();
        let labels = p.metadata.labels.as_mut().unwrap();
        labels.remove("lmcache.ai/lmcache-inject");
        if let Some(v) = value {
            labels.insert("lmcache.ai/lmcache-inject".into(), v.into());
        }
        assert_eq!(run(&p, Some(&engine)), Outcome::NotOptedIn, "{value:?}");
    }
    // 4: already wired.
    let done = annotate(vllm_pod(), "lmcache.ai/lmcache-injected", "true");
    assert_eq!(run(&done, Some(&engine)), Outcome::AlreadyInjected);
    // 5: engine annotation absent or blank.
    let blank = annotate(vllm_pod(), "lmcache.ai/lmcache-engine", "  ");
    assert_eq!(requested_engine(&blank, Webhook::Lmcache), None);
    assert_eq!(run(&blank, Some(&engine)), Outcome::NotOptedIn);
    // The CacheBlend opt-in does not count here.
    let cb: Pod = serde_json::from_value(json!({
        "metadata": {"labels": {"lmcache.ai/cacheblend-inject": "true"},
                     "annotations": {"lmcache.ai/cacheblend-engine": "my-cache"}},
        "spec": {"containers": [{"name": "vllm"}]}
    }))
    .unwrap();
    assert_eq!(run(&cb, Some(&engine)), Outcome::NotOptedIn);
}

#[test]
fn target_container_precedence_annotation_then_engine_then_first() {
    let two = pod(json!([{"name": "sidecar"}, {"name": "vllm", "args": ["m"]}]));
    let targeted = engine(
        "my-cache",
        "default",
        json!({"injection": {"targetContainer": "vllm"}}),
    );
    let after = injected(&two, &targeted);
    let containers = &after.spec.as_ref().unwrap().containers;
    assert!(containers[0].args.is_none());
    assert!(
        containers[1]
            .args
            .as_ref()
            .unwrap()
            .contains(&"--kv-transfer-config".to_string())
    );
    // The annotation wins over the engine.
    let first = annotate(two.clone(), "lmcache.ai/lmcache-container", "sidecar");
    let after = injected(&first, &targeted);
    assert!(after.spec.as_ref().unwrap().containers[0].args.is_some());
    // Neither: the first container.
    let after = injected(&two, &my_cache());
    assert!(after.spec.as_ref().unwrap().containers[0].env.is_some());
}

#[test]
fn k4_a_users_hash_seed_is_kept() {
    for env in [
        json!([{"name": "PYTHONHASHSEED", "value": "1"}]),
        json!([{"name": "PYTHONHASHSEED", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]),
    ] {
        let p = pod(json!([{"name": "vllm", "args": ["m"], "env": env}]));
        let after = injected(&p, &my_cache());
        assert_eq!(json_of(&after)["spec"]["containers"][0]["env"], env);
    }
}

#[test]
fn k5_payload_is_staged_only_with_a_payload_image() {
    let with = engine(
        "my-cache",
        "default",
        json!({"injection": {"payloadImage": {"repository": "reg/lmcache-payload", "tag": "0.5.6"},
                             "imagePullSecrets": [{"name": "reg"}, {"name": ""}]}}),
    );
    let before = pod(json!([{"name": "vllm", "args": ["m"],
                             "env": [{"name": "PYTHONPATH", "value": "/opt/x"}]}]));
    let after = json_of(&injected(&before, &with));
    let spec = &after["spec"];
    assert_eq!(
        spec["volumes"],
        json!([{"name": "lmcache-payload", "emptyDir": {}}])
    );
    assert_eq!(
        spec["initContainers"],
        json!([{"name": "lmcache-payload-stage", "image": "reg/lmcache-payload:0.5.6",
                "imagePullPolicy": "IfNotPresent",
                "env": [{"name": "SHARED_DIR", "value": "/lmcache-payload"}],
                "volumeMounts": [{"name": "lmcache-payload", "mountPath": "/lmcache-payload"}],
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}}}])
    );
    assert_eq!(spec["imagePullSecrets"], json!([{"name": "reg"}]));
    let c = &spec["containers"][0];
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "lmcache-payload", "mountPath": "/lmcache-payload", "readOnly": true}])
    );
    assert_eq!(
        c["env"],
        json!([{"name": "PYTHONPATH", "value": "/lmcache-payload:/opt/x"},
               {"name": "PYTHONHASHSEED", "value": "0"}])
    );

    // Without a payload image, pull secrets alone are not added (they are for the payload).
    let without = engine(
        "my-cache",
        "default",
        json!({"injection": {"imagePullSecrets": [{"name": "reg"}]}}),
    );
    let after = json_of(&injected(&before, &without));
    for absent in ["volumes", "initContainers", "imagePullSecrets"] {
        assert!(
            after["spec"][absent].is_null(),
            "{absent}: {}",
            after["spec"][absent]
        );
    }
    assert!(after["spec"]["containers"][0]["volumeMounts"].is_null());
}

#[test]
fn injection_is_idempotent_and_drops_a_stale_skip_reason() {
    let stale = annotate(vllm_pod(), "lmcache.ai/lmcache-skip-reason", "engine-not-found");
    let once = injected(&stale, &my_cache());
    assert!(
        !once
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .contains_key("lmcache.ai/lmcache-skip-reason")
    );
    assert_eq!(run(&once, Some(&my_cache())), Outcome::AlreadyInjected);
}

/// K6: a pod opted into both. The API server calls the CacheBlend entry first (its position in
/// the MutatingWebhookConfiguration); the CacheBlend injector adds `--kv-transfer-config`, so the
/// connection injector then skips with `kv-transfer-config-present`.
#[test]
fn k6_both_opt_ins_cacheblend_first_then_the_connection_skips() {
    let both: Pod = serde_json::from_value(json!({
        "metadata": {
            "labels": {"lmcache.ai/cacheblend-inject": "true", "lmcache.ai/lmcache-inject": "true"},
            "annotations": {"lmcache.ai/cacheblend-engine": "cb", "lmcache.ai/lmcache-engine": "my-cache"}
        },
        "spec": {"containers": [{"name": "vllm", "args": ["m"]}]}
    }))
    .unwrap();
    let cb: CacheBlendEngine = lmcache_blend_injector::decode_engine(json!({
        "apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": "CacheBlendEngine",
        "metadata": {"name": "cb", "namespace": "default"},
        "spec": {"l1": {"sizeGB": 60}, "injection": {"payloadImage": {"repository": "reg/cb"}}}
    }))
    .unwrap();
    let Outcome::Injected(after_blend) = inject(&both, "default", Some(&cb), DOMAIN) else {
        panic!("CacheBlend injects")
    };
    let outcome = inject(&after_blend, "default", Some(&my_cache()), DOMAIN);
    assert_eq!(outcome.skip_reason(), Some(SkipReason::KvTransferConfigPresent));
    let annotations = outcome
        .mutated_pod()
        .unwrap()
        .metadata
        .annotations
        .clone()
        .unwrap();
    assert_eq!(annotations["lmcache.ai/cacheblend-injected"], "true");
    assert_eq!(
        annotations["lmcache.ai/lmcache-skip-reason"],
        "kv-transfer-config-present"
    );
}
