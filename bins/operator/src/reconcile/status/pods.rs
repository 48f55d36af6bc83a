//! What the status says about individual pods: engine endpoints (engine.md §9.3) and why pods
//! are not ready (lifecycle.md §3).

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use lmcache_api::v1alpha1::Endpoint;
use std::collections::BTreeMap;
use std::sync::Arc;

/// At most this many pods are named in a not-ready message.
pub const NAMED_PODS: usize = 3;
/// Each pod's part of the message is cut to this many characters.
pub const POD_DETAIL_CHARS: usize = 256;

/// The live pods of a workload: in `namespace`, carrying every `selector` label (and
/// `instance: name`), controlled by `controller_uid` when given, neither terminating nor
/// finished; sorted by node name, then pod name.
pub fn workload_pods(
    pods: &[Arc<Pod>],
    namespace: &str,
    selector: &BTreeMap<String, String>,
    controller_uid: Option<&str>,
) -> Vec<Arc<Pod>> {
    let mut out: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace))
        .filter(|pod| {
            let pod_labels = pod.metadata.labels.as_ref();
            selector
                .iter()
                .all(|(k, v)| pod_labels.and_then(|l| l.get(k)) == Some(v))
        })
        .filter(|pod| {
            controller_uid.is_none_or(|uid| {
                pod.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.controller == Some(true) && r.uid == uid)
            })
        })
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| !matches!(phase(pod), Some("Succeeded" | "Failed")))
        .cloned()
        .collect();
    out.sort_by(|a, b| (node(a), name(a)).cmp(&(node(b), name(b))));
    out
}

/// `status.endpoints`: one entry per pod (already filtered and sorted by [`workload_pods`]).
pub fn endpoints(pods: &[Arc<Pod>], port: i32) -> Vec<Endpoint> {
    pods.iter()
        .map(|pod| Endpoint {
            node_name: node(pod).to_string(),
            host_ip: pod
                .status
                .as_ref()
                .and_then(|s| s.host_ip.clone())
                .unwrap_or_default(),
            pod_name: name(pod).to_string(),
            port,
            ready: is_ready(pod),
        })
        .collect()
}

/// `node/pod: reason; ...` for the first [`NAMED_PODS`] pods that are not ready (a pod not yet
/// scheduled has no node part), then `; +N more`; empty when every pod is ready.
pub fn not_ready_detail(pods: &[Arc<Pod>]) -> String {
    let not_ready: Vec<&Arc<Pod>> = pods.iter().filter(|p| !is_ready(p)).collect();
    let mut parts: Vec<String> = not_ready
        .iter()
        .take(NAMED_PODS)
        .map(|pod| {
            let who = match node(pod) {
                "" => name(pod).to_string(),
                node => format!("{node}/{}", name(pod)),
            };
            truncate(&format!("{who}: {}", reason(pod)), POD_DETAIL_CHARS)
        })
        .collect();
    if not_ready.len() > NAMED_PODS {
        parts.push(format!("+{} more", not_ready.len() - NAMED_PODS));
    }
    parts.join("; ")
}

/// The pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// The first thing that explains a not-ready pod: a waiting or terminated container's reason
/// (init containers first: they run first), an unschedulable pod's scheduler message, else the
/// `Ready` condition's reason or the phase.
fn reason(pod: &Pod) -> String {
    let Some(status) = pod.status.as_ref() else {
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

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
}

fn node(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, PodCondition, PodSpec, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
    use k8s_openapi::jiff::Timestamp;

    fn selector() -> BTreeMap<String, String> {
        [
            ("app.kubernetes.io/name", "lmcache"),
            ("app.kubernetes.io/instance", "cache"),
            ("app.kubernetes.io/managed-by", "lmcache-operator"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn pod(name: &str, node: &str, owner: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("team-a".into()),
                labels: Some(selector()),
                owner_references: Some(vec![OwnerReference {
                    uid: owner.into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                host_ip: Some(format!("ip-{node}")),
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    reason: (!ready).then(|| "ContainersNotReady".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn waiting(mut p: Pod, reason: &str) -> Pod {
        p.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            name: "lmcache".into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    message: Some("long message".into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        p
    }

    fn unschedulable(mut p: Pod, message: &str) -> Pod {
        p.status = Some(PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some(message.into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        p
    }

    #[test]
    fn endpoints_only_own_live_pods_sorted_by_node() {
        let mut other_ns = pod("x", "n0", "ds", true);
        other_ns.metadata.namespace = Some("team-b".into());
        let mut terminating = pod("t", "n0", "ds", true);
        terminating.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
        let mut done = pod("d", "n0", "ds", true);
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let pods: Vec<Arc<Pod>> = [
            pod("b", "n2", "ds", true),
            pod("a", "n1", "ds", false),
            pod("stray", "n1", "other-owner", true),
            other_ns,
            terminating,
            done,
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let own = workload_pods(&pods, "team-a", &selector(), Some("ds"));
        let eps = endpoints(&own, 5555);
        let got: Vec<(&str, &str, bool)> = eps
            .iter()
            .map(|e| (e.node_name.as_str(), e.pod_name.as_str(), e.ready))
            .collect();
        assert_eq!(got, [("n1", "a", false), ("n2", "b", true)]);
        assert_eq!(eps[0].host_ip, "ip-n1");
        assert_eq!(eps[0].port, 5555);
        // Without a controller filter (coordinators), the selector alone decides.
        assert_eq!(workload_pods(&pods, "team-a", &selector(), None).len(), 3);
    }

    #[test]
    fn not_ready_detail_names_three_pods_with_their_first_reason() {
        let long = format!("0/4 nodes are available: {}", "x".repeat(400));
        let pods: Vec<Arc<Pod>> = [
            pod("ok", "n0", "ds", true),
            waiting(pod("p1", "n1", "ds", false), "ImagePullBackOff"),
            unschedulable(pod("p2", "", "ds", false), &long),
            pod("p3", "n3", "ds", false),
            waiting(pod("p4", "n4", "ds", false), "CrashLoopBackOff"),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let detail = not_ready_detail(&pods);
        let parts: Vec<&str> = detail.split("; ").collect();
        assert_eq!(parts[0], "n1/p1: ImagePullBackOff");
        assert!(
            parts[1].starts_with("p2: Unschedulable: 0/4 nodes are available: xxx"),
            "{}",
            parts[1]
        );
        assert_eq!(parts[1].chars().count(), POD_DETAIL_CHARS + 3);
        assert_eq!(parts[2], "n3/p3: ContainersNotReady");
        assert_eq!(parts[3], "+1 more");
        assert_eq!(parts.len(), 4);
        assert_eq!(not_ready_detail(&pods[..1]), "");
    }
}
