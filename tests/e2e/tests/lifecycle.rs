//! Lifecycle and failure semantics on the real control plane (lifecycle.md §1–§3): deletions
//! the operator must not fight, apply failures it must show, and the `Ready` condition.

use lmcache_e2e::audit::{AuditLog, OPERATOR_USER, describe};
use lmcache_e2e::crd::Kind;
use lmcache_e2e::objects::{Res, borrowed, condition, engine_children, operator_scope, uid};
use lmcache_e2e::{Cluster, wait, webhook_pods};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// §1: `kubectl delete --cascade=foreground` (Argo CD's default) of an engine with running pods
/// completes within 60 s; no child is re-created (every UID stays until it is gone) and the
/// operator writes nothing for that engine after the delete request (audit log).
#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn foreground_delete_completes_and_the_operator_writes_nothing() -> anyhow::Result<()> {
    let (s, _ns) = operator_scope("fg-delete").await?;
    let spec = json!({"l1": {"sizeGB": 1}, "prometheus": {"serviceMonitor": {"enabled": false}}});
    s.apply_cr(Kind::Engine, "my-cache", &spec).await?;
    s.wait_running(Kind::Engine, "my-cache", 3).await?;
    let children = engine_children("my-cache");
    // Keyed by kind and name: the DaemonSet and the lookup Service are both `my-cache`.
    let mut uids: BTreeMap<String, String> = BTreeMap::new();
    for (res, name) in &children {
        uids.insert(format!("{res:?} {name}"), uid(&s.must_get(*res, name).await?));
    }
    let audit = AuditLog::open()?;
    let before = audit.mark()?;
    let started = Instant::now();
    s.kubectl(&[
        "delete",
        "lmc",
        "my-cache",
        "--cascade=foreground",
        "--wait=false",
    ])
    .await?;
    // Until the engine is gone, every child that exists still has its original UID.
    loop {
        for (res, name) in &children {
            if let Some(child) = s.get(*res, name).await? {
                let key = format!("{res:?} {name}");
                assert_eq!(
                    uid(&child),
                    uids[&key],
                    "{key} was re-created during the deletion"
                );
            }
        }
        if s.get(Res::Cr(Kind::Engine), "my-cache").await?.is_none() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still present after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    s.wait_gone(&borrowed(&children)).await?;
    // Give a misbehaving operator the time to act on the last events.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes: Vec<String> = audit
        .events_since(before, OPERATOR_USER)?
        .iter()
        .filter(|e| matches!(e["verb"].as_str(), Some("create" | "update" | "patch" | "delete")))
        .filter(|e| {
            let uri = e["requestURI"].as_str().unwrap_or_default();
            uri.contains(&format!("/namespaces/{}/", s.ns)) && !uri.contains("/events")
        })
        .map(describe)
        .collect();
    assert!(writes.is_empty(), "operator writes after the delete: {writes:?}");
    Ok(())
}

/// §1: deleting a namespace holding engines, a coordinator and injected pods completes.
#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn namespace_with_engines_coordinator_and_injected_pods_is_deleted() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let (s, ns) = operator_scope("ns-delete").await?;
    s.apply_cr(Kind::Coordinator, "coord", &json!({})).await?;
    let mut engine = json!({"l1": {"sizeGB": 1}, "coordinator": {"ref": {"name": "coord"}}});
    s.apply_cr(Kind::Engine, "cache", &engine).await?;
    engine["injection"] = json!({"payloadImage": {"repository": "reg/cb"}});
    s.apply_cr(Kind::BlendEngine, "blend", &engine).await?;
    webhook_pods::wait_engine_visible(&s, "blend").await?;
    let pod = webhook_pods::vllm_pod("vllm", Some("blend"), &json!({}));
    let created = webhook_pods::create(&s, &pod).await?;
    assert_eq!(
        webhook_pods::annotation(&created, "lmcache.ai/cacheblend-injected"),
        Some("true")
    );
    s.wait_running(Kind::Engine, "cache", 3).await?;
    let name = ns.name().to_string();
    cluster
        .kubectl
        .run(&["delete", "namespace", &name, "--wait=false"])
        .await?
        .ok()?;
    wait::until(
        &format!("namespace {name} gone"),
        Duration::from_secs(180),
        || async {
            let out = cluster
                .kubectl
                .run(&["get", "namespace", &name, "-o", "name"])
                .await?;
            Ok((!out.success).then_some(()))
        },
    )
    .await?;
    Ok(())
}

