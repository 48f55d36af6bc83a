//! Status computation (engine.md §9, coordinator.md §6) and the status write, which happens only
//! when the computed status differs from the stored one.

use crate::children::STATUS_FIELD_MANAGER;
use crate::error::Error;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject};
use lmcache_api::constants::{conditions, labels, phases, reasons};
use lmcache_api::v1alpha1::{CoordinatorStatus, Endpoint, EngineStatus};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

/// Now, truncated to whole seconds (what the API server stores), so a status written once
/// compares equal when read back.
pub fn now() -> Time {
    let now = Timestamp::now();
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// Sets condition `type_` in `conditions`, keeping its `lastTransitionTime` unless its status
/// flips. A new condition is appended.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: i64,
    now: &Time,
) {
    let status = if status { "True" } else { "False" };
    let new = |last_transition_time: Time| Condition {
        last_transition_time,
        message: message.to_string(),
        observed_generation: Some(generation),
        reason: reason.to_string(),
        status: status.to_string(),
        type_: type_.to_string(),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let since = if existing.status == status {
                existing.last_transition_time.clone()
            } else {
                now.clone()
            };
            *existing = new(since);
        }
        None => conditions.push(new(now.clone())),
    }
}

/// The three conditions of a usable spec, in the order `Available`, `AllInstancesReady`,
/// `ConfigValid`; timestamps carried over from `old`.
fn ready_conditions(
    old: Option<&Vec<Condition>>,
    ready: i32,
    desired: i32,
    unavailable_reason: &str,
    message: &str,
    generation: i64,
    now: &Time,
) -> Vec<Condition> {
    let old = old.cloned().unwrap_or_default();
    let mut out = Vec::with_capacity(3);
    for (type_, status, reason) in [
        (
            conditions::AVAILABLE,
            ready >= 1,
            if ready >= 1 {
                reasons::AT_LEAST_ONE_READY
            } else {
                unavailable_reason
            },
        ),
        (
            conditions::ALL_INSTANCES_READY,
            desired > 0 && ready >= desired,
            if desired > 0 && ready >= desired {
                reasons::ALL_READY
            } else {
                reasons::NOT_ALL_READY
            },
        ),
    ] {
        out.extend(old.iter().find(|c| c.type_ == type_).cloned());
        set_condition(&mut out, type_, status, reason, message, generation, now);
    }
    out.extend(old.iter().find(|c| c.type_ == conditions::CONFIG_VALID).cloned());
    set_condition(
        &mut out,
        conditions::CONFIG_VALID,
        true,
        reasons::VALID,
        reasons::VALID_MESSAGE,
        generation,
        now,
    );
    out
}

/// `Pending` / `Running` / `Degraded` from desired and ready counts.
pub fn phase(desired: i32, ready: i32) -> &'static str {
    if desired == 0 {
        phases::PENDING
    } else if ready >= desired {
        phases::RUNNING
    } else if ready > 0 {
        phases::DEGRADED
    } else {
        phases::PENDING
    }
}

/// Engine status after a successful reconcile.
pub fn engine_ready_status(
    old: Option<&EngineStatus>,
    desired: i32,
    ready: i32,
    endpoints: Vec<Endpoint>,
    generation: i64,
    now: &Time,
) -> EngineStatus {
    let message = format!("{ready}/{desired} instances ready");
    EngineStatus {
        phase: Some(phase(desired, ready).to_string()),
        ready_instances: Some(ready),
        desired_instances: Some(desired),
        endpoints: Some(endpoints),
        conditions: Some(ready_conditions(
            old.and_then(|s| s.conditions.as_ref()),
            ready,
            desired,
            reasons::NO_READY_INSTANCES,
            &message,
            generation,
            now,
        )),
        observed_generation: Some(generation),
    }
}

/// Engine status when the spec is not usable: only `ConfigValid`, `phase: Failed` and
/// `observedGeneration` change; counts, endpoints and the other conditions keep their values.
pub fn engine_failed_status(
    old: Option<&EngineStatus>,
    reason: &str,
    message: &str,
    generation: i64,
    now: &Time,
) -> EngineStatus {
    let mut status = old.cloned().unwrap_or_default();
    let mut conds = status.conditions.take().unwrap_or_default();
    set_condition(
        &mut conds,
        conditions::CONFIG_VALID,
        false,
        reason,
        message,
        generation,
        now,
    );
    status.conditions = Some(conds);
    status.phase = Some(phases::FAILED.to_string());
    status.observed_generation = Some(generation);
    status
}

