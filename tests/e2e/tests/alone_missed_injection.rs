//! The missed-injection watchdog on the real control plane. `alone_*`: `cargo xtask e2e` runs it
//! after stopping the shared operator and webhook, so pods created here are admitted without the
//! webhook (its `failurePolicy` is `Ignore`), exactly as when a cluster restarts its workloads
//! before the injector. The test runs its own operator, then starts the webhook.
//!
//! **Stand-in for the webhook Service.** The operator reads the webhook's readiness from the
//! EndpointSlices of its Service (`--webhook-service`), never by dialling it. Here the webhook is
//! a local process that no EndpointSlice controller watches, so the test plays that controller:
//! it creates a selector-less Service and its EndpointSlice in the operator namespace, with a
//! TEST-NET-1 address (`192.0.2.10`, documentation range, never dialled by anyone: the API
//! server calls the webhook at its registered loopback URL) marked not ready, and marks it ready
//! once the webhook process answers admissions.

use lmcache_e2e::audit::{AuditLog, OPERATOR_USER};
use lmcache_e2e::crd::Kind;
use lmcache_e2e::objects::{Res, Scope, uid};
use lmcache_e2e::product::{self, Process};
use lmcache_e2e::webhook_pods::{annotation, create};
use lmcache_e2e::{Cluster, TempNamespace, scrape, settings};
use serde_json::{Value, json};
use std::time::Duration;

const CONN_LABEL: &str = "lmcache.ai/lmcache-inject";
const CONN_ENGINE: &str = "lmcache.ai/lmcache-engine";
const CONN_INJECTED: &str = "lmcache.ai/lmcache-injected";
const BLEND_LABEL: &str = "lmcache.ai/cacheblend-inject";
const BLEND_ENGINE: &str = "lmcache.ai/cacheblend-engine";
const SERVICE: &str = "missed-webhook";

fn deployment(name: &str, label: &str, engine_key: &str, engine: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name, label: "true"},
                                           "annotations": {engine_key: engine}},
                              "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.33.0",
                                                       "args": ["vllm", "serve", "m"]}]}}}
    })
}

/// The one live pod of Deployment `app`.
async fn pod_of(s: &Scope, app: &str) -> anyhow::Result<Value> {
    s.wait(&format!("the pod of {app}"), || async {
        let pods = s.list(Res::Pod, &format!("app={app}")).await?;
        let live: Vec<Value> = pods
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        Ok((live.len() == 1).then(|| live[0].clone()))
    })
    .await
}

/// The EndpointSlice stand-in (see the module documentation).
fn endpoint_slice(ready: bool) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{SERVICE}-1"), "labels": {"kubernetes.io/service-name": SERVICE}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.0.2.10"], "conditions": {"ready": ready}}],
        "ports": [{"name": "https", "port": 9443, "protocol": "TCP"}]
    })
}

async fn apply_in(cluster: &Cluster, namespace: &str, manifest: &Value) -> anyhow::Result<()> {
    cluster
        .kubectl
        .apply(namespace, &manifest.to_string())
        .await?
        .ok()?;
    Ok(())
}

