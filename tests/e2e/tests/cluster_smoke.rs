//! The harness itself: fake nodes exist, and the scheduler + kwok make DaemonSet pods Ready
//! (the path every engine behaviour depends on), with loopback-only fake IPs.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};
use lmcache_e2e::{Cluster, TIMEOUT, TempNamespace, wait};
use serde_json::json;
use std::collections::BTreeSet;
use std::net::IpAddr;

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn three_gpu_nodes_and_one_cpu_node_are_ready() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let nodes = Api::<Node>::all(cluster.client.clone())
        .list(&ListParams::default())
        .await?;
    let ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let gpu: BTreeSet<String> = nodes
        .items
        .iter()
        .filter(|n| {
            n.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("nvidia.com/gpu.present"))
                .is_some_and(|v| v == "true")
        })
        .filter(|n| ready(n))
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    assert_eq!(gpu.len(), 3, "ready GPU nodes: {gpu:?}");
    assert_eq!(nodes.items.iter().filter(|n| ready(n)).count(), 4);
    // Fake node addresses stay on loopback, so nothing can dial off the machine.
    for node in &nodes.items {
        for address in node
            .status
            .as_ref()
            .and_then(|s| s.addresses.clone())
            .unwrap_or_default()
        {
            if address.type_ == "InternalIP" {
                let ip: IpAddr = address.address.parse()?;
                assert!(ip.is_loopback(), "{:?} has {ip}", node.metadata.name);
            }
        }
    }
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn gpu_daemonset_gets_one_ready_pod_per_gpu_node() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, "smoke-ds").await?;
    let daemonsets = Api::<DaemonSet>::namespaced(cluster.client.clone(), namespace.name());
    // Shaped like an engine pod: hostIPC, privileged, runtimeClassName nvidia.
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "smoke"},
        "spec": {
            "selector": {"matchLabels": {"app": "smoke"}},
            "template": {
                "metadata": {"labels": {"app": "smoke"}},
                "spec": {
                    "nodeSelector": {"nvidia.com/gpu.present": "true"},
                    "runtimeClassName": "nvidia",
                    "hostIPC": true,
                    "containers": [{
                        "name": "c",
                        "image": "example.invalid/smoke:1",
                        "securityContext": {"privileged": true}
                    }]
                }
            }
        }
    }))?;
    daemonsets.create(&PostParams::default(), &ds).await?;
    let status = wait::until("DaemonSet smoke 3/3 ready", TIMEOUT, || async {
        let ds = daemonsets.get("smoke").await?;
        Ok(ds.status.filter(|s| {
            s.desired_number_scheduled == 3 && s.number_ready == 3 && s.number_available == Some(3)
        }))
    })
    .await?;
    assert_eq!(status.current_number_scheduled, 3);

    let pods = Api::<Pod>::namespaced(cluster.client.clone(), namespace.name())
        .list(&ListParams::default().labels("app=smoke"))
        .await?;
    let nodes: BTreeSet<String> = pods
        .items
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    assert_eq!(
        nodes,
        BTreeSet::from(["gpu-node-0".into(), "gpu-node-1".into(), "gpu-node-2".into()])
    );
    for pod in &pods.items {
        let status = pod.status.clone().unwrap_or_default();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        for ip in [status.pod_ip, status.host_ip].into_iter().flatten() {
            let ip: IpAddr = ip.parse()?;
            assert!(ip.is_loopback(), "fake IP {ip} outside 127.0.0.0/8");
        }
    }
    Ok(())
}
