//! How the pod cache holds engine and coordinator pods: the few facts the status step reads,
//! decided when the pod arrives, not the pod.
//!
//! A decoded `Pod`, even with its spec emptied, is ≈ 2 KiB inline plus its strings; at 3000
//! pods that was 12 MiB of the operator's heap. A [`CachedPod`] is its identity, the values of
//! the three selector labels (not a label map: a map is a 0.5 KiB node even for three
//! entries) and the DaemonSet controller's two revision labels, its controller reference, its
//! node, host IP, phase, readiness (and since when) and — for a pod that is not ready — the one
//! reason the status names (lifecycle.md §3), computed here once.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use lmcache_api::constants::labels;
use serde::{Deserialize, Deserializer};

/// The part of a not-ready reason kept (the status cuts each pod's detail to 256 characters
/// anyway; a scheduler message can be much longer).
const REASON_CHARS: usize = 300;

/// Label the DaemonSet controller puts on its pods: the template generation they were made from.
pub const POD_TEMPLATE_GENERATION: &str = "pod-template-generation";
/// Label the DaemonSet controller puts on its pods: the ControllerRevision of their template.
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";

/// An engine or coordinator pod as cached.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CachedPod {
    /// Name, namespace, uid, resourceVersion (the watcher resumes from it), the controller
    /// reference and the deletion timestamp; no labels (see the next fields).
    metadata: ObjectMeta,
    /// The `app.kubernetes.io/name` label.
    app_name: Option<String>,
    /// The `app.kubernetes.io/instance` label.
    instance: Option<String>,
    /// `app.kubernetes.io/managed-by` is `lmcache-operator`.
    managed: bool,
    /// The DaemonSet controller's `pod-template-generation` label: the template generation the
    /// pod was created from (engine pods only).
    pub template_generation: Option<String>,
    /// The DaemonSet controller's `controller-revision-hash` label.
    pub revision_hash: Option<String>,
    /// `spec.nodeName` ("" before scheduling).
    pub node_name: String,
    /// `status.hostIP` ("" before the kubelet reports it).
    pub host_ip: String,
    /// `status.phase`, when reported.
    pub phase: Option<String>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// When the `Ready` condition last turned `True` (its `lastTransitionTime`), for a ready
    /// pod: client restarts evict the clients that started before it.
    pub ready_since: Option<Time>,
    /// Why it is not ready (see [`not_ready_reason`]); empty when ready.
    pub reason: String,
}

impl CachedPod {
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    /// `metadata.namespace`.
    pub fn namespace(&self) -> Option<&str> {
        self.metadata.namespace.as_deref()
    }

    /// Neither terminating nor finished.
    pub fn is_live(&self) -> bool {
        self.metadata.deletion_timestamp.is_none() && !finished(self.phase.as_deref())
    }

    /// Controlled by the object with `uid`.
    pub fn controlled_by(&self, uid: &str) -> bool {
        self.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.controller == Some(true) && r.uid == uid)
    }

    /// The value of label `key`, for the three selector labels (other labels are not kept).
    pub fn label(&self, key: &str) -> Option<&str> {
        match key {
            labels::NAME => self.app_name.as_deref(),
            labels::INSTANCE => self.instance.as_deref(),
            labels::MANAGED_BY => self.managed.then_some(labels::MANAGED_BY_VALUE),
            _ => None,
        }
    }

    /// Carries label `key` with `value` (see [`CachedPod::label`]).
    pub fn has_label(&self, key: &str, value: &str) -> bool {
        self.label(key) == Some(value)
    }
}

impl From<Pod> for CachedPod {
    fn from(pod: Pod) -> Self {
        let Pod {
            metadata: meta,
            spec,
            status,
        } = pod;
        let ready_condition = status.as_ref().and_then(ready_condition);
        let ready = ready_condition.is_some();
        let ready_since = ready_condition.and_then(|c| c.last_transition_time.clone());
        let reason = if ready {
            String::new()
        } else {
            truncate(not_ready_reason(status.as_ref()), REASON_CHARS)
        };
        let mut pod_labels = meta.labels.unwrap_or_default();
        let owner_references = meta
            .owner_references
            .map(|refs| refs.into_iter().filter(|r| r.controller == Some(true)).collect());
        let status = status.unwrap_or_default();
        Self {
            metadata: ObjectMeta {
                name: meta.name,
                namespace: meta.namespace,
                uid: meta.uid,
                resource_version: meta.resource_version,
                owner_references,
                deletion_timestamp: meta.deletion_timestamp,
                ..ObjectMeta::default()
            },
            app_name: pod_labels.remove(labels::NAME),
            instance: pod_labels.remove(labels::INSTANCE),
            managed: pod_labels.get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGED_BY_VALUE),
            template_generation: pod_labels.remove(POD_TEMPLATE_GENERATION),
            revision_hash: pod_labels.remove(CONTROLLER_REVISION_HASH),
            node_name: spec.and_then(|s| s.node_name).unwrap_or_default(),
            host_ip: status.host_ip.unwrap_or_default(),
            phase: status.phase,
            ready,
            ready_since,
            reason,
        }
    }
}