async fn gauge(metrics: std::net::SocketAddr) -> anyhow::Result<f64> {
    Ok(scrape::sum(
        &scrape::metrics(metrics).await?,
        "lmcache_operator_missed_injections",
        &[],
    ))
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn alone_missed_injections_are_reported_and_repaired_only_when_asked() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, "missed").await?;
    let s = Scope::new(&cluster, &namespace);
    let audit = AuditLog::open()?;
    let op_ns = settings::operator_namespace();
    apply_in(
        &cluster,
        &op_ns,
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 9443}]}}),
    )
    .await?;
    apply_in(&cluster, &op_ns, &endpoint_slice(false)).await?;

    let health = product::free_addr()?;
    let metrics = product::free_addr()?;
    let operator = Process::operator(
        "missed-operator",
        &settings::operator_kubeconfig()?,
        health,
        &[
            "--missed-injection-grace=3s",
            &format!("--webhook-service={op_ns}/{SERVICE}"),
            &format!("--metrics-bind-address={metrics}"),
        ],
    )?;
    s.wait("the operator ready", || async {
        Ok((product::http_status(health, "/readyz") == Some(200)).then_some(()))
    })
    .await?;
    let mark = audit.mark()?;

    // Engines: repair asked for on the LMCacheEngine only.
    s.apply_cr(
        Kind::Engine,
        "cache",
        &json!({"l1": {"sizeGB": 60}, "injection": {"repairMissed": true}}),
    )
    .await?;
    s.apply_cr(
        Kind::BlendEngine,
        "blend",
        &json!({"l1": {"sizeGB": 60}, "injection": {"payloadImage": {"repository": "reg/cb", "tag": "1"}}}),
    )
    .await?;
    // Created while no webhook runs: admitted unmutated.
    s.apply_manifest(&deployment("conn-app", CONN_LABEL, CONN_ENGINE, "cache"))
        .await?;
    s.apply_manifest(&deployment("blend-app", BLEND_LABEL, BLEND_ENGINE, "blend"))
        .await?;
    let bare = create(
        &s,
        &json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "conn-bare", "labels": {CONN_LABEL: "true"},
                             "annotations": {CONN_ENGINE: "cache"}},
                "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.33.0"}]}}),
    )
    .await?;
    let conn = pod_of(&s, "conn-app").await?;
    let blend = pod_of(&s, "blend-app").await?;
    for pod in [&conn, &blend, &bare] {
        assert_eq!(
            annotation(pod, CONN_INJECTED),
            None,
            "admitted without the webhook"
        );
    }

    // Reported within the grace period (3 s) and a tick: Events, gauge, engine status.
    for pod in [&conn, &blend, &bare] {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let event = s
            .wait(&format!("InjectionMissed on pod {name}"), || async {
                Ok(s.events(name, "InjectionMissed").await?.into_iter().next())
            })
            .await?;
        assert_eq!(event["type"], "Warning");
        assert!(
            event["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("admitted without the")),
            "{event}"
        );
    }
    s.wait("gauge 3", || async {
        Ok((gauge(metrics).await? == 3.0).then_some(()))
    })
    .await?;
    s.wait_status(Kind::Engine, "cache", "missedInjections 2", |st| {
        st["missedInjections"] == 2
    })
    .await?;
    s.wait_status(Kind::BlendEngine, "blend", "missedInjections 1", |st| {
        st["missedInjections"] == 1
    })
    .await?;
    let on_engine = s.events("cache", "InjectionMissed").await?;
    assert!(
        on_engine.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("it is evicted once the webhook is ready"))),
        "{on_engine:?}"
    );
    // While the webhook's Service has no ready endpoint, nothing is repaired.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        uid(&pod_of(&s, "conn-app").await?),
        uid(&conn),
        "repaired while the webhook was down"
    );

    // The webhook comes back; once it is ready (the stand-in slice), the connection
    // Deployment's pod is evicted and recreated through the webhook.
    let webhook = Process::webhook()?;
    let mut n = 0;
    s.wait("the webhook answering admissions", || {
        n += 1;
        let probe = format!("probe-{n}");
        let s = &s;
        async move {
            let pod = create(
                s,
                &json!({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": probe, "labels": {CONN_LABEL: "true"},
                                     "annotations": {CONN_ENGINE: "cache"}},
                        "spec": {"nodeSelector": {"kubernetes.io/hostname": "no-such-node"},
                                 "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.33.0"}]}}),
            )
            .await?;
            // An unscheduled pod is deleted at once: a probe the webhook missed is gone before
            // the grace period makes it a missed injection.
            s.delete(Res::Pod, &probe).await?;
            Ok((annotation(&pod, CONN_INJECTED) == Some("true")).then_some(()))
        }
    })
    .await?;
    apply_in(&cluster, &op_ns, &endpoint_slice(true)).await?;
    let repaired = s
        .wait("conn-app recreated and injected", || async {
            let pod = pod_of(&s, "conn-app").await?;
            Ok((uid(&pod) != uid(&conn) && annotation(&pod, CONN_INJECTED) == Some("true")).then_some(pod))
        })
        .await?;
    let event = s
        .wait("MissedInjectionRepaired", || async {
            Ok(s.events("cache", "MissedInjectionRepaired")
                .await?
                .into_iter()
                .next())
        })
        .await?;
    let conn_name = conn["metadata"]["name"].as_str().unwrap_or_default();
    assert!(
        event["message"]
            .as_str()
            .is_some_and(|m| m.contains(conn_name) && m.contains("ReplicaSet")),
        "{event}"
    );
    // Repair off (blend) and bare pods: reported only.
    s.wait("gauge 2", || async {
        Ok((gauge(metrics).await? == 2.0).then_some(()))
    })
    .await?;
    s.wait_status(Kind::Engine, "cache", "missedInjections 1", |st| {
        st["missedInjections"] == 1
    })
    .await?;
    assert_eq!(uid(&pod_of(&s, "blend-app").await?), uid(&blend));
    assert!(
        s.get(Res::Pod, "conn-bare")
            .await?
            .is_some_and(|p| uid(&p) == uid(&bare))
    );

    // The audit log: the operator evicted exactly that pod, and deleted none.
    let touched: Vec<String> = audit
        .events_since(mark, OPERATOR_USER)?
        .iter()
        .filter(|e| {
            e["objectRef"]["resource"] == "pods"
                && (e["objectRef"]["subresource"] == "eviction" || e["verb"] == "delete")
        })
        .map(|e| {
            format!(
                "{} {}",
                e["verb"].as_str().unwrap_or_default(),
                e["objectRef"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        touched,
        [format!("create {conn_name}")],
        "pods the operator touched"
    );
    let _ = repaired;
    webhook.stop(Duration::from_secs(5));
    operator.stop(Duration::from_secs(5));
    cluster
        .kubectl
        .run(&["-n", &op_ns, "delete", "service", SERVICE, "--ignore-not-found"])
        .await?
        .ok()?;
    cluster
        .kubectl
        .run(&[
            "-n",
            &op_ns,
            "delete",
            "endpointslice",
            &format!("{SERVICE}-1"),
            "--ignore-not-found",
        ])
        .await?
        .ok()?;
    Ok(())
}
