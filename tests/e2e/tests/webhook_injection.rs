//! behaviours.md §F injection through the real admission chain: a ReplicaSet's pod from an
//! opted-in Deployment (F81-F83), the watch cache following engine creation and deletion
//! (F103) and Pod Security rejecting the injected hostIPC under `baseline` (F106).
//!
//! F102 (admission before the initial list) is covered by the webhook's unit and binary smoke
//! tests; F105 (webhook Deployment scaled to 0) does not apply to the shared local webhook
//! process, which these tests must not stop.

use anyhow::bail;
use lmcache_e2e::crd::Kind;
use lmcache_e2e::json::assert_contains;
use lmcache_e2e::objects::{Res, Scope, container, strings};
use lmcache_e2e::webhook_pods::{
    ENGINE, INJECTED, SKIP_REASON, annotation, apply_engine, connection_json, create, kv_transfer_config,
    vllm_pod, wait_engine_visible,
};
use lmcache_e2e::{Cluster, TempNamespace, settings};
use serde_json::{Value, json};

async fn scope(prefix: &str) -> anyhow::Result<(Scope, TempNamespace)> {
    settings::webhook_url()?;
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, prefix).await?;
    Ok((Scope::new(&cluster, &namespace), namespace))
}

/// cacheblend.md §13's engine: payload `registry.example.com/cacheblend-plugin:v1`, pull
/// secret `my-registry-secret`, defaults otherwise.
fn workflow_engine() -> Value {
    json!({
        "l1": {"sizeGB": 60},
        "injection": {
            "payloadImage": {"repository": "registry.example.com/cacheblend-plugin", "tag": "v1"},
            "imagePullSecrets": [{"name": "my-registry-secret"}]
        }
    })
}