/// Coordinator status after a successful reconcile.
pub fn coordinator_ready_status(
    old: Option<&CoordinatorStatus>,
    replicas: i32,
    ready: i32,
    endpoint: String,
    generation: i64,
    now: &Time,
) -> CoordinatorStatus {
    let message = format!("{ready}/{replicas} replicas ready");
    CoordinatorStatus {
        phase: Some(phase(replicas, ready).to_string()),
        replicas: Some(replicas),
        ready_replicas: Some(ready),
        endpoint: Some(endpoint),
        observed_generation: Some(generation),
        conditions: Some(ready_conditions(
            old.and_then(|s| s.conditions.as_ref()),
            ready,
            replicas,
            reasons::NO_READY_REPLICAS,
            &message,
            generation,
            now,
        )),
    }
}

/// Coordinator status when the spec is not usable (see [`engine_failed_status`]).
pub fn coordinator_failed_status(
    old: Option<&CoordinatorStatus>,
    reason: &str,
    message: &str,
    generation: i64,
    now: &Time,
) -> CoordinatorStatus {
    let mut status = old.cloned().unwrap_or_default();
    let mut conds = status.conditions.take().unwrap_or_default();
    set_condition(
        &mut conds,
        conditions::CONFIG_VALID,
        false,
        reason,
        message,
        generation,
        now,
    );
    status.conditions = Some(conds);
    status.phase = Some(phases::FAILED.to_string());
    status.observed_generation = Some(generation);
    status
}

/// `status.endpoints` of engine `namespace/name`: its pods that carry the selector labels and
/// whose controller is the DaemonSet with `daemon_set_uid`, neither terminating nor finished,
/// sorted by node name, then pod name (engine.md §9.3).
pub fn engine_endpoints(
    pods: &[Arc<Pod>],
    namespace: &str,
    name: &str,
    selector: &std::collections::BTreeMap<String, String>,
    daemon_set_uid: Option<&str>,
    port: i32,
) -> Vec<Endpoint> {
    let Some(ds_uid) = daemon_set_uid else {
        return Vec::new();
    };
    let mut endpoints: Vec<Endpoint> = pods
        .iter()
        .filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace))
        .filter(|pod| {
            let pod_labels = pod.metadata.labels.as_ref();
            pod_labels
                .and_then(|l| l.get(labels::INSTANCE))
                .map(String::as_str)
                == Some(name)
                && selector
                    .iter()
                    .all(|(k, v)| pod_labels.and_then(|l| l.get(k)) == Some(v))
        })
        .filter(|pod| {
            pod.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.controller == Some(true) && r.uid == ds_uid)
        })
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .map(|pod| Endpoint {
            node_name: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .unwrap_or_default(),
            host_ip: pod
                .status
                .as_ref()
                .and_then(|s| s.host_ip.clone())
                .unwrap_or_default(),
            pod_name: pod.metadata.name.clone().unwrap_or_default(),
            port,
            ready: pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "True"),
        })
        .collect();
    endpoints.sort_by(|a, b| (&a.node_name, &a.pod_name).cmp(&(&b.node_name, &b.pod_name)));
    endpoints
}

