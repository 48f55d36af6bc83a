//! Operator behaviours against the real control plane (the operator runs as a local process
//! started by `cargo xtask e2e`; kwok makes the engine pods Ready on the 3 fake GPU nodes).

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::Api;
use lmcache_e2e::crd::Kind;
use lmcache_e2e::json::assert_contains;
use lmcache_e2e::{Cluster, TIMEOUT, TempNamespace, settings, wait};
use serde_json::{Value, json};

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn b23_and_d69_minimal_engine_gets_its_children_and_runs_on_three_nodes() -> anyhow::Result<()> {
    settings::operator_health()?;
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, "b23").await?;
    let ns = namespace.name();
    cluster
        .kubectl
        .apply(
            ns,
            &Kind::Engine.manifest("my-cache", &Kind::Engine.minimal_spec()),
        )
        .await?
        .ok()?;

    // B23: the four children exist.
    let client = cluster.client.clone();
    wait::until("DaemonSet, Services and ConfigMap of my-cache", TIMEOUT, || {
        let client = client.clone();
        async move {
            let ds = Api::<DaemonSet>::namespaced(client.clone(), ns)
                .get_opt("my-cache")
                .await?;
            let services = Api::<Service>::namespaced(client.clone(), ns);
            let svc = services.get_opt("my-cache").await?;
            let metrics = services.get_opt("my-cache-metrics").await?;
            let cm = Api::<ConfigMap>::namespaced(client, ns)
                .get_opt("my-cache-connection")
                .await?;
            Ok((ds.is_some() && svc.is_some() && metrics.is_some() && cm.is_some()).then_some(()))
        }
    })
    .await?;

    // D69: with 3 of 3 pods ready the engine is Running.
    let status: Value = wait::until("my-cache Running with 3/3 ready", TIMEOUT, || async {
        let engine = cluster.kubectl.get_json(ns, &["lmc", "my-cache"]).await?;
        let status = engine["status"].clone();
        Ok((status["phase"] == "Running" && status["readyInstances"] == 3).then_some(status))
    })
    .await?;
    assert_contains(&status, &json!({"desiredInstances": 3, "readyInstances": 3}))?;
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let condition = |t: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == t)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_contains(
        &condition("Available"),
        &json!({"status": "True", "reason": "AtLeastOneReady", "message": "3/3 instances ready"}),
    )?;
    assert_contains(
        &condition("AllInstancesReady"),
        &json!({"status": "True", "reason": "AllReady"}),
    )?;
    assert_contains(
        &condition("ConfigValid"),
        &json!({"status": "True", "reason": "Valid"}),
    )?;
    Ok(())
}
