//! The LMCache connection webhook (`lmcache.ai/lmcache-inject`, connection-webhook.md §7) through
//! the real admission chain: KServe-style Deployments (K1), same-named engines in two namespaces
//! (K2), a pod opted into both webhooks (K6), no API request during admission (K7) and a
//! ResourceQuota namespace (K8, both webhooks' stage init containers).

use lmcache_e2e::audit::{AuditLog, WEBHOOK_USER, describe};
use lmcache_e2e::crd::Kind;
use lmcache_e2e::objects::{Res, Scope, strings};
use lmcache_e2e::webhook_pods::{annotation, connection_json, create, kv_transfer_config};
use lmcache_e2e::{Cluster, TempNamespace, settings};
use serde_json::{Value, json};

const LABEL: &str = "lmcache.ai/lmcache-inject";
const ENGINE: &str = "lmcache.ai/lmcache-engine";
const INJECTED: &str = "lmcache.ai/lmcache-injected";
const SKIP_REASON: &str = "lmcache.ai/lmcache-skip-reason";

async fn scope(prefix: &str) -> anyhow::Result<(Scope, TempNamespace)> {
    settings::lmcache_webhook_url()?;
    settings::operator_health()?;
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, prefix).await?;
    Ok((Scope::new(&cluster, &namespace), namespace))
}

/// A predictor pod the way KServe's guide writes it: the label, the engine annotation, an
/// ordinary vLLM container started through its args.
fn predictor(name: &str, engine: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "predictor", LABEL: "true"},
                     "annotations": {ENGINE: engine}},
        "spec": {"containers": [{"name": "kserve-container", "image": "vllm/vllm-openai:v0.33.0",
                                 "args": ["vllm", "serve", "m", "--port", "8080"]}]}
    })
}

/// Creates probe pods until the webhook's LMCacheEngine cache has `engine`.
async fn wait_visible(s: &Scope, engine: &str) -> anyhow::Result<Value> {
    let mut n = 0;
    s.wait(&format!("the webhook to see LMCacheEngine {engine}"), || {
        n += 1;
        let name = format!("probe-{engine}-{n}");
        async move {
            let pod = create(s, &predictor(&name, engine)).await?;
            Ok((annotation(&pod, INJECTED) == Some("true")).then_some(pod))
        }
    })
    .await
}

fn env_of(container: &Value) -> Value {
    container["env"].clone()
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn k1_a_kserve_style_deployment_is_wired_to_its_engine() -> anyhow::Result<()> {
    let (s, _ns) = scope("k1-kserve").await?;
    s.apply_cr(Kind::Engine, "my-cache", &json!({"l1": {"sizeGB": 60}}))
        .await?;
    wait_visible(&s, "my-cache").await?;
    s.apply_manifest(&json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "llama-predictor"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "llama"}},
                 "template": {"metadata": {"labels": {"app": "llama", LABEL: "true"},
                                           "annotations": {ENGINE: "my-cache"}},
                              "spec": {"containers": [{"name": "kserve-container",
                                                       "image": "vllm/vllm-openai:v0.33.0",
                                                       "args": ["vllm", "serve", "m", "--port", "8080"]}]}}}
    }))
    .await?;
    let pod = s
        .wait("the Deployment's pod", || async {
            Ok(s.list(Res::Pod, "app=llama").await?.into_iter().next())
        })
        .await?;
    assert_eq!(annotation(&pod, INJECTED), Some("true"));
    assert_eq!(annotation(&pod, SKIP_REASON), None);
    assert_eq!(pod["spec"]["hostIPC"], true);
    let container = &pod["spec"]["containers"][0];
    assert_eq!(
        env_of(container),
        json!([{"name": "PYTHONHASHSEED", "value": "0"}])
    );
    let args = strings(&container["args"]);
    assert_eq!(args[..5], ["vllm", "serve", "m", "--port", "8080"]);
    // Byte for byte the ConfigMap the operator wrote.
    let expected = connection_json(&s, "my-cache").await?;
    assert_eq!(kv_transfer_config(&args), Some(expected.as_str()));
    // Nothing staged without a payload image.
    assert!(pod["spec"]["initContainers"].is_null());
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn k2_same_named_engines_in_two_namespaces_wire_their_own_pods() -> anyhow::Result<()> {
    let (a, _na) = scope("k2-a").await?;
    let (b, _nb) = scope("k2-b").await?;
    a.apply_cr(Kind::Engine, "my-cache", &json!({"l1": {"sizeGB": 1}}))
        .await?;
    b.apply_cr(
        Kind::Engine,
        "my-cache",
        &json!({"l1": {"sizeGB": 1}, "server": {"port": 6555}}),
    )
    .await?;
    for (s, port) in [(&a, "5555"), (&b, "6555")] {
        let pod = wait_visible(s, "my-cache").await?;
        let args = strings(&pod["spec"]["containers"][0]["args"]);
        let config: Value = serde_json::from_str(kv_transfer_config(&args).unwrap_or("null"))?;
        let extra = &config["kv_connector_extra_config"];
        assert_eq!(
            extra["lmcache.mp.host"],
            format!("tcp://my-cache.{}.svc.cluster.local", s.ns).as_str()
        );
        assert_eq!(extra["lmcache.mp.port"], port);
        assert_eq!(
            kv_transfer_config(&args),
            Some(connection_json(s, "my-cache").await?.as_str())
        );
    }
    Ok(())
}

