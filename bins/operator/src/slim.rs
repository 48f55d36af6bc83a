//! What the watch caches keep of each object: only what the reconciler reads. Applied to every
//! watch event before it reaches a cache, so memory follows the fleet's size, not the size of
//! `managedFields`, `last-applied-configuration` or pod specs (issue: 1000 engines took 224 MiB,
//! two thirds of it `managedFields`).

use crate::children::FIELD_MANAGER;
use k8s_openapi::api::core::v1::{ContainerState, ContainerStatus, Pod, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

/// `kubectl apply`'s copy of the whole object, never read here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A custom resource: without `managedFields` and `last-applied-configuration`.
pub fn primary<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    drop_last_applied(meta);
}

/// A child: only the operator's own `managedFields` entry (the convergence check walks it) and
/// no `last-applied-configuration`.
pub fn child<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    if let Some(fields) = meta.managed_fields.as_mut() {
        fields.retain(|entry| {
            entry.manager.as_deref() == Some(FIELD_MANAGER)
                && entry.operation.as_deref() == Some("Apply")
                && entry.subresource.as_deref().is_none_or(str::is_empty)
        });
    }
    drop_last_applied(meta);
}

fn drop_last_applied(meta: &mut ObjectMeta) {
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// An engine or coordinator pod: identity, labels, owners, deletion; its node; and the status
/// fields the status step reads (phase, host IP, `Ready` and `PodScheduled` conditions, each
/// container's readiness and waiting/terminated reason). Everything else is dropped.
pub fn pod(pod: &mut Pod) {
    let meta = &mut pod.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.generate_name = None;
    meta.finalizers = None;
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    pod.spec = Some(PodSpec {
        node_name,
        containers: Vec::new(),
        ..PodSpec::default()
    });
    pod.status = pod.status.take().map(|status| PodStatus {
        phase: status.phase,
        host_ip: status.host_ip,
        conditions: status.conditions.map(|conditions| {
            conditions
                .into_iter()
                .filter(|c| matches!(c.type_.as_str(), "Ready" | "PodScheduled"))
                .map(|c| PodCondition {
                    last_probe_time: None,
                    ..c
                })
                .collect()
        }),
        container_statuses: status.container_statuses.map(containers),
        init_container_statuses: status.init_container_statuses.map(containers),
        ..PodStatus::default()
    });
}

fn containers(statuses: Vec<ContainerStatus>) -> Vec<ContainerStatus> {
    statuses
        .into_iter()
        .map(|c| ContainerStatus {
            name: c.name,
            ready: c.ready,
            state: c.state.map(|state| ContainerState {
                waiting: state
                    .waiting
                    .map(|w| k8s_openapi::api::core::v1::ContainerStateWaiting {
                        reason: w.reason,
                        message: None,
                    }),
                terminated: state
                    .terminated
                    .map(|t| k8s_openapi::api::core::v1::ContainerStateTerminated {
                        reason: t.reason,
                        exit_code: t.exit_code,
                        ..Default::default()
                    }),
                running: None,
            }),
            ..ContainerStatus::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSet;
    use serde_json::json;

    #[test]
    fn children_keep_only_our_managed_fields_entry() {
        let mut ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {
                "name": "x",
                "annotations": {LAST_APPLIED: "{...}", "keep": "1"},
                "managedFields": [
                    {"manager": "lmcache-operator", "operation": "Apply", "fieldsV1": {"f:spec": {}}},
                    {"manager": "lmcache-operator", "operation": "Apply", "subresource": "status"},
                    {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status"},
                    {"manager": "kubectl", "operation": "Update"}
                ]
            }
        }))
        .unwrap();
        child(&mut ds);
        let v = serde_json::to_value(&ds).unwrap();
        assert_eq!(v["metadata"]["managedFields"].as_array().unwrap().len(), 1);
        assert_eq!(
            v["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:spec": {}})
        );
        assert_eq!(v["metadata"]["annotations"], json!({"keep": "1"}));
    }

    #[test]
    fn pods_keep_what_status_reads() {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"a": "b"},
                         "annotations": {"big": "x"}, "managedFields": [{"manager": "m"}],
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "d", "uid": "ds", "controller": true}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i", "args": ["a"]}]},
            "status": {"phase": "Running", "hostIP": "1.2.3.4", "podIP": "9.9.9.9",
                       "conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}],
                       "containerStatuses": [{"name": "c", "ready": true, "image": "i", "imageID": "id", "restartCount": 3,
                                              "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "long"}}}]}
        }))
        .unwrap();
        pod(&mut p);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "n", "uid": "u", "labels": {"a": "b"},
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "d", "uid": "ds", "controller": true}]},
                "spec": {"nodeName": "n1", "containers": []},
                "status": {"phase": "Running", "hostIP": "1.2.3.4",
                           "conditions": [{"type": "Ready", "status": "True"}],
                           "containerStatuses": [{"name": "c", "ready": true, "image": "", "imageID": "", "restartCount": 0,
                                                  "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
            })
        );
    }
}