/// The entry of the array `list` named `name`.
fn named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|v| v["name"] == name)
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn webhook_f81_f82_f83_deployment_pod_is_the_resulting_pod() -> anyhow::Result<()> {
    let (scope, _ns) = scope("wh-f81").await?;
    apply_engine(&scope, "my-cacheblend", &workflow_engine()).await?;
    wait_engine_visible(&scope, "my-cacheblend").await?;

    // cacheblend.md §13's Deployment (without runtimeClassName and GPU limits, which the
    // local cluster cannot satisfy and the webhook does not touch).
    scope
        .apply_manifest(&json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "vllm"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "vllm-deploy"}},
                "template": {
                    "metadata": {
                        "labels": {"app": "vllm-deploy", "lmcache.ai/cacheblend-inject": "true"},
                        "annotations": {ENGINE: "my-cacheblend"}
                    },
                    "spec": {"containers": [{
                        "name": "vllm",
                        "image": "lmcache/vllm-openai:test",
                        "args": ["some-model", "--port", "8000", "--gpu-memory-utilization", "0.8"]
                    }]}
                }
            }
        }))
        .await?;
    let pod = scope
        .wait("the Deployment's pod", || async {
            Ok(scope.list(Res::Pod, "app=vllm-deploy").await?.into_iter().next())
        })
        .await?;

    assert_eq!(annotation(&pod, ENGINE), Some("my-cacheblend"));
    assert_eq!(annotation(&pod, INJECTED), Some("true"));
    assert_eq!(annotation(&pod, SKIP_REASON), None);
    let spec = &pod["spec"];
    assert_eq!(spec["hostIPC"], true);
    assert_eq!(spec["imagePullSecrets"], json!([{"name": "my-registry-secret"}]));
    assert_eq!(
        named(&spec["volumes"], "cb-plugin"),
        Some(&json!({"name": "cb-plugin", "emptyDir": {}}))
    );
    let init = spec["initContainers"].as_array().cloned().unwrap_or_default();
    assert_eq!(init.len(), 1, "initContainers: {init:?}");
    assert_contains(
        &init[0],
        &json!({
            "name": "cb-plugin-stage",
            "image": "registry.example.com/cacheblend-plugin:v1",
            "imagePullPolicy": "IfNotPresent",
            "env": [{"name": "SHARED_DIR", "value": "/cb-plugin"}],
            "volumeMounts": [{"name": "cb-plugin", "mountPath": "/cb-plugin"}]
        }),
    )?;
    assert!(
        init[0]["command"].is_null() && init[0]["args"].is_null(),
        "{}",
        init[0]
    );

    let vllm = named(&spec["containers"], "vllm").cloned().unwrap_or_default();
    assert_eq!(
        vllm["env"],
        json!([{"name": "PYTHONPATH", "value": "/cb-plugin"}])
    );
    assert_eq!(
        named(&vllm["volumeMounts"], "cb-plugin"),
        Some(&json!({"name": "cb-plugin", "mountPath": "/cb-plugin", "readOnly": true}))
    );
    let args = strings(&vllm["args"]);
    // F83: the injected JSON is the operator's ConfigMap value, byte for byte.
    let expected_json = connection_json(&scope, "my-cacheblend").await?;
    let expected: Vec<String> = [
        "some-model",
        "--port",
        "8000",
        "--gpu-memory-utilization",
        "0.8",
        "--attention-backend",
        "CUSTOM",
        "--kv-transfer-config",
        &expected_json,
        "--block-size",
        "64",
        "--pipeline-parallel-size",
        "1",
        "--no-enable-chunked-prefill",
        "--no-async-scheduling",
        "--enforce-eager",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(args, expected);
    assert!(expected_json.contains(&format!("tcp://my-cacheblend.{}.svc.cluster.local", scope.ns)));

    // The Deployment's template itself is not mutated: the webhook acts on pods only.
    let deployment = scope.must_get(Res::Deployment, "vllm").await?;
    assert_eq!(strings(&container(&deployment)["args"]).len(), 5);
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn webhook_f103_cache_follows_engine_creation_and_deletion() -> anyhow::Result<()> {
    let (scope, _ns) = scope("wh-f103").await?;
    // Before the engine exists: engine-not-found.
    let before = create(&scope, &vllm_pod("before", Some("cb"), &json!({}))).await?;
    assert_eq!(annotation(&before, SKIP_REASON), Some("engine-not-found"));

    apply_engine(&scope, "cb", &Kind::BlendEngine.minimal_spec()).await?;
    // Injection needs only the engine in the webhook's cache, not the ConfigMap: the webhook
    // has no ConfigMap access, and the injected value is rendered from the engine.
    let configmap_before = scope.get(Res::ConfigMap, "cb-connection").await?.is_some();
    let injected = wait_engine_visible(&scope, "cb").await?;
    let args = strings(&container_of(&injected)["args"]);
    let rendered = kv_transfer_config(&args).map(str::to_string);
    let stored = connection_json(&scope, "cb").await?;
    assert_eq!(
        rendered.as_deref(),
        Some(stored.as_str()),
        "ConfigMap existed at apply: {configmap_before}"
    );

    scope.delete(Res::Cr(Kind::BlendEngine), "cb").await?;
    let mut n = 0;
    scope
        .wait("a pod skipped with engine-not-found after the deletion", || {
            n += 1;
            let pod = vllm_pod(&format!("after-{n}"), Some("cb"), &json!({}));
            let scope = scope.clone();
            async move {
                let created = create(&scope, &pod).await?;
                match annotation(&created, SKIP_REASON) {
                    Some("engine-not-found") => Ok(Some(())),
                    other => bail!(
                        "skip reason {other:?}, injected {:?}",
                        annotation(&created, INJECTED)
                    ),
                }
            }
        })
        .await
}

fn container_of(pod: &Value) -> Value {
    pod["spec"]["containers"][0].clone()
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn webhook_f106_baseline_namespace_rejects_the_injected_pod() -> anyhow::Result<()> {
    let (scope, _ns) = scope("wh-f106").await?;
    let label = |level: &str| format!("pod-security.kubernetes.io/enforce={level}");
    scope
        .cluster
        .kubectl
        .run(&["label", "namespace", &scope.ns, &label("baseline"), "--overwrite"])
        .await?
        .ok()?;
    apply_engine(&scope, "cb", &Kind::BlendEngine.minimal_spec()).await?;

    // Until the webhook sees the engine, pods are admitted with engine-not-found; once it
    // does, Pod Security checks the mutated pod and refuses its hostIPC.
    let mut n = 0;
    let message = scope
        .wait("a Forbidden rejection of the injected pod", || {
            n += 1;
            let pod = vllm_pod(&format!("baseline-{n}"), Some("cb"), &json!({}));
            let scope = scope.clone();
            async move {
                match create(&scope, &pod).await {
                    Ok(created) => bail!(
                        "admitted; skip reason {:?}, injected {:?}",
                        annotation(&created, SKIP_REASON),
                        annotation(&created, INJECTED)
                    ),
                    Err(e) => match e.downcast_ref::<kube::Error>() {
                        Some(kube::Error::Api(status)) if status.code == 403 => {
                            Ok(Some(status.message.clone()))
                        }
                        _ => Err(e),
                    },
                }
            }
        })
        .await?;
    assert!(message.contains("hostIPC"), "{message}");

    // The same pod in a privileged namespace is admitted and injected.
    scope
        .cluster
        .kubectl
        .run(&[
            "label",
            "namespace",
            &scope.ns,
            &label("privileged"),
            "--overwrite",
        ])
        .await?
        .ok()?;
    let admitted = scope
        .wait("admission under privileged", || {
            let scope = scope.clone();
            async move {
                Ok(Some(
                    create(&scope, &vllm_pod("privileged", Some("cb"), &json!({}))).await?,
                ))
            }
        })
        .await?;
    assert_eq!(annotation(&admitted, INJECTED), Some("true"));
    assert_eq!(admitted["spec"]["hostIPC"], true);
    Ok(())
}
