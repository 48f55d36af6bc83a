//! rollouts.md (behaviours.md §L) on the real control plane: the rendered update strategy (L1),
//! `OnDelete` leaving pods alone while status names the outdated nodes (L2), client restarts
//! evicting exactly the client on the replaced node and respecting a PodDisruptionBudget (L3,
//! checked in the audit log), and invalid `maxUnavailable` values rejected at apply (L5). L4 is
//! a reconcile test (`bins/operator/src/tests/reconcile.rs`).

use lmcache_e2e::audit::{AuditLog, Mark, OPERATOR_USER};
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

const INJECT_LABEL: &str = "lmcache.ai/lmcache-inject";
const ENGINE_ANNOTATION: &str = "lmcache.ai/lmcache-engine";
const INJECTED: &str = "lmcache.ai/lmcache-injected";

/// A one-replica vLLM Deployment on `node`, opted into the connection webhook for `engine`.
fn client_deployment(name: &str, node: &str, engine: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name, INJECT_LABEL: "true"},
                                           "annotations": {ENGINE_ANNOTATION: engine}},
                              "spec": {"nodeSelector": {"kubernetes.io/hostname": node},
                                       "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.33.0",
                                                       "args": ["vllm", "serve", "m", "--port", "8080"]}]}}}
    })
}

/// The live, Running pod of client Deployment `app`, once it is wired.
async fn running_client(s: &Scope, app: &str) -> anyhow::Result<Value> {
    s.wait(&format!("a Running, wired pod of {app}"), || async {
        let pods = s.list(Res::Pod, &format!("app={app}")).await?;
        let live: Vec<&Value> = pods
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        match live.as_slice() {
            [pod] if pod["status"]["phase"] == "Running" => {
                anyhow::ensure!(
                    pod["metadata"]["annotations"][INJECTED] == "true",
                    "pod of {app} not wired: {}",
                    pod["metadata"]["annotations"]
                );
                Ok(Some((*pod).clone()))
            }
            _ => Ok(None),
        }
    })
    .await
}

/// Deletes the engine pod on `node` and waits for its replacement there to be Ready; returns
/// the replacement.
async fn replace_engine_pod(s: &Scope, name: &str, node: &str) -> anyhow::Result<Value> {
    let selector = format!("app.kubernetes.io/instance={name}");
    let old = s
        .list(Res::Pod, &selector)
        .await?
        .into_iter()
        .find(|p| p["spec"]["nodeName"] == node && p["metadata"]["deletionTimestamp"].is_null())
        .ok_or_else(|| anyhow::anyhow!("no engine pod on {node}"))?;
    s.delete(Res::Pod, old["metadata"]["name"].as_str().unwrap_or_default())
        .await?;
    let old_uid = uid(&old);
    s.wait(&format!("a new Ready engine pod on {node}"), || async {
        Ok(s.list(Res::Pod, &selector).await?.into_iter().find(|p| {
            p["spec"]["nodeName"] == node
                && uid(p) != old_uid
                && p["metadata"]["deletionTimestamp"].is_null()
                && condition(&p["status"], "Ready")["status"] == "True"
        }))
    })
    .await
}

