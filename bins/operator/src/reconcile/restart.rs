//! Client restarts (`spec.updateStrategy.restartClients`, rollouts.md §4): after the engine pod
//! on a node was replaced and the new one is Ready, the vLLM pods on that node wired to the
//! engine that started before it became Ready are evicted (a vLLM pod does not recover from
//! losing its cache server; its controller recreates it).
//!
//! "Replaced" needs to know which engine pod a node had before. The operator remembers, per
//! engine and node, the engine pod the node's clients were started against ([`RestartTracker`]);
//! the first time it sees a node it takes the pod the stored status lists there, so a
//! replacement that began before an operator restart is still seen, as long as the status had
//! listed the old pod. The Eviction API respects the clients' PodDisruptionBudgets: a refused
//! eviction (429) is reported and retried with a backoff, never bypassed.

use crate::cached_pod::CachedPod;
use crate::client_pod::ClientPod;
use crate::context::Context;
use crate::error::Error;
use crate::eviction::{Evicted, evict};
use crate::keys::{Kind, Uid};
use crate::metrics::EvictionResult;
use crate::state::UidMap;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;
use lmcache_api::constants::reasons;
use lmcache_api::v1alpha1::Endpoint;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// First retry after a refused eviction; doubled per refusal up to [`MAX_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_secs(5);
/// Longest wait between eviction attempts of one node's clients.
pub const MAX_RETRY: Duration = Duration::from_secs(60);
/// While the client cache has not listed yet.
const CACHE_WAIT: Duration = Duration::from_secs(2);
/// Clients named in one Event.
const NAMED_CLIENTS: usize = 10;

/// What the operator knows of one node of one engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    /// The engine pod the node's clients were started against (or restarted for).
    pub serving: String,
    /// Evictions refused since the current replacement was seen (the backoff exponent).
    pub refused: u32,
    /// After a refusal: the engine pod of the round and the uids of its clients not evicted
    /// yet. A retry evicts only these, never a pod created since (such as a recreated client).
    pub remaining: Option<(String, Vec<String>)>,
    /// After a refusal: no attempt before this (another trigger of the engine, such as a pod
    /// status change, must not shorten the backoff).
    pub retry_at: Option<Instant>,
}

/// Per engine (by uid) and node: [`NodeState`].
#[derive(Debug, Default)]
pub struct RestartTracker {
    inner: UidMap<HashMap<String, NodeState>>,
}

impl RestartTracker {
    fn with<R>(&self, uid: &Uid, f: impl FnOnce(&mut HashMap<String, NodeState>) -> R) -> R {
        self.inner.with(|inner| f(inner.entry(uid.clone()).or_default()))
    }

    /// Forgets an engine (deleted, or no longer asking for restarts).
    pub fn forget(&self, uid: &Uid) {
        self.inner.remove(uid);
    }

    /// Keeps only the engines `keep` accepts.
    pub fn retain(&self, keep: impl Fn(&Uid) -> bool) {
        self.inner.retain(keep);
    }

    /// Engines tracked (tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.len()
    }
}

/// An engine pod that replaced another on its node and is Ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replacement {
    /// The node.
    pub node: String,
    /// The engine pod the node's clients were started against.
    pub old_pod: String,
    /// The Ready engine pod now on the node.
    pub new_pod: String,
    /// When it became Ready (its `Ready` condition's transition time).
    pub ready_since: Option<Time>,
    /// Evictions refused so far for this replacement.
    pub refused: u32,
    /// The clients still to evict, after a refusal (see [`NodeState::remaining`]).
    pub remaining: Option<Vec<String>>,
    /// No attempt before this (see [`NodeState::retry_at`]).
    pub retry_at: Option<Instant>,
}

/// The live engine pod of each node (the Ready one when a node has two).
fn pod_per_node(pods: &[Arc<CachedPod>]) -> HashMap<&str, &CachedPod> {
    let mut out: HashMap<&str, &CachedPod> = HashMap::new();
    for pod in pods.iter().filter(|p| p.is_live() && !p.node_name.is_empty()) {
        let slot = out.entry(pod.node_name.as_str()).or_insert(pod);
        if pod.ready && !slot.ready {
            *slot = pod;
        }
    }
    out
}

