//! rollouts.md (behaviours.md §L) on the real control plane: the rendered update strategy (L1),
//! `OnDelete` leaving pods alone while status names the outdated nodes (L2), and invalid
//! `maxUnavailable` values rejected at apply (L5). L4 is a reconcile test
//! (`bins/operator/src/reconcile/status/rollout.rs`).

use lmcache_e2e::crd::{Case, Kind, check_cases};
use lmcache_e2e::objects::{Res, Scope, condition, uid};
use lmcache_e2e::{Cluster, TempNamespace, settings};
use serde_json::{Value, json};
use std::collections::BTreeMap;

async fn scope(prefix: &str) -> anyhow::Result<(Scope, TempNamespace)> {
    settings::operator_health()?;
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, prefix).await?;
    Ok((Scope::new(&cluster, &namespace), namespace))
}

/// Node name -> pod uid of the engine's live pods.
async fn pods_by_node(s: &Scope, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(s.list(Res::Pod, &format!("app.kubernetes.io/instance={name}"))
        .await?
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                p["spec"]["nodeName"].as_str().unwrap_or_default().to_string(),
                uid(p),
            )
        })
        .collect())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn l1_default_engine_rolls_one_pod_at_a_time_without_surge() -> anyhow::Result<()> {
    let (s, _ns) = scope("l1-strategy").await?;
    s.apply_cr(Kind::Engine, "cache", &Kind::Engine.minimal_spec())
        .await?;
    let ds = s.wait_exist(&[(Res::DaemonSet, "cache")]).await?.remove(0);
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    // A percentage is rendered as given.
    s.apply_cr(
        Kind::Engine,
        "cache",
        &json!({"l1": {"sizeGB": 60}, "updateStrategy": {"rollingUpdate": {"maxUnavailable": "50%"}}}),
    )
    .await?;
    s.wait("maxUnavailable 50% on the DaemonSet", || async {
        let ds = s.must_get(Res::DaemonSet, "cache").await?;
        let strategy = &ds["spec"]["updateStrategy"];
        if *strategy
            == json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%", "maxSurge": 0}})
        {
            Ok(Some(()))
        } else {
            anyhow::bail!("updateStrategy {strategy}")
        }
    })
    .await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn l2_on_delete_leaves_pods_and_names_the_outdated_nodes() -> anyhow::Result<()> {
    let (s, _ns) = scope("l2-ondelete").await?;
    let name = "cache";
    let spec = |size: i64| json!({"l1": {"sizeGB": size}, "updateStrategy": {"type": "OnDelete"}});
    s.apply_cr(Kind::Engine, name, &spec(60)).await?;
    s.wait_running(Kind::Engine, name, 3).await?;
    s.wait_daemonset_settled(name, 3).await?;
    let ds = s.must_get(Res::DaemonSet, name).await?;
    assert_eq!(ds["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
    let before = pods_by_node(&s, name).await?;
    assert_eq!(before.len(), 3, "{before:?}");

    // A spec change that changes the pod template (the L1 size sets the memory request).
    s.apply_cr(Kind::Engine, name, &spec(61)).await?;
    let engine = s
        .wait_status(Kind::Engine, name, "UpToDate False naming 3 nodes", |st| {
            st["observedGeneration"] == 2
                && st["updatedInstances"] == 0
                && condition(st, "UpToDate")["reason"] == "RolloutPending"
        })
        .await?;
    let status = &engine["status"];
    let up_to_date = condition(status, "UpToDate");
    assert_eq!(up_to_date["status"], "False");
    assert_eq!(
        up_to_date["message"],
        "0/3 instances run the current template; outdated: gpu-node-0, gpu-node-1, gpu-node-2"
    );
    assert!(
        status["endpoints"]
            .as_array()
            .is_some_and(|e| e.len() == 3 && e.iter().all(|e| e["upToDate"] == false)),
        "{status}"
    );
    let started = s.events(name, "RolloutStarted").await?;
    assert!(
        started.iter().any(|e| e["message"].as_str().is_some_and(|m| m
            .contains("generation 1 -> 2 changed the pod template")
            && m.contains("OnDelete"))),
        "{started:?}"
    );
    // Nothing was replaced: the same pods, still.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        pods_by_node(&s, name).await?,
        before,
        "OnDelete must not replace pods"
    );

    // Deleting the pod on gpu-node-0 replaces it with one of the current template.
    let old = s
        .list(Res::Pod, &format!("app.kubernetes.io/instance={name}"))
        .await?
        .into_iter()
        .find(|p| p["spec"]["nodeName"] == "gpu-node-0")
        .ok_or_else(|| anyhow::anyhow!("no pod on gpu-node-0"))?;
    let old_name = old["metadata"]["name"].as_str().unwrap_or_default().to_string();
    s.delete(Res::Pod, &old_name).await?;
    let engine = s
        .wait_status(Kind::Engine, name, "updatedInstances 1", |st| {
            st["updatedInstances"] == 1 && st["readyInstances"] == 3
        })
        .await?;
    let endpoints: Vec<Value> = engine["status"]["endpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let by_node: BTreeMap<&str, bool> = endpoints
        .iter()
        .map(|e| (e["nodeName"].as_str().unwrap_or_default(), e["upToDate"] == true))
        .collect();
    assert_eq!(
        by_node,
        BTreeMap::from([("gpu-node-0", true), ("gpu-node-1", false), ("gpu-node-2", false)]),
        "{endpoints:?}"
    );
    assert_eq!(
        condition(&engine["status"], "UpToDate")["message"],
        "1/3 instances run the current template; outdated: gpu-node-1, gpu-node-2"
    );
    let after = pods_by_node(&s, name).await?;
    assert_ne!(after["gpu-node-0"], before["gpu-node-0"]);
    assert_eq!(after["gpu-node-1"], before["gpu-node-1"]);
    assert_eq!(after["gpu-node-2"], before["gpu-node-2"]);
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn l5_invalid_max_unavailable_is_rejected_at_apply() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, "l5-strategy").await?;
    let message = "maxUnavailable must be an integer of at least 1 or a percentage from 1% to 100%";
    let mut cases = Vec::new();
    for kind in [Kind::Engine, Kind::BlendEngine] {
        for (label, value) in [("0", json!(0)), ("0%", json!("0%")), ("abc", json!("abc"))] {
            cases.push(Case::rejected(
                &format!("maxUnavailable {label}"),
                kind,
                json!({"updateStrategy": {"rollingUpdate": {"maxUnavailable": value}}}),
                &["spec.updateStrategy.rollingUpdate", message],
            ));
        }
        cases.push(Case::rejected(
            "rollingUpdate with OnDelete",
            kind,
            json!({"updateStrategy": {"type": "OnDelete", "rollingUpdate": {"maxUnavailable": 1}}}),
            &[
                "spec.updateStrategy",
                "rollingUpdate may only be set when type is RollingUpdate",
            ],
        ));
        cases.push(Case::rejected(
            "type Recreate",
            kind,
            json!({"updateStrategy": {"type": "Recreate"}}),
            &["spec.updateStrategy.type", r#"Unsupported value: "Recreate""#],
        ));
        cases.push(Case::accepted(
            "maxUnavailable 100%",
            kind,
            json!({"updateStrategy": {"rollingUpdate": {"maxUnavailable": "100%"}}}),
        ));
        cases.push(Case::accepted(
            "OnDelete",
            kind,
            json!({"updateStrategy": {"type": "OnDelete"}}),
        ));
    }
    check_cases(&cluster, &namespace, &cases).await
}