/// K6: the CacheBlend entry comes first, so CacheBlend injects and the connection injector then
/// sees its `--kv-transfer-config` and skips.
#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn k6_a_pod_opted_into_both_gets_cacheblend_and_the_connection_skips() -> anyhow::Result<()> {
    let (s, _ns) = scope("k6-both").await?;
    s.apply_cr(Kind::Engine, "my-cache", &json!({"l1": {"sizeGB": 1}}))
        .await?;
    s.apply_cr(
        Kind::BlendEngine,
        "cb",
        &json!({"l1": {"sizeGB": 1}, "injection": {"payloadImage": {"repository": "reg/cb"}}}),
    )
    .await?;
    wait_visible(&s, "my-cache").await?;
    lmcache_e2e::webhook_pods::wait_engine_visible(&s, "cb").await?;
    let mut pod = predictor("both", "my-cache");
    pod["metadata"]["labels"]["lmcache.ai/cacheblend-inject"] = json!("true");
    pod["metadata"]["annotations"]["lmcache.ai/cacheblend-engine"] = json!("cb");
    let created = create(&s, &pod).await?;
    assert_eq!(
        annotation(&created, "lmcache.ai/cacheblend-injected"),
        Some("true")
    );
    assert_eq!(
        annotation(&created, SKIP_REASON),
        Some("kv-transfer-config-present")
    );
    assert_eq!(annotation(&created, INJECTED), None);
    let args = strings(&created["spec"]["containers"][0]["args"]);
    let config: Value = serde_json::from_str(kv_transfer_config(&args).unwrap_or("null"))?;
    assert_eq!(config["kv_connector"], "CBKVConnector");
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn k7_admission_sends_no_api_request() -> anyhow::Result<()> {
    let (s, _ns) = scope("k7-audit").await?;
    s.apply_cr(Kind::Engine, "my-cache", &json!({"l1": {"sizeGB": 1}}))
        .await?;
    wait_visible(&s, "my-cache").await?;
    let audit = AuditLog::open()?;
    let before = audit.mark()?;
    let created = create(&s, &predictor("measured", "my-cache")).await?;
    assert_eq!(annotation(&created, INJECTED), Some("true"));
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

/// K8: a namespace whose ResourceQuota demands requests admits opted-in pods with a payload init
/// container, from either webhook (the stage containers carry explicit resources).
#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn k8_resource_quota_namespaces_admit_pods_with_stage_init_containers() -> anyhow::Result<()> {
    let (s, _ns) = scope("k8-quota").await?;
    s.apply_manifest(&json!({
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
        "spec": {"hard": {"requests.cpu": "100", "requests.memory": "1Ti", "limits.memory": "2Ti"}}
    }))
    .await?;
    s.wait("the quota's usage is known", || async {
        let quota = s
            .cluster
            .kubectl
            .get_json(&s.ns, &["resourcequota", "compute"])
            .await?;
        Ok(quota["status"]["hard"].is_object().then_some(()))
    })
    .await?;
    s.apply_cr(
        Kind::Engine,
        "my-cache",
        &json!({"l1": {"sizeGB": 1}, "injection": {"payloadImage": {"repository": "reg/lmcache-payload"}}}),
    )
    .await?;
    s.apply_cr(
        Kind::BlendEngine,
        "cb",
        &json!({"l1": {"sizeGB": 1}, "injection": {"payloadImage": {"repository": "reg/cb"}}}),
    )
    .await?;
    let resources = json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}});
    // The probe pods of `wait_visible` carry no requests and are refused by the quota, so the
    // caches are awaited through the pods under test themselves.
    let mut lmcache = predictor("lmc", "my-cache");
    lmcache["spec"]["containers"][0]["resources"] = resources.clone();
    let created = s
        .wait("an injected LMCache pod admitted under the quota", || {
            let mut pod = lmcache.clone();
            let s = &s;
            async move {
                pod["metadata"]["name"] = json!(format!("lmc-{}", uuid_suffix()));
                let created = create(s, &pod).await?;
                Ok((annotation(&created, INJECTED) == Some("true")).then_some(created))
            }
        })
        .await?;
    assert_eq!(
        created["spec"]["initContainers"][0]["name"],
        "lmcache-payload-stage"
    );
    assert_eq!(
        created["spec"]["initContainers"][0]["resources"],
        json!({"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}})
    );
    let mut blend = lmcache_e2e::webhook_pods::vllm_pod("cb", Some("cb"), &json!({}));
    blend["spec"]["containers"][0]["resources"] = resources;
    let created = s
        .wait("an injected CacheBlend pod admitted under the quota", || {
            let mut pod = blend.clone();
            let s = &s;
            async move {
                pod["metadata"]["name"] = json!(format!("cb-{}", uuid_suffix()));
                let created = create(s, &pod).await?;
                Ok(
                    (annotation(&created, "lmcache.ai/cacheblend-injected") == Some("true"))
                        .then_some(created),
                )
            }
        })
        .await?;
    assert_eq!(created["spec"]["initContainers"][0]["name"], "cb-plugin-stage");
    assert!(created["spec"]["initContainers"][0]["resources"]["requests"].is_object());
    Ok(())
}

/// A short suffix unique within the test process.
fn uuid_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}