/// Updates `nodes` from the engine's current pods and returns the replacements to act on:
/// nodes whose live engine pod differs from the one their clients were started against and is
/// Ready. A node seen for the first time takes the pod `stored` (the status at the start of this
/// reconcile) lists there as the one before; without one, its current pod.
pub fn replacements(
    nodes: &mut HashMap<String, NodeState>,
    pods: &[Arc<CachedPod>],
    stored: &[Endpoint],
) -> Vec<Replacement> {
    let mut out = Vec::new();
    let mut current: Vec<(&str, &CachedPod)> = pod_per_node(pods).into_iter().collect();
    current.sort_by_key(|(node, _)| *node);
    for (node, pod) in current {
        let state = nodes.entry(node.to_string()).or_insert_with(|| NodeState {
            serving: stored
                .iter()
                .find(|e| e.node_name == node)
                .map_or_else(|| pod.name().to_string(), |e| e.pod_name.clone()),
            refused: 0,
            remaining: None,
            retry_at: None,
        });
        if state.serving == pod.name() || !pod.ready {
            continue;
        }
        out.push(Replacement {
            node: node.to_string(),
            old_pod: state.serving.clone(),
            new_pod: pod.name().to_string(),
            ready_since: pod.ready_since.clone(),
            refused: state.refused,
            // A round for an engine pod that was itself replaced since starts over.
            remaining: state
                .remaining
                .as_ref()
                .filter(|(for_pod, _)| for_pod == pod.name())
                .map(|(_, uids)| uids.clone()),
            retry_at: state.retry_at,
        });
    }
    out
}

/// The clients to evict for `replacement` (`clients` are already those of the engine on its
/// node): on a first attempt, those that started before the new engine pod became Ready — at
/// the API's one-second precision, so a client started in that same second counts as older
/// (it may have connected to the old pod; restarting it once is the safe side). Without a
/// readiness time every client is older than the Ready pod the operator sees now; a client
/// without a start time too. On a retry, the first attempt's clients that are left.
pub fn older_clients<'a>(clients: &'a [Arc<ClientPod>], replacement: &Replacement) -> Vec<&'a ClientPod> {
    clients
        .iter()
        .filter(|c| match &replacement.remaining {
            Some(remaining) => remaining.iter().any(|uid| uid == c.uid()),
            None => match (&c.started, &replacement.ready_since) {
                (Some(started), Some(ready)) => started.0 <= ready.0,
                _ => true,
            },
        })
        .map(|c| &**c)
        .collect()
}

/// How long to wait after `refused` refusals.
pub fn retry_after(refused: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(refused.saturating_sub(1)))
        .min(MAX_RETRY)
}

/// What an engine's reconcile passes to the restart step.
pub struct Engine<'a> {
    /// Its kind.
    pub kind: Kind,
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its uid.
    pub uid: &'a Uid,
    /// Its generation (Event de-duplication).
    pub generation: i64,
    /// The Event target.
    pub regarding: &'a ObjectReference,
}

