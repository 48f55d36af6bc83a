//! engine.md §10 "New GPU nodes" on the real control plane: a node that starts matching the
//! engine's nodeSelector gets an engine pod and `desiredInstances` follows; when it is deleted,
//! its pod is collected and the engine shrinks back (lifecycle.md §7).
//!
//! Isolation: this file holds a single test (test binaries run one after another, tests within
//! a binary in parallel). It never changes what the default selector
//! `nvidia.com/gpu.present=true` matches: the three GPU nodes get an extra label unique to this
//! run, the added fake node carries only that label (no `nvidia.com/gpu.present`), and the
//! engine selects on that label alone. A guard removes the label and the node even when the
//! test fails.

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use lmcache_e2e::crd::Kind;
use lmcache_e2e::objects::{Res, Scope, condition};
use lmcache_e2e::{Cluster, TempNamespace, settings};
use serde_json::json;
use std::process::{Command, Stdio};

const GPU_NODES: [&str; 3] = ["gpu-node-0", "gpu-node-1", "gpu-node-2"];
const POOL_LABEL: &str = "e2e.lmcache.ai/new-node-pool";

/// Removes the pool label from the GPU nodes and deletes the added node (with any pod left on
/// it, since no kubelet would ever confirm that pod's deletion).
struct NodeGuard {
    extra: String,
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        let (Ok(kubectl), Ok(kubeconfig)) = (settings::kubectl(), settings::kubeconfig()) else {
            return;
        };
        let run = |args: &[&str]| {
            let _ = Command::new(&kubectl)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        let selector = format!("spec.nodeName={}", self.extra);
        run(&[
            "delete",
            "pods",
            "-A",
            "--field-selector",
            &selector,
            "--force",
            "--grace-period=0",
            "--ignore-not-found",
        ]);
        run(&["delete", "node", &self.extra, "--ignore-not-found"]);
        let unlabel = format!("{POOL_LABEL}-");
        let mut args = vec!["label", "node"];
        args.extend(GPU_NODES);
        args.push(&unlabel);
        run(&args);
    }
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn d_a_node_that_starts_matching_gets_a_pod_and_desired_becomes_four() -> anyhow::Result<()> {
    settings::operator_health()?;
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, "d-newnode").await?;
    let s = Scope::new(&cluster, &namespace);
    let pool = s.ns.clone();
    let extra = format!("e2e-extra-{}", s.ns.rsplit('-').next().unwrap_or("node"));
    let _guard = NodeGuard { extra: extra.clone() };

    let nodes = Api::<Node>::all(cluster.client.clone());
    let label = json!({"metadata": {"labels": {POOL_LABEL: pool}}});
    for node in GPU_NODES {
        nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(&label))
            .await?;
    }
    let name = "pool-cache";
    s.apply_cr(
        Kind::Engine,
        name,
        &json!({"l1": {"sizeGB": 60}, "nodeSelector": {POOL_LABEL: pool}}),
    )
    .await?;
    s.wait_running(Kind::Engine, name, 3).await?;

    // A fake node shaped like the harness' kwok nodes (xtask/src/cluster/config.rs), with only the
    // pool label and the harness' fake capacity.
    let node: Node = serde_json::from_value(json!({
        "metadata": {
            "name": extra,
            "labels": {
                "e2e.kwok/fake": "true",
                "kubernetes.io/hostname": extra,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                POOL_LABEL: pool,
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "kwok.x-k8s.io/node": "fake",
            }
        },
        "spec": {}
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    let resources = json!({"cpu": "1000", "memory": "64Ti", "pods": "1000"});
    s.wait("the added node Ready with capacity", || async {
        // kwok initialises the node status first; the capacity is set afterwards (as the
        // harness does) and re-applied until it sticks.
        nodes
            .patch_status(
                &extra,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": {"capacity": resources, "allocatable": resources}})),
            )
            .await?;
        let node = serde_json::to_value(nodes.get(&extra).await?)?;
        let ready = node["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        Ok((ready && node["status"]["allocatable"]["memory"] == "64Ti").then_some(()))
    })
    .await?;

    let engine = s.wait_running(Kind::Engine, name, 4).await?;
    let status = &engine["status"];
    assert_eq!(condition(status, "Available")["message"], "4/4 instances ready");
    let nodes_in_status: Vec<&str> = status["endpoints"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["nodeName"].as_str()).collect())
        .unwrap_or_default();
    let mut expected: Vec<&str> = GPU_NODES.to_vec();
    expected.push(&extra);
    expected.sort();
    assert_eq!(nodes_in_status, expected);
    let pods = s
        .list(Res::Pod, &format!("app.kubernetes.io/instance={name}"))
        .await?;
    assert!(
        pods.iter().any(|p| p["spec"]["nodeName"] == extra.as_str()),
        "no engine pod on {extra}"
    );

    // lifecycle.md §7: the node leaves. The pod garbage collector removes its pod (as in a real
    // cluster; kwok no longer manages the node) and the engine shrinks back to 3/3.
    nodes.delete(&extra, &Default::default()).await?;
    let engine = s
        .wait_status(Kind::Engine, name, "back to 3/3 with 3 endpoints", |st| {
            st["desiredInstances"] == 3
                && st["readyInstances"] == 3
                && st["endpoints"].as_array().is_some_and(|e| e.len() == 3)
                && st["phase"] == "Running"
        })
        .await?;
    let nodes_in_status: Vec<&str> = engine["status"]["endpoints"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["nodeName"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(nodes_in_status, GPU_NODES);
    s.wait("the pod of the deleted node collected", || async {
        let pods = s
            .list(Res::Pod, &format!("app.kubernetes.io/instance={name}"))
            .await?;
        Ok((!pods.iter().any(|p| p["spec"]["nodeName"] == extra.as_str())).then_some(()))
    })
    .await?;
    Ok(())
}
