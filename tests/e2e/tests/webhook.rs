//! behaviours.md §F through the real admission chain: the apiserver calls the webhook at
//! 127.0.0.1 through the MutatingWebhookConfiguration `cargo xtask e2e` registers.

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use lmcache_e2e::{Cluster, TempNamespace, settings};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const SKIP_REASON: &str = "lmcache.ai/cacheblend-skip-reason";
const INJECTED: &str = "lmcache.ai/cacheblend-injected";

/// A vLLM-like pod; `opted_in` adds the opt-in label.
fn pod(name: &str, opted_in: bool, engine: &str) -> anyhow::Result<Pod> {
    let mut labels = json!({"app": "vllm-cacheblend"});
    if opted_in {
        labels["lmcache.ai/cacheblend-inject"] = json!("true");
    }
    Ok(serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"lmcache.ai/cacheblend-engine": engine}
        },
        "spec": {
            "containers": [{
                "name": "vllm",
                "image": "lmcache/vllm-openai:test",
                "args": ["some-model", "--port", "8000"]
            }]
        }
    }))?)
}

fn annotations(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.annotations.clone().unwrap_or_default()
}

fn spec_json(pod: &Pod) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(&pod.spec)?)
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn f90_missing_engine_only_adds_the_skip_reason() -> anyhow::Result<()> {
    settings::webhook_url()?;
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, "f90").await?;
    let pods = Api::<Pod>::namespaced(cluster.client.clone(), namespace.name());
    let params = PostParams::default();
    let opted_in = pods
        .create(&params, &pod("opted-in", true, "no-such-engine")?)
        .await?;
    // F97: the same pod without the opt-in label is not sent to the webhook at all.
    let control = pods
        .create(&params, &pod("control", false, "no-such-engine")?)
        .await?;

    let mut expected = annotations(&control);
    assert!(!expected.contains_key(SKIP_REASON) && !expected.contains_key(INJECTED));
    expected.insert(SKIP_REASON.to_string(), "engine-not-found".to_string());
    assert_eq!(annotations(&opted_in), expected);
    assert_eq!(spec_json(&opted_in)?, spec_json(&control)?);
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn f97_opted_in_pod_in_kube_system_is_not_mutated() -> anyhow::Result<()> {
    settings::webhook_url()?;
    let cluster = Cluster::connect().await?;
    // Server-side dry run: admission runs in full, nothing is stored in kube-system.
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let pods = Api::<Pod>::namespaced(cluster.client.clone(), "kube-system");
    let created = pods
        .create(&params, &pod("lmcache-e2e-f97", true, "no-such-engine")?)
        .await?;
    let seen = annotations(&created);
    assert!(!seen.contains_key(SKIP_REASON), "webhook was called: {seen:?}");
    assert!(!seen.contains_key(INJECTED), "webhook was called: {seen:?}");
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn f101_admission_with_a_synced_cache_sends_no_api_requests() -> anyhow::Result<()> {
    use lmcache_e2e::audit::{AuditLog, OPERATOR_USER, WEBHOOK_USER, describe};
    use lmcache_e2e::crd::Kind;
    use lmcache_e2e::{TIMEOUT, wait};

    settings::webhook_url()?;
    let cluster = Cluster::connect().await?;
    let audit = AuditLog::open()?;
    let namespace = TempNamespace::create(&cluster, "f101").await?;
    let start = audit.mark()?;
    cluster
        .kubectl
        .apply(
            namespace.name(),
            &Kind::BlendEngine.manifest("my-cacheblend", &Kind::BlendEngine.minimal_spec()),
        )
        .await?
        .ok()?;
    // Positive control: the audit pipeline records the product's identities (the operator
    // reconciles the new engine), so "no webhook event" below is meaningful.
    wait::until("operator requests in the audit log", TIMEOUT, || async {
        Ok((!audit.events_since(start, OPERATOR_USER)?.is_empty()).then_some(()))
    })
    .await?;

    // Wait until the webhook's cache has the engine: a pod is injected.
    let pods = Api::<Pod>::namespaced(cluster.client.clone(), namespace.name());
    let mut n = 0;
    wait::until("the webhook injects a pod", TIMEOUT, || {
        n += 1;
        let pods = pods.clone();
        let name = format!("warm-{n}");
        async move {
            let created = pods
                .create(&PostParams::default(), &pod(&name, true, "my-cacheblend")?)
                .await?;
            Ok((annotations(&created).get(INJECTED).map(String::as_str) == Some("true")).then_some(()))
        }
    })
    .await?;

    let before = audit.mark()?;
    let created = pods
        .create(&PostParams::default(), &pod("measured", true, "my-cacheblend")?)
        .await?;
    assert_eq!(
        annotations(&created).get(INJECTED).map(String::as_str),
        Some("true")
    );
    let requests: Vec<String> = audit
        .events_since(before, WEBHOOK_USER)?
        .iter()
        .filter(|e| e["verb"] != "watch")
        .map(describe)
        .collect();
    assert!(
        requests.is_empty(),
        "webhook API requests during admission: {requests:?}"
    );
    Ok(())
}