/// §2: a DaemonSet the API server rejects (a volume mount naming no volume) is reported as
/// `ApplyFailed` (Event, `Ready=False`, phase `Failed`) while the other children exist; fixing
/// the spec recovers.
#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a_rejected_daemonset_is_visible_and_fixing_the_spec_recovers() -> anyhow::Result<()> {
    let (s, _ns) = operator_scope("apply-failed").await?;
    let broken = json!({"l1": {"sizeGB": 1}, "volumeMounts": [{"name": "data", "mountPath": "/data"}]});
    s.apply_cr(Kind::Engine, "my-cache", &broken).await?;
    let engine = s
        .wait_status(Kind::Engine, "my-cache", "phase Failed with ApplyFailed", |st| {
            st["phase"] == "Failed" && condition(st, "Ready")["reason"] == "ApplyFailed"
        })
        .await?;
    let ready = condition(&engine["status"], "Ready");
    let message = ready["message"].as_str().unwrap_or_default().to_string();
    assert_eq!(ready["status"], "False");
    assert!(
        message.starts_with(&format!("DaemonSet {}/my-cache: ", s.ns)),
        "{message}"
    );
    assert!(
        message.contains("volumeMounts") && message.contains("Not found"),
        "{message}"
    );
    assert_eq!(condition(&engine["status"], "ConfigValid")["status"], "True");
    assert_eq!(engine["status"]["observedGeneration"], 1);
    s.wait_event("my-cache", "Warning", "ApplyFailed", &message)
        .await?;
    // The other children were applied all the same.
    s.wait_exist(&[
        (Res::Service, "my-cache"),
        (Res::Service, "my-cache-metrics"),
        (Res::ConfigMap, "my-cache-connection"),
    ])
    .await?;
    assert!(s.get(Res::DaemonSet, "my-cache").await?.is_none());

    let fixed = json!({"l1": {"sizeGB": 1}, "volumes": [{"name": "data", "emptyDir": {}}],
                       "volumeMounts": [{"name": "data", "mountPath": "/data"}]});
    s.apply_cr(Kind::Engine, "my-cache", &fixed).await?;
    let engine = s.wait_running(Kind::Engine, "my-cache", 3).await?;
    assert_eq!(condition(&engine["status"], "Ready")["reason"], "Running");
    Ok(())
}

/// §3: `kubectl wait --for=condition=Ready` returns for an engine and for a coordinator.
#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn kubectl_wait_for_ready_returns_for_an_engine_and_a_coordinator() -> anyhow::Result<()> {
    let (s, _ns) = operator_scope("wait-ready").await?;
    s.apply_cr(Kind::Engine, "my-cache", &json!({"l1": {"sizeGB": 1}}))
        .await?;
    s.apply_cr(Kind::Coordinator, "my-coordinator", &json!({}))
        .await?;
    for what in ["lmc/my-cache", "lmcc/my-coordinator"] {
        let out = s
            .kubectl(&["wait", "--for=condition=Ready", what, "--timeout=90s"])
            .await?;
        assert!(out.contains("condition met"), "{what}: {out}");
    }
    let engine = s.must_get(Res::Cr(Kind::Engine), "my-cache").await?;
    let conditions: Vec<&str> = engine["status"]["conditions"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["type"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(conditions.last(), Some(&"Ready"), "{conditions:?}");
    Ok(())
}

/// §3: an engine whose pods cannot be scheduled says why, per pod, in its status.
#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn an_unschedulable_engine_names_the_reason() -> anyhow::Result<()> {
    let (s, _ns) = operator_scope("unschedulable").await?;
    // More memory than any node has.
    let spec = json!({"l1": {"sizeGB": 1},
                      "resourceOverrides": {"requests": {"memory": "1000Ti"}, "limits": {"memory": "1000Ti"}}});
    s.apply_cr(Kind::Engine, "huge", &spec).await?;
    let engine = s
        .wait_status(Kind::Engine, "huge", "pods unschedulable", |st: &Value| {
            condition(st, "Ready")["message"]
                .as_str()
                .is_some_and(|m| m.contains("Unschedulable"))
        })
        .await?;
    let ready = condition(&engine["status"], "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "NoReadyInstances");
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("0/3 instances ready; huge-"), "{message}");
    assert!(message.contains("Insufficient memory"), "{message}");
    assert_eq!(
        condition(&engine["status"], "AllInstancesReady")["message"],
        ready["message"]
    );
    Ok(())
}
