//! behaviours.md §D on the real control plane: the engine status for 3 ready pods (counts,
//! conditions, endpoints sorted by node, observedGeneration) and for no matching node.

use lmcache_e2e::crd::Kind;
use lmcache_e2e::json::assert_contains;
use lmcache_e2e::objects::{Res, Scope, condition, uid};
use lmcache_e2e::{Cluster, TempNamespace, settings};
use serde_json::{Value, json};

async fn scope(prefix: &str) -> anyhow::Result<(Scope, TempNamespace)> {
    settings::operator_health()?;
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, prefix).await?;
    Ok((Scope::new(&cluster, &namespace), namespace))
}

/// The endpoints engine.md §9.3 derives from the DaemonSet's pods, sorted by node then name.
fn expected_endpoints(pods: &[Value], ds_uid: &str, port: u16) -> Vec<Value> {
    let mut out: Vec<Value> = pods
        .iter()
        .filter(|p| {
            p["metadata"]["deletionTimestamp"].is_null()
                && p["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["controller"] == true && r["uid"] == ds_uid))
        })
        .map(|p| {
            let ready = p["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
            json!({
                "nodeName": p["spec"]["nodeName"],
                "hostIP": p["status"]["hostIP"],
                "podName": p["metadata"]["name"],
                "port": port,
                "ready": ready,
                "upToDate": true,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (a["nodeName"].as_str(), a["podName"].as_str()).cmp(&(b["nodeName"].as_str(), b["podName"].as_str()))
    });
    out
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn d69_d72_d75_running_status_endpoints_by_node_and_observed_generation() -> anyhow::Result<()> {
    let (s, _ns) = scope("d69-status").await?;
    let name = "my-cache";
    s.apply_cr(Kind::Engine, name, &Kind::Engine.minimal_spec())
        .await?;
    let engine = s.wait_running(Kind::Engine, name, 3).await?;
    let status = &engine["status"];

    // D69.
    assert_contains(
        status,
        &json!({"phase": "Running", "desiredInstances": 3, "readyInstances": 3, "observedGeneration": 1}),
    )?;
    let types: Vec<&Value> = status["conditions"]
        .as_array()
        .map(|c| c.iter().map(|c| &c["type"]).collect())
        .unwrap_or_default();
    assert_eq!(
        types,
        [
            "Available",
            "AllInstancesReady",
            "UpToDate",
            "ConfigValid",
            "Ready"
        ]
    );
    assert_contains(
        &condition(status, "UpToDate"),
        &json!({"status": "True", "reason": "Current", "message": "3/3 instances run the current template"}),
    )?;
    assert_eq!(status["updatedInstances"], 3);
    assert_contains(
        &condition(status, "Ready"),
        &json!({"status": "True", "reason": "Running", "message": "3/3 instances ready"}),
    )?;
    assert_contains(
        &condition(status, "Available"),
        &json!({"status": "True", "reason": "AtLeastOneReady", "message": "3/3 instances ready"}),
    )?;
    assert_contains(
        &condition(status, "AllInstancesReady"),
        &json!({"status": "True", "reason": "AllReady", "message": "3/3 instances ready"}),
    )?;
    assert_contains(
        &condition(status, "ConfigValid"),
        &json!({"status": "True", "reason": "Valid", "message": "Spec validation passed"}),
    )?;

    // D72: one endpoint per DaemonSet pod, sorted by node name, fields from the pods.
    let ds = s.must_get(Res::DaemonSet, name).await?;
    let ds_uid = uid(&ds);
    let endpoints = s
        .wait("endpoints equal to the DaemonSet's pods", || async {
            let pods = s
                .list(Res::Pod, &format!("app.kubernetes.io/instance={name}"))
                .await?;
            let expected = expected_endpoints(&pods, &ds_uid, 5555);
            let engine = s.must_get(Res::Cr(Kind::Engine), name).await?;
            let got = engine["status"]["endpoints"].clone();
            if got == json!(expected) {
                Ok(Some(expected))
            } else {
                anyhow::bail!("endpoints {got}, pods say {}", json!(expected))
            }
        })
        .await?;
    let nodes: Vec<&str> = endpoints.iter().filter_map(|e| e["nodeName"].as_str()).collect();
    assert_eq!(nodes, ["gpu-node-0", "gpu-node-1", "gpu-node-2"]);
    assert!(
        endpoints
            .iter()
            .all(|e| e["ready"] == true && e["hostIP"].as_str().is_some_and(|ip| !ip.is_empty()))
    );

    // D75: a spec change (generation 2) is reflected on the status and on every condition.
    s.apply_cr(
        Kind::Engine,
        name,
        &json!({"l1": {"sizeGB": 60}, "logLevel": "DEBUG"}),
    )
    .await?;
    let engine = s
        .wait_status(Kind::Engine, name, "observedGeneration 2", |st| {
            st["observedGeneration"] == 2
        })
        .await?;
    assert_eq!(engine["metadata"]["generation"], 2);
    let conditions = engine["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(conditions.len(), 5);
    for c in &conditions {
        assert_eq!(c["observedGeneration"], 2, "{c}");
    }
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn d71_no_matching_node_is_pending_with_zero_of_zero() -> anyhow::Result<()> {
    let (s, _ns) = scope("d71-nonode").await?;
    let name = "nowhere";
    s.apply_cr(
        Kind::Engine,
        name,
        &json!({"l1": {"sizeGB": 60}, "nodeSelector": {"pool": "none"}}),
    )
    .await?;
    // Wait until the DaemonSet controller has evaluated the nodes, so the 0 is its answer.
    s.wait("DaemonSet observed with 0 desired pods", || async {
        let ds = s.must_get(Res::DaemonSet, name).await?;
        Ok(
            (ds["status"]["observedGeneration"] == ds["metadata"]["generation"]
                && ds["status"]["desiredNumberScheduled"] == 0)
                .then_some(()),
        )
    })
    .await?;
    let engine = s
        .wait_status(Kind::Engine, name, "Pending 0/0", |st| {
            st["phase"] == "Pending" && st["desiredInstances"] == 0 && st["observedGeneration"] == 1
        })
        .await?;
    let status = &engine["status"];
    assert_eq!(status["readyInstances"], 0);
    assert_eq!(status["endpoints"].as_array().map(Vec::len).unwrap_or(0), 0);
    assert_contains(
        &condition(status, "Available"),
        &json!({"status": "False", "reason": "NoReadyInstances", "message": "0/0 instances ready"}),
    )?;
    assert_contains(
        &condition(status, "AllInstancesReady"),
        &json!({"status": "False", "reason": "NotAllReady", "message": "0/0 instances ready"}),
    )?;
    assert_contains(
        &condition(status, "ConfigValid"),
        &json!({"status": "True", "reason": "Valid"}),
    )?;
    assert!(
        s.list(Res::Pod, &format!("app.kubernetes.io/instance={name}"))
            .await?
            .is_empty()
    );
    Ok(())
}
