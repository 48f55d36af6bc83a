//! behaviours.md §C on the real control plane: edits to the operator's fields are reverted,
//! deleted children come back, fields added by others survive, and names taken by someone else
//! are reported as `NameConflict` without touching the other object.

use lmcache_e2e::crd::Kind;
use lmcache_e2e::objects::{
    Res, Scope, args, borrowed, condition, controller_uid, engine_children, engine_connection_json, labels,
    minimal_engine_args, resource_version, uid,
};
use lmcache_e2e::{Cluster, TempNamespace, settings};
use serde_json::{Value, json};

async fn engine(prefix: &str, name: &str) -> anyhow::Result<(Scope, TempNamespace, Vec<Value>)> {
    settings::operator_health()?;
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, prefix).await?;
    let s = Scope::new(&cluster, &namespace);
    s.apply_cr(Kind::Engine, name, &Kind::Engine.minimal_spec())
        .await?;
    let children = s.wait_exist(&borrowed(&engine_children(name))).await?;
    Ok((s, namespace, children))
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn c62_host_ipc_and_args_edits_on_the_daemonset_are_reverted() -> anyhow::Result<()> {
    let (s, _ns, _) = engine("c62-drift", "my-cache").await?;
    let name = "my-cache";

    s.merge_patch(
        Res::DaemonSet,
        name,
        &json!({"spec": {"template": {"spec": {"hostIPC": false}}}}),
    )
    .await?;
    s.wait("hostIPC restored to true", || async {
        let ds = s.must_get(Res::DaemonSet, name).await?;
        Ok((ds["spec"]["template"]["spec"]["hostIPC"] == true).then_some(()))
    })
    .await?;

    // Remove `--host 0.0.0.0` (the first two elements).
    s.json_patch(
        Res::DaemonSet,
        name,
        &json!([
            {"op": "remove", "path": "/spec/template/spec/containers/0/args/0"},
            {"op": "remove", "path": "/spec/template/spec/containers/0/args/0"}
        ]),
    )
    .await?;
    s.wait("args restored", || async {
        let ds = s.must_get(Res::DaemonSet, name).await?;
        let got = args(&ds);
        if got == minimal_engine_args(5555) {
            Ok(Some(()))
        } else {
            anyhow::bail!("args are {got:?}")
        }
    })
    .await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn c63_service_traffic_policy_and_configmap_edits_are_reverted() -> anyhow::Result<()> {
    let (s, _ns, _) = engine("c63-drift", "my-cache").await?;
    let name = "my-cache";
    let cm_name = format!("{name}-connection");
    s.merge_patch(
        Res::Service,
        name,
        &json!({"spec": {"internalTrafficPolicy": "Cluster"}}),
    )
    .await?;
    s.merge_patch(
        Res::ConfigMap,
        &cm_name,
        &json!({"data": {"kv-transfer-config.json": "{\"edited\": true}"}}),
    )
    .await?;
    let expected = engine_connection_json(name, &s.ns, 5555);
    s.wait("internalTrafficPolicy Local and the JSON restored", || async {
        let svc = s.must_get(Res::Service, name).await?;
        let cm = s.must_get(Res::ConfigMap, &cm_name).await?;
        let ok = svc["spec"]["internalTrafficPolicy"] == "Local"
            && cm["data"]["kv-transfer-config.json"] == expected.as_str();
        if ok {
            Ok(Some(()))
        } else {
            anyhow::bail!(
                "policy {}, data {}",
                svc["spec"]["internalTrafficPolicy"],
                cm["data"]
            )
        }
    })
    .await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn c64_each_deleted_child_is_recreated() -> anyhow::Result<()> {
    let (s, _ns, children) = engine("c64-recreate", "my-cache").await?;
    let engine = s.must_get(Res::Cr(Kind::Engine), "my-cache").await?;
    for ((res, name), old) in engine_children("my-cache").iter().zip(&children) {
        s.delete(*res, name).await?;
        let old_uid = uid(old);
        let new = s
            .wait(&format!("{} {name} recreated", res.kind()), || async {
                Ok(s.get(*res, name)
                    .await?
                    .filter(|obj| uid(obj) != old_uid && obj["metadata"]["deletionTimestamp"].is_null()))
            })
            .await?;
        assert_eq!(controller_uid(&new), uid(&engine), "{name}");
    }
    s.wait_running(Kind::Engine, "my-cache", 3).await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn c65_rollout_restart_annotation_and_a_foreign_label_survive_reconciles() -> anyhow::Result<()> {
    let (s, _ns, _) = engine("c65-foreign", "my-cache").await?;
    let name = "my-cache";
    s.kubectl(&["rollout", "restart", &format!("daemonset/{name}")])
        .await?;
    s.kubectl(&["label", &format!("service/{name}"), "x=y"]).await?;
    let ds = s.must_get(Res::DaemonSet, name).await?;
    let restarted_at =
        ds["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].clone();
    assert!(
        restarted_at.is_string(),
        "rollout restart annotation: {restarted_at}"
    );

    // A port change makes the operator re-apply both the DaemonSet and the Service.
    s.apply_cr(
        Kind::Engine,
        name,
        &json!({"l1": {"sizeGB": 60}, "server": {"port": 6555}}),
    )
    .await?;
    let (ds, svc) = s
        .wait("DaemonSet and Service re-applied with port 6555", || async {
            let ds = s.must_get(Res::DaemonSet, name).await?;
            let svc = s.must_get(Res::Service, name).await?;
            Ok(
                (args(&ds) == minimal_engine_args(6555) && svc["spec"]["ports"][0]["port"] == 6555)
                    .then_some((ds, svc)),
            )
        })
        .await?;
    assert_eq!(
        ds["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
        restarted_at
    );
    assert_eq!(labels(&svc).get("x").map(String::as_str), Some("y"));
    // A further reconcile (status update after the rollout) keeps them as well.
    s.wait_running(Kind::Engine, name, 3).await?;
    let ds = s.must_get(Res::DaemonSet, name).await?;
    let svc = s.must_get(Res::Service, name).await?;
    assert_eq!(
        ds["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
        restarted_at
    );
    assert_eq!(labels(&svc).get("x").map(String::as_str), Some("y"));
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn c67_a_user_configmap_is_a_name_conflict_until_it_is_deleted() -> anyhow::Result<()> {
    settings::operator_health()?;
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, "c67-conflict").await?;
    let s = Scope::new(&cluster, &namespace);
    let name = "my-cache";
    let cm_name = format!("{name}-connection");
    s.apply_manifest(&json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": cm_name},
        "data": {"mine": "yes"}
    }))
    .await?;
    let user_cm = s.must_get(Res::ConfigMap, &cm_name).await?;

    s.apply_cr(Kind::Engine, name, &Kind::Engine.minimal_spec())
        .await?;
    let message = format!(
        "ConfigMap {}/{cm_name} already exists and is not controlled by this LMCacheEngine",
        s.ns
    );
    let engine = s
        .wait_status(Kind::Engine, name, "NameConflict", |st| {
            condition(st, "ConfigValid")["reason"] == "NameConflict"
        })
        .await?;
    let status = &engine["status"];
    assert_eq!(status["phase"], "Failed");
    let valid = condition(status, "ConfigValid");
    assert_eq!(valid["status"], "False");
    assert_eq!(valid["message"], message.as_str());
    s.wait_event(name, "Warning", "NameConflict", &message).await?;
    // Nothing was written: no DaemonSet, and the user's ConfigMap is untouched.
    assert!(s.get(Res::DaemonSet, name).await?.is_none());
    assert!(s.get(Res::Service, name).await?.is_none());
    let now = s.must_get(Res::ConfigMap, &cm_name).await?;
    assert_eq!(resource_version(&now), resource_version(&user_cm));
    assert_eq!(now["data"], json!({"mine": "yes"}));
    assert!(now["metadata"]["ownerReferences"].is_null());

    // Once the name is free the retry (every 30 s) creates every child.
    s.delete(Res::ConfigMap, &cm_name).await?;
    let children = engine_children(name);
    s.wait_exist(&borrowed(&children)).await?;
    let engine = s
        .wait_status(Kind::Engine, name, "ConfigValid=True", |st| {
            condition(st, "ConfigValid")["status"] == "True"
        })
        .await?;
    assert_ne!(engine["status"]["phase"], "Failed");
    let cm = s.must_get(Res::ConfigMap, &cm_name).await?;
    assert_eq!(controller_uid(&cm), uid(&engine));
    assert_eq!(
        cm["data"]["kv-transfer-config.json"],
        engine_connection_json(name, &s.ns, 5555)
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn c68_a_same_named_cacheblend_engine_conflicts_and_leaves_the_engine_children_alone()
-> anyhow::Result<()> {
    let (s, _ns, _) = engine("c68-samename", "x").await?;
    s.wait_running(Kind::Engine, "x", 3).await?;
    s.wait_daemonset_settled("x", 3).await?;
    let engine = s.must_get(Res::Cr(Kind::Engine), "x").await?;
    let children = engine_children("x");
    let before = s.wait_exist(&borrowed(&children)).await?;

    s.apply_cr(Kind::BlendEngine, "x", &Kind::BlendEngine.minimal_spec())
        .await?;
    let blend = s
        .wait_status(Kind::BlendEngine, "x", "NameConflict", |st| {
            condition(st, "ConfigValid")["reason"] == "NameConflict"
        })
        .await?;
    let ns = &s.ns;
    let expected = [
        format!("DaemonSet {ns}/x"),
        format!("Service {ns}/x"),
        format!("Service {ns}/x-metrics"),
        format!("ConfigMap {ns}/x-connection"),
    ]
    .map(|o| format!("{o} already exists and is not controlled by this CacheBlendEngine"))
    .join("; ");
    assert_eq!(
        condition(&blend["status"], "ConfigValid")["message"],
        expected.as_str()
    );
    assert_eq!(blend["status"]["phase"], "Failed");

    // The engine's children keep owner, content and (apart from the DaemonSet's status)
    // resourceVersion.
    let after = s.wait_exist(&borrowed(&children)).await?;
    for (old, new) in before.iter().zip(&after) {
        let name = &new["metadata"]["name"];
        assert_eq!(uid(old), uid(new), "{name}");
        assert_eq!(controller_uid(new), uid(&engine), "{name}");
        assert_eq!(old["spec"], new["spec"], "{name}");
        assert_eq!(old["data"], new["data"], "{name}");
        assert_eq!(old["metadata"]["labels"], new["metadata"]["labels"], "{name}");
        if new["kind"] != "DaemonSet" {
            assert_eq!(resource_version(old), resource_version(new), "{name}");
        }
    }
    let engine_now = s.must_get(Res::Cr(Kind::Engine), "x").await?;
    assert_eq!(condition(&engine_now["status"], "ConfigValid")["status"], "True");
    assert_eq!(engine_now["status"]["phase"], "Running");
    Ok(())
}