/// The restart step: evicts the older clients of every node whose engine pod was replaced.
/// `Some(delay)` asks for another reconcile (a refused eviction, or a cache not listed yet).
pub async fn restart_clients(
    ctx: &Context,
    engine: &Engine<'_>,
    pods: &[Arc<CachedPod>],
    stored: &[Endpoint],
) -> Result<Option<Duration>, Error> {
    let found = ctx
        .restarts
        .with(engine.uid, |nodes| replacements(nodes, pods, stored));
    if found.is_empty() {
        return Ok(None);
    }
    if !ctx.clients.is_synced() {
        tracing::debug!("client pods not listed yet; restarts wait");
        return Ok(Some(CACHE_WAIT));
    }
    let mut again: Option<Duration> = None;
    let now = Instant::now();
    for replacement in found {
        if let Some(wait) = replacement.retry_at.and_then(|at| at.checked_duration_since(now))
            && !wait.is_zero()
        {
            again = Some(again.map_or(wait, |d| d.min(wait)));
            continue;
        }
        let clients = ctx
            .clients
            .clients_on(engine.kind, engine.namespace, engine.name, &replacement.node);
        let older = older_clients(&clients, &replacement);
        // Said once per replacement; retries are in the refusal warnings.
        if replacement.refused == 0 {
            tracing::info!(
                node = %replacement.node,
                old_pod = %replacement.old_pod,
                new_pod = %replacement.new_pod,
                clients = clients.len(),
                older = older.len(),
                "engine pod replaced; restarting the older clients on its node"
            );
        }
        let mut evicted = Vec::new();
        let mut refused = Vec::new();
        for client in older {
            match evict(ctx, client.namespace(), client.name(), client.uid()).await? {
                Evicted::Done => evicted.push(client.name().to_string()),
                Evicted::Refused(message) => refused.push((client, message)),
            }
        }
        if !evicted.is_empty() {
            let message = format!(
                "engine pod {} replaced {} on node {} and is Ready; evicted {} client pod{} started before: {}",
                replacement.new_pod,
                replacement.old_pod,
                replacement.node,
                evicted.len(),
                if evicted.len() == 1 { "" } else { "s" },
                name_list(&evicted),
            );
            tracing::info!(%message, "clients restarted");
            ctx.metrics
                .client_evictions(engine.kind, EvictionResult::Evicted, evicted.len());
            ctx.publish(
                engine.regarding,
                engine.generation,
                EventType::Normal,
                reasons::CLIENTS_RESTARTED,
                &message,
            );
        }
        if refused.is_empty() {
            ctx.restarts.with(engine.uid, |nodes| {
                nodes.insert(
                    replacement.node.clone(),
                    NodeState {
                        serving: replacement.new_pod.clone(),
                        refused: 0,
                        remaining: None,
                        retry_at: None,
                    },
                );
            });
            continue;
        }
        ctx.metrics
            .client_evictions(engine.kind, EvictionResult::Refused, refused.len());
        let attempts = replacement.refused + 1;
        let delay = retry_after(attempts);
        let remaining = refused.iter().map(|(c, _)| c.uid().to_string()).collect();
        ctx.restarts.with(engine.uid, |nodes| {
            if let Some(state) = nodes.get_mut(&replacement.node) {
                state.refused = attempts;
                state.remaining = Some((replacement.new_pod.clone(), remaining));
                state.retry_at = Some(now + delay);
            }
        });
        again = Some(again.map_or(delay, |d| d.min(delay)));
        for (pod, reason) in refused {
            // The retry delay is not in the message: one Event per refused pod, not per attempt.
            let message = format!(
                "cannot evict client pod {} on node {} after engine pod {} replaced {}: {reason}; retrying",
                pod.name(),
                replacement.node,
                replacement.new_pod,
                replacement.old_pod,
            );
            tracing::warn!(%message, retry_in_seconds = delay.as_secs(), "client restart refused");
            ctx.publish(
                engine.regarding,
                engine.generation,
                EventType::Warning,
                reasons::CLIENT_RESTART_BLOCKED,
                &message,
            );
        }
    }
    Ok(again)
}