/// Writes `new` to the status subresource with server-side apply — only when it differs from
/// `old` (the stored status). Returns whether a write was sent.
pub async fn write_status<S: Serialize + PartialEq>(
    client: &Client,
    resource: &ApiResource,
    namespace: &str,
    name: &str,
    old: Option<&S>,
    new: &S,
) -> Result<bool, Error> {
    if old == Some(new) {
        return Ok(false);
    }
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    let body = json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {"name": name, "namespace": namespace},
        "status": new,
    });
    api.patch_status(
        name,
        &PatchParams::apply(STATUS_FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use std::collections::BTreeMap;

    fn t(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    fn cond<'a>(s: &'a EngineStatus, type_: &str) -> &'a Condition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap()
    }

    #[test]
    fn phases_and_conditions_follow_counts() {
        let s = engine_ready_status(None, 3, 3, vec![], 1, &t(10));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Available").reason, "AtLeastOneReady");
        assert_eq!(cond(&s, "Available").message, "3/3 instances ready");
        assert_eq!(cond(&s, "AllInstancesReady").reason, "AllReady");
        assert_eq!(cond(&s, "ConfigValid").message, "Spec validation passed");
        let types: Vec<&str> = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, ["Available", "AllInstancesReady", "ConfigValid"]);

        let s = engine_ready_status(None, 3, 1, vec![], 1, &t(10));
        assert_eq!(s.phase.as_deref(), Some("Degraded"));
        assert_eq!(cond(&s, "Available").status, "True");
        assert_eq!(cond(&s, "AllInstancesReady").reason, "NotAllReady");
        assert_eq!(cond(&s, "AllInstancesReady").message, "1/3 instances ready");

        let s = engine_ready_status(None, 3, 0, vec![], 1, &t(10));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(cond(&s, "Available").reason, "NoReadyInstances");

        let s = engine_ready_status(None, 0, 0, vec![], 1, &t(10));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(cond(&s, "AllInstancesReady").status, "False");
        assert_eq!(cond(&s, "Available").message, "0/0 instances ready");

        let c = coordinator_ready_status(None, 0, 0, "http://c.ns.svc:9300".into(), 1, &t(1));
        assert_eq!(c.phase.as_deref(), Some("Pending"));
        let available = c
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Available")
            .unwrap();
        assert_eq!(available.reason, "NoReadyReplicas");
        assert_eq!(available.message, "0/0 replicas ready");
    }

    #[test]
    fn transition_time_changes_only_when_status_flips() {
        let first = engine_ready_status(None, 3, 0, vec![], 1, &t(10));
        let same = engine_ready_status(Some(&first), 3, 0, vec![], 2, &t(20));
        assert_eq!(cond(&same, "Available").last_transition_time, t(10));
        assert_eq!(cond(&same, "Available").observed_generation, Some(2));
        assert_eq!(same.observed_generation, Some(2));
        let flipped = engine_ready_status(Some(&same), 3, 1, vec![], 2, &t(30));
        assert_eq!(cond(&flipped, "Available").last_transition_time, t(30));
        assert_eq!(cond(&flipped, "AllInstancesReady").last_transition_time, t(10));
        // Recomputing with nothing changed gives an equal status: no write.
        assert_eq!(
            engine_ready_status(Some(&flipped), 3, 1, vec![], 2, &t(40)),
            flipped
        );
    }

    #[test]
    fn failure_keeps_counts_endpoints_and_other_conditions() {
        let ep = Endpoint {
            node_name: "n1".into(),
            host_ip: "h".into(),
            pod_name: "p".into(),
            port: 5555,
            ready: true,
        };
        let ok = engine_ready_status(None, 1, 1, vec![ep.clone()], 1, &t(10));
        let failed = engine_failed_status(Some(&ok), "ValidationFailed", "spec.l1.sizeGB: bad", 2, &t(20));
        assert_eq!(failed.phase.as_deref(), Some("Failed"));
        assert_eq!(failed.ready_instances, Some(1));
        assert_eq!(failed.endpoints, Some(vec![ep]));
        assert_eq!(failed.observed_generation, Some(2));
        let valid = cond(&failed, "ConfigValid");
        assert_eq!(
            (valid.status.as_str(), valid.reason.as_str()),
            ("False", "ValidationFailed")
        );
        assert_eq!(valid.last_transition_time, t(20));
        assert_eq!(cond(&failed, "Available"), cond(&ok, "Available"));

        let fresh = engine_failed_status(None, "NameConflict", "m", 1, &t(5));
        assert_eq!(fresh.conditions.as_ref().unwrap().len(), 1);
        assert_eq!(fresh.ready_instances, None);
    }

    fn pod(name: &str, node: &str, owner: &str, ready: bool) -> Arc<Pod> {
        let labels: BTreeMap<String, String> = [
            ("app.kubernetes.io/name", "lmcache"),
            ("app.kubernetes.io/instance", "cache"),
            ("app.kubernetes.io/managed-by", "lmcache-operator"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("team-a".into()),
                labels: Some(labels),
                owner_references: Some(vec![OwnerReference {
                    uid: owner.into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                host_ip: Some(format!("ip-{node}")),
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn endpoints_only_own_live_pods_sorted_by_node() {
        let selector: BTreeMap<String, String> = [
            ("app.kubernetes.io/name", "lmcache"),
            ("app.kubernetes.io/instance", "cache"),
            ("app.kubernetes.io/managed-by", "lmcache-operator"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut other_ns = (*pod("x", "n0", "ds", true)).clone();
        other_ns.metadata.namespace = Some("team-b".into());
        let mut terminating = (*pod("t", "n0", "ds", true)).clone();
        terminating.metadata.deletion_timestamp = Some(t(1));
        let mut done = (*pod("d", "n0", "ds", true)).clone();
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let pods = vec![
            pod("b", "n2", "ds", true),
            pod("a", "n1", "ds", false),
            pod("stray", "n1", "other-owner", true),
            Arc::new(other_ns),
            Arc::new(terminating),
            Arc::new(done),
        ];
        let eps = engine_endpoints(&pods, "team-a", "cache", &selector, Some("ds"), 5555);
        let got: Vec<(&str, &str, bool)> = eps
            .iter()
            .map(|e| (e.node_name.as_str(), e.pod_name.as_str(), e.ready))
            .collect();
        assert_eq!(got, [("n1", "a", false), ("n2", "b", true)]);
        assert_eq!(eps[0].host_ip, "ip-n1");
        assert_eq!(eps[0].port, 5555);
        assert!(engine_endpoints(&pods, "team-a", "cache", &selector, None, 5555).is_empty());
    }
}
