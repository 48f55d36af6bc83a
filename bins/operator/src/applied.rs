//! Children the operator applied whose watch event has not arrived yet (kube-controller-manager
//! keeps such "expectations" for the same reason).
//!
//! A reconcile that follows an apply closely (queued by another child's event while the apply
//! ran) can find the child missing from its cache, or older there than what the API server
//! already answered: the watch lags the apply's response. It would confirm the miss with a GET,
//! find a child that is not converged, apply it again (a no-op write) and announce `Updated` on
//! a child it had just created. The bench saw that for one new engine in five, nearly always its
//! lookup Service (the ClusterIP allocation makes its event the last of the four). So each
//! applied child's response is kept, packed like the cache's objects, until the cache holds that
//! resourceVersion or a later one; a deletion, a relist of the kind or [`EXPECTATION_TTL`] also
//! end it. [`crate::context::Stores::child`] prefers it to an older cached object meanwhile.
//!
//! "Later" compares resourceVersions as numbers, which Kubernetes guarantees for objects of one
//! kind since 1.35 (KEP-5504, comparable resource versions; etcd revisions before that). The
//! watch may deliver a version before the apply's response is read, and the DaemonSet
//! controller's status updates follow at once, so equality alone would miss the cache catching
//! up and keep serving the response, with its empty status, to the status step. A version
//! that is not a plain number ends the expectation: the cache is trusted.
//!
//! Entries live for one watch delay (well under a second), so only the applies in flight are
//! held: a few KiB, not a second cache.

use crate::children::ChildKind;
use crate::packed::Packed;
use kube::Resource;
use kube::core::DynamicObject;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// How long an apply's response stands in for an event that never came (a watch that relisted
/// past it): after this the cache is trusted again, at worst for one no-op apply.
pub const EXPECTATION_TTL: Duration = Duration::from_secs(30);

/// `(kind, namespace, name)`: namespaced, as every key of the operator (MT-2).
type ChildKey = (ChildKind, String, String);

struct Expected {
    resource_version: Option<String>,
    object: Packed<DynamicObject>,
    at: Instant,
}

/// The applied children whose watch event is still due. Cheap to share behind an `Arc`.
#[derive(Default)]
pub struct AppliedChildren {
    inner: Mutex<HashMap<ChildKey, Expected>>,
}

fn key(kind: ChildKind, namespace: &str, name: &str) -> ChildKey {
    (kind, namespace.to_string(), name.to_string())
}

fn resource_version(json: &Value) -> Option<&str> {
    json.pointer("/metadata/resourceVersion").and_then(Value::as_str)
}

/// `seen` is at least `applied`: the cache reflects the apply. Versions that are not plain
/// decimal numbers count as caught up (see the module documentation).
fn caught_up(seen: Option<&str>, applied: Option<&str>) -> bool {
    let number = |rv: Option<&str>| rv.and_then(|rv| rv.parse::<u64>().ok());
    match (number(seen), number(applied)) {
        (Some(seen), Some(applied)) => seen >= applied,
        _ => true,
    }
}

impl AppliedChildren {
    fn lock(&self) -> MutexGuard<'_, HashMap<ChildKey, Expected>> {
        // Every update leaves the map consistent: a poisoned lock is taken over.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers the API server's answer to an apply of `kind namespace/name`.
    pub fn record(&self, kind: ChildKind, namespace: &str, name: &str, response: DynamicObject) {
        let resource_version = response.meta().resource_version.clone();
        match Packed::pack(response) {
            Ok(object) => {
                self.lock().insert(
                    key(kind, namespace, name),
                    Expected {
                        resource_version,
                        object,
                        at: Instant::now(),
                    },
                );
            }
            // Cannot happen for an object that was just decoded; the cache is then used as is.
            Err(error) => tracing::debug!(%error, "apply response not kept"),
        }
    }

    /// The child as the operator last knows it: the apply's response while the watch has not
    /// delivered it, else `cached`. A cached object at the response's resourceVersion (a no-op
    /// apply sends no event) ends the expectation.
    pub fn current(
        &self,
        kind: ChildKind,
        namespace: &str,
        name: &str,
        cached: Option<Value>,
    ) -> Option<Value> {
        let mut map = self.lock();
        let key = key(kind, namespace, name);
        let Some(expected) = map.get(&key) else {
            return cached;
        };
        let cache_is_current = cached
            .as_ref()
            .is_some_and(|c| caught_up(resource_version(c), expected.resource_version.as_deref()));
        if cache_is_current || expected.at.elapsed() >= EXPECTATION_TTL {
            map.remove(&key);
            return cached;
        }
        expected.object.to_json().or(cached)
    }

    /// The watch delivered `kind namespace/name` at `resource_version`: from the applied version
    /// on, the cache holds it (the hook runs after the cache was updated).
    pub fn observed(&self, kind: ChildKind, namespace: &str, name: &str, resource_version: Option<&str>) {
        let mut map = self.lock();
        let key = key(kind, namespace, name);
        if map
            .get(&key)
            .is_some_and(|e| caught_up(resource_version, e.resource_version.as_deref()))
        {
            map.remove(&key);
        }
    }