fn name_list(names: &[String]) -> String {
    let mut out = names
        .iter()
        .take(NAMED_CLIENTS)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > NAMED_CLIENTS {
        out.push_str(", ...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn engine_pod(name: &str, node: &str, ready_at: Option<&str>, terminating: bool) -> Arc<CachedPod> {
        let mut meta = json!({"name": name, "namespace": "team-a"});
        if terminating {
            meta["deletionTimestamp"] = json!("2026-12-01T10:00:00Z");
        }
        let conditions = match ready_at {
            Some(at) => json!([{"type": "Ready", "status": "True", "lastTransitionTime": at}]),
            None => json!([{"type": "Ready", "status": "False"}]),
        };
        Arc::new(
            serde_json::from_value(json!({
                "metadata": meta,
                "spec": {"nodeName": node},
                "status": {"phase": "Running", "conditions": conditions}
            }))
            .unwrap(),
        )
    }

    fn client(name: &str, started: Option<&str>) -> Arc<ClientPod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}")},
                "spec": {"nodeName": "n0"},
                "status": {"startTime": started}
            }))
            .unwrap(),
        )
    }

    fn endpoint(node: &str, pod: &str) -> Endpoint {
        Endpoint {
            node_name: node.into(),
            host_ip: String::new(),
            pod_name: pod.into(),
            port: 5555,
            ready: true,
            up_to_date: true,
        }
    }

    const T0: &str = "2026-12-01T10:00:00Z";
    const T1: &str = "2026-12-01T10:05:00Z";

    #[test]
    fn a_new_engine_restarts_nothing() {
        let mut nodes = HashMap::new();
        let pods = [
            engine_pod("e-a", "n0", Some(T0), false),
            engine_pod("e-b", "n1", None, false),
        ];
        assert!(replacements(&mut nodes, &pods, &[]).is_empty());
        assert_eq!(nodes["n0"].serving, "e-a");
        assert_eq!(nodes["n1"].serving, "e-b");
        // The same pods again, now all Ready: still nothing.
        let ready = [
            engine_pod("e-a", "n0", Some(T0), false),
            engine_pod("e-b", "n1", Some(T0), false),
        ];
        assert!(replacements(&mut nodes, &ready, &[]).is_empty());
    }

    #[test]
    fn a_replaced_pod_counts_once_it_is_ready_and_only_on_its_node() {
        let mut nodes = HashMap::new();
        let before = [
            engine_pod("e-a", "n0", Some(T0), false),
            engine_pod("e-b", "n1", Some(T0), false),
        ];
        assert!(replacements(&mut nodes, &before, &[]).is_empty());
        // The DaemonSet controller deletes e-a and creates e-c on n0.
        let terminating = [
            engine_pod("e-a", "n0", Some(T0), true),
            engine_pod("e-b", "n1", Some(T0), false),
        ];
        assert!(replacements(&mut nodes, &terminating, &[]).is_empty());
        let starting = [
            engine_pod("e-c", "n0", None, false),
            engine_pod("e-b", "n1", Some(T0), false),
        ];
        assert!(
            replacements(&mut nodes, &starting, &[]).is_empty(),
            "not Ready yet"
        );
        let ready = [
            engine_pod("e-c", "n0", Some(T1), false),
            engine_pod("e-b", "n1", Some(T0), false),
        ];
        let found = replacements(&mut nodes, &ready, &[]);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (
                found[0].node.as_str(),
                found[0].old_pod.as_str(),
                found[0].new_pod.as_str()
            ),
            ("n0", "e-a", "e-c")
        );
        assert_eq!(
            found[0].ready_since.as_ref().map(|t| t.0.to_string()),
            Some(T1.to_string())
        );
        // Until the restart step records it, the replacement stays due.
        assert_eq!(replacements(&mut nodes, &ready, &[]).len(), 1);
    }

    #[test]
    fn a_node_first_seen_takes_the_stored_status_pod_as_the_one_before() {
        // The operator restarted while e-a on n0 was being replaced by e-c.
        let mut nodes = HashMap::new();
        let stored = [endpoint("n0", "e-a"), endpoint("n1", "e-b")];
        let now = [
            engine_pod("e-c", "n0", Some(T1), false),
            engine_pod("e-b", "n1", Some(T0), false),
        ];
        let found = replacements(&mut nodes, &now, &stored);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].old_pod.as_str(), found[0].new_pod.as_str()),
            ("e-a", "e-c")
        );
    }

    #[test]
    fn only_clients_started_before_the_new_pod_was_ready_are_older() {
        let mut replacement = Replacement {
            node: "n0".into(),
            old_pod: "e-a".into(),
            new_pod: "e-c".into(),
            ready_since: Some(serde_json::from_value(json!(T1)).unwrap()),
            refused: 0,
            remaining: None,
            retry_at: None,
        };
        let clients = [
            client("old", Some(T0)),
            client("same-second", Some(T1)),
            client("new", Some("2026-12-01T10:05:01Z")),
            client("unknown", None),
        ];
        let older = |r: &Replacement| -> Vec<String> {
            older_clients(&clients, r)
                .iter()
                .map(|c| c.name().to_string())
                .collect()
        };
        assert_eq!(older(&replacement), ["old", "same-second", "unknown"]);
        // A retry takes only the refused ones of the first attempt.
        replacement.remaining = Some(vec!["uid-same-second".into(), "uid-gone".into()]);
        assert_eq!(older(&replacement), ["same-second"]);
    }

    #[test]
    fn refusals_back_off_from_5_to_60_seconds() {
        let delays: Vec<u64> = (1..=6).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 60, 60]);
        assert_eq!(retry_after(100), MAX_RETRY);
    }

    #[test]
    fn the_tracker_is_keyed_by_engine_uid() {
        let tracker = RestartTracker::default();
        let pods = [engine_pod("e-a", "n0", Some(T0), false)];
        tracker.with(&Uid("a".into()), |n| replacements(n, &pods, &[]));
        tracker.with(&Uid("b".into()), |n| replacements(n, &pods, &[]));
        assert_eq!(tracker.len(), 2);
        tracker.forget(&Uid("a".into()));
        tracker.retain(|uid| uid.0 != "b");
        assert_eq!(tracker.len(), 0);
    }
}
