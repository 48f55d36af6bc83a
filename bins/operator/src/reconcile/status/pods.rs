//! What the status says about individual pods: engine endpoints (engine.md §9.3) and why pods
//! are not ready (lifecycle.md §3).

use crate::cached_pod::{CachedPod, truncate};
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
    pods: &[Arc<CachedPod>],
    namespace: &str,
    selector: &BTreeMap<String, String>,
    controller_uid: Option<&str>,
) -> Vec<Arc<CachedPod>> {
    let mut out: Vec<Arc<CachedPod>> = pods
        .iter()
        .filter(|pod| pod.namespace() == Some(namespace))
        .filter(|pod| selector.iter().all(|(k, v)| pod.has_label(k, v)))
        .filter(|pod| controller_uid.is_none_or(|uid| pod.controlled_by(uid)))
        .filter(|pod| pod.is_live())
        .cloned()
        .collect();
    out.sort_by(|a, b| (a.node_name.as_str(), a.name()).cmp(&(b.node_name.as_str(), b.name())));
    out
}

/// `status.endpoints`: one entry per pod (already filtered and sorted by [`workload_pods`]),
/// with whether it runs the current template (`up_to_date`, same order).
pub fn endpoints(pods: &[Arc<CachedPod>], port: i32, up_to_date: &[bool]) -> Vec<Endpoint> {
    pods.iter()
        .zip(up_to_date.iter().copied().chain(std::iter::repeat(false)))
        .map(|(pod, up_to_date)| Endpoint {
            node_name: pod.node_name.clone(),
            host_ip: pod.host_ip.clone(),
            pod_name: pod.name().to_string(),
            port,
            ready: pod.ready,
            up_to_date,
        })
        .collect()
}

/// `node/pod: reason; ...` for the first [`NAMED_PODS`] pods that are not ready (a pod not yet
/// scheduled has no node part), then `; +N more`; empty when every pod is ready.
pub fn not_ready_detail(pods: &[Arc<CachedPod>]) -> String {
    let not_ready: Vec<&Arc<CachedPod>> = pods.iter().filter(|p| !p.ready).collect();
    let mut parts: Vec<String> = not_ready
        .iter()
        .take(NAMED_PODS)
        .map(|pod| {
            let who = match pod.node_name.as_str() {
                "" => pod.name().to_string(),
                node => format!("{node}/{}", pod.name()),
            };
            truncate(format!("{who}: {}", pod.reason), POD_DETAIL_CHARS)
        })
        .collect();
    if not_ready.len() > NAMED_PODS {
        parts.push(format!("+{} more", not_ready.len() - NAMED_PODS));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodSpec, PodStatus,
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
        let pods: Vec<Arc<CachedPod>> = [
            pod("b", "n2", "ds", true),
            pod("a", "n1", "ds", false),
            pod("stray", "n1", "other-owner", true),
            other_ns,
            terminating,
            done,
        ]
        .into_iter()
        .map(|p| Arc::new(CachedPod::from(p)))
        .collect();
        let own = workload_pods(&pods, "team-a", &selector(), Some("ds"));
        let eps = endpoints(&own, 5555, &[true, false]);
        let got: Vec<(&str, &str, bool, bool)> = eps
            .iter()
            .map(|e| (e.node_name.as_str(), e.pod_name.as_str(), e.ready, e.up_to_date))
            .collect();
        assert_eq!(got, [("n1", "a", false, true), ("n2", "b", true, false)]);
        assert_eq!(eps[0].host_ip, "ip-n1");
        assert_eq!(eps[0].port, 5555);
        // Without a controller filter (coordinators), the selector alone decides.
        assert_eq!(workload_pods(&pods, "team-a", &selector(), None).len(), 3);
    }

    #[test]
    fn not_ready_detail_names_three_pods_with_their_first_reason() {
        let long = format!("0/4 nodes are available: {}", "x".repeat(400));
        let pods: Vec<Arc<CachedPod>> = [
            pod("ok", "n0", "ds", true),
            waiting(pod("p1", "n1", "ds", false), "ImagePullBackOff"),
            unschedulable(pod("p2", "", "ds", false), &long),
            pod("p3", "n3", "ds", false),
            waiting(pod("p4", "n4", "ds", false), "CrashLoopBackOff"),
        ]
        .into_iter()
        .map(|p| Arc::new(CachedPod::from(p)))
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
