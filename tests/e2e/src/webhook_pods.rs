//! Opted-in vLLM pods for the CacheBlend webhook tests, created through the real admission
//! chain, and readers for what the webhook left on them.

use crate::crd::Kind;
use crate::objects::{Res, Scope};
use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

/// The opt-in label (the webhook's objectSelector).
pub const INJECT_LABEL: &str = "lmcache.ai/cacheblend-inject";
/// The annotation naming the CacheBlendEngine.
pub const ENGINE: &str = "lmcache.ai/cacheblend-engine";
/// The result marker the webhook sets.
pub const INJECTED: &str = "lmcache.ai/cacheblend-injected";
/// Why nothing was injected.
pub const SKIP_REASON: &str = "lmcache.ai/cacheblend-skip-reason";

/// A vLLM-like opted-in pod bound to `engine` (no annotation when `None`); `patch` is merged
/// into it (RFC 7386) so a test states only what differs.
pub fn vllm_pod(name: &str, engine: Option<&str>, patch: &Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "vllm-cacheblend", INJECT_LABEL: "true"},
        },
        "spec": {
            "containers": [{
                "name": "vllm",
                "image": "lmcache/vllm-openai:test",
                "args": ["some-model", "--port", "8000"]
            }]
        }
    });
    if let Some(engine) = engine {
        pod["metadata"]["annotations"] = json!({ENGINE: engine});
    }
    crate::json::merged(&pod, patch)
}

/// Creates `pod` in the scope's namespace (the API server runs admission) and returns the
/// stored object as JSON.
pub async fn create(scope: &Scope, pod: &Value) -> anyhow::Result<Value> {
    let typed: Pod = serde_json::from_value(pod.clone())?;
    let created = Api::<Pod>::namespaced(scope.cluster.client.clone(), &scope.ns)
        .create(&PostParams::default(), &typed)
        .await
        .with_context(|| format!("creating pod {}/{}", scope.ns, pod["metadata"]["name"]))?;
    Ok(serde_json::to_value(created)?)
}

/// The annotation `key` of `obj`, if any.
pub fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj["metadata"]["annotations"][key].as_str()
}

/// Creates uniquely named probe pods bound to `engine` until the webhook injects one (its
/// watch cache has the engine); returns the injected pod.
pub async fn wait_engine_visible(scope: &Scope, engine: &str) -> anyhow::Result<Value> {
    let mut n = 0;
    scope
        .wait(&format!("the webhook to see CacheBlendEngine {engine}"), || {
            n += 1;
            let name = format!("probe-{engine}-{n}");
            async move {
                let pod = create(scope, &vllm_pod(&name, Some(engine), &json!({}))).await?;
                Ok((annotation(&pod, INJECTED) == Some("true")).then_some(pod))
            }
        })
        .await
}

/// Applies a CacheBlendEngine (client-side `kubectl apply`).
pub async fn apply_engine(scope: &Scope, name: &str, spec: &Value) -> anyhow::Result<()> {
    scope.apply_cr(Kind::BlendEngine, name, spec).await
}

/// The `data["kv-transfer-config.json"]` of the engine's connection ConfigMap, once the
/// operator wrote it.
pub async fn connection_json(scope: &Scope, engine: &str) -> anyhow::Result<String> {
    let name = format!("{engine}-connection");
    scope
        .wait(&format!("ConfigMap {name}"), || async {
            let cm = scope.get(Res::ConfigMap, &name).await?;
            Ok(cm.and_then(|cm| cm["data"]["kv-transfer-config.json"].as_str().map(str::to_string)))
        })
        .await
}

/// Creates `pod` and an unlabelled control copy (`<name>-control`, which the objectSelector
/// keeps away from the webhook); fails unless the opted-in pod equals the control except for
/// the annotation `lmcache.ai/cacheblend-skip-reason: <reason>` (`None`: no annotation).
pub async fn assert_unchanged(scope: &Scope, pod: &Value, reason: Option<&str>) -> anyhow::Result<()> {
    let created = create(scope, pod).await?;
    let mut control = pod.clone();
    let name = format!("{}-control", pod["metadata"]["name"].as_str().unwrap_or_default());
    control["metadata"]["name"] = json!(name);
    if let Some(labels) = control["metadata"]["labels"].as_object_mut() {
        labels.remove(INJECT_LABEL);
    }
    let control = create(scope, &control).await?;
    let mut expected = control["metadata"]["annotations"].clone();
    if let Some(reason) = reason {
        if !expected.is_object() {
            expected = json!({});
        }
        expected[SKIP_REASON] = json!(reason);
    }
    let what = created["metadata"]["name"].clone();
    anyhow::ensure!(
        created["metadata"]["annotations"] == expected,
        "pod {what}: annotations {}, expected {expected}",
        created["metadata"]["annotations"]
    );
    anyhow::ensure!(
        created["spec"] == control["spec"],
        "pod {what} was mutated: spec {}, control {}",
        created["spec"],
        control["spec"]
    );
    Ok(())
}

/// The value following `--kv-transfer-config` in `args` (space form).
pub fn kv_transfer_config(args: &[String]) -> Option<&str> {
    args.iter()
        .position(|a| a == "--kv-transfer-config")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_patch_and_readers() {
        let pod = vllm_pod("p", Some("cb"), &json!({"metadata": {"annotations": {"x": "y"}}}));
        assert_eq!(annotation(&pod, ENGINE), Some("cb"));
        assert_eq!(annotation(&pod, "x"), Some("y"));
        assert_eq!(pod["metadata"]["labels"][INJECT_LABEL], "true");
        assert!(vllm_pod("p", None, &json!({}))["metadata"]["annotations"].is_null());
        let args = crate::objects::owned(&["m", "--kv-transfer-config", "{}", "--x"]);
        assert_eq!(kv_transfer_config(&args), Some("{}"));
        assert_eq!(kv_transfer_config(&args[..1]), None);
    }
}