/// The operator's eviction requests since `mark`: (pod name, response code, received at).
fn evictions(audit: &AuditLog, mark: Mark) -> anyhow::Result<Vec<(String, i64, String)>> {
    Ok(audit
        .events_since(mark, OPERATOR_USER)?
        .iter()
        .filter(|e| {
            e["objectRef"]["subresource"] == "eviction"
                || e["objectRef"]["resource"] == "pods" && e["verb"] == "delete"
        })
        .map(|e| {
            (
                e["objectRef"]["name"].as_str().unwrap_or_default().to_string(),
                e["responseStatus"]["code"].as_i64().unwrap_or_default(),
                e["requestReceivedTimestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn l3_restart_clients_evicts_exactly_the_client_on_the_replaced_node() -> anyhow::Result<()> {
    settings::lmcache_webhook_url()?;
    let (s, _ns) = scope("l3-clients").await?;
    let audit = AuditLog::open()?;
    let name = "cache";
    s.apply_cr(
        Kind::Engine,
        name,
        &json!({"l1": {"sizeGB": 60}, "updateStrategy": {"type": "OnDelete", "restartClients": true}}),
    )
    .await?;
    s.wait_running(Kind::Engine, name, 3).await?;
    s.wait_daemonset_settled(name, 3).await?;
    // The webhook wires pods only once its cache has the engine: a probe that is never
    // scheduled (so it is on no node, and no client to restart) shows when.
    let mut n = 0;
    s.wait("the webhook to see the engine", || {
        n += 1;
        let probe = format!("probe-{n}");
        let s = &s;
        async move {
            let pod = lmcache_e2e::webhook_pods::create(
                s,
                &json!({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": probe, "labels": {INJECT_LABEL: "true"},
                                     "annotations": {ENGINE_ANNOTATION: name}},
                        "spec": {"nodeSelector": {"kubernetes.io/hostname": "no-such-node"},
                                 "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.33.0"}]}}),
            )
            .await?;
            Ok((pod["metadata"]["annotations"][INJECTED] == "true").then_some(()))
        }
    })
    .await?;
    s.apply_manifest(&client_deployment("client-a", "gpu-node-0", name))
        .await?;
    s.apply_manifest(&client_deployment("client-b", "gpu-node-1", name))
        .await?;
    let a = running_client(&s, "client-a").await?;
    let b = running_client(&s, "client-b").await?;
    let mark = audit.mark()?;

    // Replacing the engine pod on gpu-node-0 evicts client-a's pod, after the new pod is Ready.
    let replacement = replace_engine_pod(&s, name, "gpu-node-0").await?;
    let a_name = a["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let restarted = s
        .wait("ClientsRestarted", || async {
            Ok(s.events(name, "ClientsRestarted").await?.into_iter().next())
        })
        .await?;
    let message = restarted["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "on node gpu-node-0 and is Ready; evicted 1 client pod started before: {a_name}"
        )),
        "{message}"
    );
    let a2 = s
        .wait("client-a recreated by its Deployment", || async {
            let pod = running_client(&s, "client-a").await?;
            Ok((uid(&pod) != uid(&a)).then_some(pod))
        })
        .await?;
    // The node's other engine pods and client-b are untouched.
    assert_eq!(
        uid(&running_client(&s, "client-b").await?),
        uid(&b),
        "client-b was restarted"
    );
    let requests = evictions(&audit, mark)?;
    assert_eq!(
        requests
            .iter()
            .map(|(pod, code, _)| (pod.as_str(), *code))
            .collect::<Vec<_>>(),
        [(a_name.as_str(), 201)],
        "the operator evicted or deleted other pods: {requests:?}"
    );
    let ready_at = condition(&replacement["status"], "Ready")["lastTransitionTime"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        requests[0].2.as_str() >= ready_at.trim_end_matches('Z'),
        "evicted at {} before the new engine pod was Ready at {ready_at}",
        requests[0].2
    );

    // A PodDisruptionBudget that allows no disruption blocks the next restart: reported, not
    // bypassed, and retried until the budget allows it.
    s.apply_manifest(&json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "client-a"},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "client-a"}}}
    }))
    .await?;
    s.wait("the PDB's status", || async {
        let pdb = s
            .kubectl(&[
                "get",
                "pdb",
                "client-a",
                "-o",
                "jsonpath={.status.observedGeneration}/{.status.expectedPods}",
            ])
            .await?;
        Ok((pdb.trim() == "1/1").then_some(()))
    })
    .await?;
    let mark = audit.mark()?;
    replace_engine_pod(&s, name, "gpu-node-0").await?;
    let a2_name = a2["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let blocked = s
        .wait("ClientRestartBlocked", || async {
            Ok(s.events(name, "ClientRestartBlocked").await?.into_iter().next())
        })
        .await?;
    let message = blocked["message"].as_str().unwrap_or_default();
    assert_eq!(blocked["type"], "Warning");
    assert!(
        message.starts_with(&format!("cannot evict client pod {a2_name} on node gpu-node-0"))
            && message.contains("disruption budget"),
        "{message}"
    );
    // Retried (5 s, then 10 s) and refused each time; the pod keeps running.
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    assert_eq!(
        uid(&running_client(&s, "client-a").await?),
        uid(&a2),
        "the PDB was bypassed"
    );
    let refused = evictions(&audit, mark)?;
    assert!(
        refused.len() >= 2
            && refused
                .iter()
                .all(|(pod, code, _)| *pod == a2_name && *code == 429),
        "expected repeated refused evictions of {a2_name} only: {refused:?}"
    );
    // The retries back off (5 s, then 10 s), whatever else triggers the engine meanwhile.
    let at = |i: usize| -> anyhow::Result<i64> {
        let time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time =
            serde_json::from_value(json!(refused[i].2))?;
        Ok(time.0.as_millisecond())
    };
    assert!(at(1)? - at(0)? >= 4_500, "retried too soon: {refused:?}");
    // Once the budget is gone, the next retry evicts it.
    s.kubectl(&["delete", "pdb", "client-a"]).await?;
    s.wait("client-a restarted after the PDB went", || async {
        let pod = running_client(&s, "client-a").await?;
        Ok((uid(&pod) != uid(&a2)).then_some(()))
    })
    .await?;
    // Its own Event, with its own message (not folded into the first restart's).
    s.wait("ClientsRestarted naming the second client", || async {
        let events = s.events(name, "ClientsRestarted").await?;
        Ok(events
            .iter()
            .any(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.ends_with(&format!("started before: {a2_name}")))
            })
            .then_some(()))
    })
    .await?;
    assert_eq!(
        uid(&running_client(&s, "client-b").await?),
        uid(&b),
        "client-b was restarted"
    );
    let all = evictions(&audit, mark)?;
    assert!(
        all.iter().all(|(pod, _, _)| *pod == a2_name) && all.iter().any(|(_, code, _)| *code == 201),
        "{all:?}"
    );
    Ok(())
}
