//! Typed identities. Every map, index and queue in the operator is keyed by an [`ObjectKey`]
//! (kind + namespace + name) or by a [`Uid`] — never by a bare name (multitenancy.md MT-1).

use std::fmt;

pub use lmcache_api::Kind;

/// One custom resource: kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// A key.
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// `namespace/name` of an LMCacheCoordinator (what `coordinator.ref.name` resolves to).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CoordinatorKey {
    /// Namespace (always the referring engine's).
    pub namespace: String,
    /// Coordinator name.
    pub name: String,
}

/// A `metadata.uid`: identifies one incarnation of an object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in [Kind::Engine, Kind::BlendEngine, Kind::Coordinator] {
            assert_eq!(Kind::from_kind_name(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::from_kind_name("DaemonSet"), None);
    }

    #[test]
    fn same_name_in_two_namespaces_or_kinds_are_different_keys() {
        let a = ObjectKey::new(Kind::Engine, "team-a", "cache");
        let b = ObjectKey::new(Kind::Engine, "team-b", "cache");
        let c = ObjectKey::new(Kind::BlendEngine, "team-a", "cache");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "LMCacheEngine team-a/cache");
    }

    /// MTT-13: every map, index and queue takes a typed key. The signatures below only compile
    /// while that holds; the calls check that the keys keep tenants apart.
    #[test]
    fn state_and_indexes_are_keyed_by_typed_keys_or_uids() {
        use crate::coordinator_index::CoordinatorIndex;
        use crate::state::{Backoff, EventLog};
        use crate::watches::TriggerRef;
        use kube::runtime::reflector::ObjectRef;
        use lmcache_api::v1alpha1::LMCacheEngine;

        let engines_for: fn(&CoordinatorIndex, &CoordinatorKey) -> Vec<ObjectKey> =
            CoordinatorIndex::engines_for;
        let first_time: fn(&EventLog, &Uid, i64, &str, &str) -> bool = EventLog::first_time;
        let next_delay: fn(&Backoff, &Uid) -> std::time::Duration = Backoff::next_delay;
        // Client restarts, the missed-injection counts and the resync queue, likewise.
        let _: fn(&crate::reconcile::restart::RestartTracker, &Uid) =
            crate::reconcile::restart::RestartTracker::forget;
        let _: fn(&crate::client_cache::ClientDemand, &ObjectKey, bool) =
            crate::client_cache::ClientDemand::set;
        let _: fn(&crate::watchdog::MissedCounts, &ObjectKey) -> Option<i32> =
            crate::watchdog::MissedCounts::get;
        let _: fn(&crate::resync_queue::ResyncQueue, ObjectKey) = crate::resync_queue::ResyncQueue::push;
        let clients_on: fn(
            &crate::client_cache::ClientCache,
            Kind,
            &str,
            &str,
            &str,
        ) -> Vec<std::sync::Arc<crate::client_pod::ClientPod>> = crate::client_cache::ClientCache::clients_on;
        assert!(clients_on(&Default::default(), Kind::Engine, "team-a", "cache", "n0").is_empty());
        // The controller queue is keyed by ObjectRef: namespace + name within one kind.
        let queued: TriggerRef<LMCacheEngine> = ObjectRef::new("cache").within("team-a");
        assert_ne!(queued, ObjectRef::new("cache").within("team-b"));

        let index = CoordinatorIndex::default();
        index.set(&ObjectKey::new(Kind::Engine, "team-a", "cache"), Some("coord"));
        let other_namespace = CoordinatorKey {
            namespace: "team-b".into(),
            name: "coord".into(),
        };
        assert!(engines_for(&index, &other_namespace).is_empty());
        let log = EventLog::default();
        assert!(first_time(&log, &Uid("a".into()), 1, "R", "m"));
        assert!(first_time(&log, &Uid("b".into()), 1, "R", "m"));
        let backoff = Backoff::default();
        assert_eq!(
            next_delay(&backoff, &Uid("a".into())),
            next_delay(&backoff, &Uid("b".into()))
        );
    }
}