/// Decodes a `Pod` and keeps only what [`CachedPod`] holds.
impl<'de> Deserialize<'de> for CachedPod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Pod::deserialize(deserializer).map(Self::from)
    }
}

/// `Resource` for a type that is a cut-down view of a core/v1 Pod with its own `metadata`
/// field: the API path of pods, the view's metadata.
macro_rules! pod_view_resource {
    ($view:ty) => {
        impl kube::Resource for $view {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind((): &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed("Pod")
            }
            fn group((): &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed("")
            }
            fn version((): &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed("v1")
            }
            fn plural((): &()) -> std::borrow::Cow<'_, str> {
                std::borrow::Cow::Borrowed("pods")
            }
            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use pod_view_resource;

pod_view_resource!(CachedPod);

/// A pod whose `status.phase` is `Succeeded` or `Failed` runs no more (engine and client pods).
pub fn finished(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// The `Ready` condition, when it is `True`.
fn ready_condition(status: &PodStatus) -> Option<&PodCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "True")
}

/// The first thing that explains a not-ready pod: a waiting or terminated container's reason
/// (init containers first: they run first), an unschedulable pod's scheduler message, else the
/// `Ready` condition's reason or the phase.
fn not_ready_reason(status: Option<&PodStatus>) -> String {
    let Some(status) = status else {
        return "Pending".to_string();
    };
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    if let Some(reason) = containers.filter_map(container_reason).next() {
        return reason;
    }
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let unscheduled = conditions
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(c) = unscheduled {
        let reason = c.reason.as_deref().unwrap_or("Unschedulable");
        return match c.message.as_deref().filter(|m| !m.is_empty()) {
            Some(message) => format!("{reason}: {message}"),
            None => reason.to_string(),
        };
    }
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .and_then(|c| c.reason.clone())
        .or_else(|| status.phase.clone())
        .unwrap_or_else(|| "Pending".to_string())
}

fn container_reason(status: &ContainerStatus) -> Option<String> {
    let state = status.state.as_ref()?;
    if let Some(waiting) = &state.waiting {
        return waiting.reason.clone().filter(|r| !r.is_empty());
    }
    state
        .terminated
        .as_ref()
        .and_then(|t| t.reason.clone())
        .filter(|r| !r.is_empty() && r != "Completed")
}

/// `s` cut to `max` characters, with `...` when cut.
pub fn truncate(s: String, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;
    use serde_json::json;

    #[test]
    fn keeps_what_status_reads() {
        let pod: CachedPod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "n", "uid": "u", "resourceVersion": "5",
                         "labels": {"app.kubernetes.io/instance": "cache", "app.kubernetes.io/name": "lmcache",
                                    "app.kubernetes.io/managed-by": "lmcache-operator", "controller-revision-hash": "abc"},
                         "annotations": {"big": "x"}, "managedFields": [{"manager": "m"}],
                         "ownerReferences": [
                             {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "d", "uid": "ds", "controller": true},
                             {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "cm"}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i", "args": ["a"]}]},
            "status": {"phase": "Running", "hostIP": "1.2.3.4", "podIP": "9.9.9.9",
                       "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
                       "containerStatuses": [{"name": "c", "ready": false, "image": "i", "imageID": "id", "restartCount": 3,
                                              "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "long"}}}]}
        }))
        .unwrap();
        assert_eq!(pod.name(), "p");
        assert_eq!(pod.meta().resource_version.as_deref(), Some("5"));
        assert!(pod.meta().labels.is_none());
        assert_eq!(pod.label("app.kubernetes.io/instance"), Some("cache"));
        assert!(pod.has_label("app.kubernetes.io/name", "lmcache"));
        assert!(pod.has_label("app.kubernetes.io/managed-by", "lmcache-operator"));
        assert_eq!(pod.label("controller-revision-hash"), None);
        assert!(pod.controlled_by("ds") && !pod.controlled_by("cm"));
        assert_eq!(pod.meta().owner_references.as_ref().unwrap().len(), 1);
        assert!(pod.meta().annotations.is_none() && pod.meta().managed_fields.is_none());
        assert_eq!((pod.node_name.as_str(), pod.host_ip.as_str()), ("n1", "1.2.3.4"));
        assert!(!pod.ready && pod.is_live());
        assert_eq!(pod.reason, "CrashLoopBackOff");
    }

    #[test]
    fn a_ready_pod_has_no_reason_and_a_long_one_is_cut() {
        let ready: CachedPod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
                       "lastTransitionTime": "2026-12-01T10:00:00Z"}]}
        }))
        .unwrap();
        assert!(ready.ready && ready.reason.is_empty());
        assert_eq!(ready.ready_since.map(|t| t.0.as_second()), Some(1_796_119_200));
        let long: CachedPod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                       "reason": "Unschedulable", "message": "x".repeat(1000)}]}
        }))
        .unwrap();
        assert!(long.reason.starts_with("Unschedulable: xxx"));
        assert_eq!(long.reason.chars().count(), REASON_CHARS + 3);
    }
}