    /// The watch delivered the deletion of `kind namespace/name`.
    pub fn deleted(&self, kind: ChildKind, namespace: &str, name: &str) {
        self.lock().remove(&key(kind, namespace, name));
    }

    /// The watch of `kind` relisted: its events since the apply may have been folded into the
    /// list, so the cache is trusted again.
    pub fn relisted(&self, kind: ChildKind) {
        self.lock().retain(|(k, _, _), _| *k != kind);
    }

    /// Entries held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn response(namespace: &str, name: &str, rv: &str, image: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "uid": "u", "resourceVersion": rv},
            "spec": {"selector": {"app": image}}
        }))
        .unwrap()
    }

    fn cached(rv: &str) -> Option<Value> {
        Some(json!({"metadata": {"name": "cache", "namespace": "a", "resourceVersion": rv}, "spec": {}}))
    }

    const S: ChildKind = ChildKind::Service;

    #[test]
    fn the_response_stands_in_until_the_watch_delivers_it() {
        let applied = AppliedChildren::default();
        assert_eq!(applied.current(S, "a", "cache", None), None);
        applied.record(S, "a", "cache", response("a", "cache", "10", "new"));
        // Missing from the cache, or older there: the response.
        for stale in [None, cached("9")] {
            let got = applied.current(S, "a", "cache", stale).unwrap();
            assert_eq!(got["spec"]["selector"]["app"], "new");
            assert_eq!(got["metadata"]["resourceVersion"], "10");
        }
        // An older event changes nothing; the applied one ends the expectation.
        applied.observed(S, "a", "cache", Some("9"));
        assert_eq!(applied.len(), 1);
        applied.observed(S, "a", "cache", Some("10"));
        assert_eq!(applied.len(), 0);
        assert_eq!(applied.current(S, "a", "cache", cached("10")), cached("10"));
        // So does a later one: the applied version's event came before the response was read.
        applied.record(S, "a", "cache", response("a", "cache", "10", "new"));
        applied.observed(S, "a", "cache", Some("12"));
        assert_eq!(applied.len(), 0);
    }

    #[test]
    fn a_cache_ahead_of_the_response_is_current() {
        // The watch delivered the apply (and the DaemonSet controller's status update after it)
        // before the response was recorded: no event will end the expectation, the cache does.
        let applied = AppliedChildren::default();
        applied.record(S, "a", "cache", response("a", "cache", "10", "new"));
        assert_eq!(applied.current(S, "a", "cache", cached("11")), cached("11"));
        assert_eq!(applied.len(), 0);
        // Versions are compared as numbers, not as text ("9" < "10").
        applied.record(S, "a", "cache", response("a", "cache", "10", "new"));
        assert_ne!(applied.current(S, "a", "cache", cached("9")), cached("9"));
        // A version that is not a number: the cache is trusted.
        assert_eq!(applied.current(S, "a", "cache", cached("v9")), cached("v9"));
        assert_eq!(applied.len(), 0);
    }

    #[test]
    fn a_cache_at_the_applied_version_ends_it() {
        // A no-op apply: same resourceVersion, no event will come.
        let applied = AppliedChildren::default();
        applied.record(S, "a", "cache", response("a", "cache", "10", "new"));
        assert_eq!(applied.current(S, "a", "cache", cached("10")), cached("10"));
        assert_eq!(applied.len(), 0);
    }

    #[test]
    fn deletion_relist_and_age_end_it() {
        let applied = AppliedChildren::default();
        applied.record(S, "a", "cache", response("a", "cache", "10", "new"));
        applied.deleted(S, "a", "cache");
        assert_eq!(applied.current(S, "a", "cache", None), None);

        applied.record(S, "a", "cache", response("a", "cache", "10", "new"));
        applied.record(
            ChildKind::ConfigMap,
            "a",
            "cache",
            response("a", "cache", "11", "cm"),
        );
        applied.relisted(S);
        assert_eq!(applied.current(S, "a", "cache", None), None);
        assert_eq!(applied.len(), 1, "only the relisted kind is forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_that_never_comes_is_waited_for_at_most_the_ttl() {
        let applied = AppliedChildren::default();
        applied.record(S, "a", "cache", response("a", "cache", "10", "new"));
        tokio::time::advance(EXPECTATION_TTL - Duration::from_secs(1)).await;
        assert!(applied.current(S, "a", "cache", cached("9")).unwrap()["spec"]["selector"].is_object());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(applied.current(S, "a", "cache", cached("9")), cached("9"));
        assert_eq!(applied.len(), 0);
    }

    #[test]
    fn keys_are_namespaced() {
        let applied = AppliedChildren::default();
        applied.record(S, "team-a", "cache", response("team-a", "cache", "10", "a"));
        assert_eq!(applied.current(S, "team-b", "cache", None), None);
        applied.observed(S, "team-b", "cache", Some("10"));
        applied.deleted(S, "team-b", "cache");
        assert_eq!(applied.len(), 1);
    }
}
