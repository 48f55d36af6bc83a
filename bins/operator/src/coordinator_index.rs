//! Which engines reference which coordinator: `namespace/coordinator` → engine keys (MT-6).
//! Maintained from the engine watches (set on every engine event, rebuilt after every relist),
//! so it always mirrors the watch caches and holds nothing for deleted engines.

use crate::keys::{CoordinatorKey, Kind, ObjectKey};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

#[derive(Debug, Default)]
struct Inner {
    by_coordinator: HashMap<CoordinatorKey, BTreeSet<ObjectKey>>,
    by_engine: HashMap<ObjectKey, CoordinatorKey>,
    /// What each cached coordinator resolves to: its port (`None`: cannot be decoded).
    resolved: HashMap<CoordinatorKey, Option<i32>>,
}

/// The coordinator → engines index.
#[derive(Debug, Default)]
pub struct CoordinatorIndex {
    inner: Mutex<Inner>,
}

impl CoordinatorIndex {
    /// Records that `engine` references coordinator `name` in its own namespace (or nothing).
    pub fn set(&self, engine: &ObjectKey, coordinator: Option<&str>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.remove(engine);
        if let Some(name) = coordinator {
            let key = CoordinatorKey {
                namespace: engine.namespace.clone(),
                name: name.to_string(),
            };
            inner
                .by_coordinator
                .entry(key.clone())
                .or_default()
                .insert(engine.clone());
            inner.by_engine.insert(engine.clone(), key);
        }
    }

    /// Records what coordinator `key` resolves to; whether that differs from before (only
    /// then do its engines need a reconcile: a status write of the coordinator changes
    /// nothing they render).
    pub fn resolves_to(&self, key: CoordinatorKey, port: Option<i32>) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.resolved.insert(key, port) != Some(port)
    }

    /// Forgets what every coordinator resolved to (before a relist refills it).
    pub fn clear_resolved(&self) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .resolved
            .clear();
    }

    /// Forgets coordinator `key` (deleted).
    pub fn forget_coordinator(&self, key: &CoordinatorKey) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .resolved
            .remove(key);
    }

    /// Forgets `engine`.
    pub fn remove(&self, engine: &ObjectKey) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(engine);
    }

    /// Replaces every entry of engines of `kind` with `engines` (after a relist).
    pub fn rebuild<'a>(&self, kind: Kind, engines: impl IntoIterator<Item = (ObjectKey, Option<&'a str>)>) {
        {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let stale: Vec<ObjectKey> = inner
                .by_engine
                .keys()
                .filter(|k| k.kind == kind)
                .cloned()
                .collect();
            for key in stale {
                inner.remove(&key);
            }
        }
        for (engine, coordinator) in engines {
            self.set(&engine, coordinator);
        }
    }

    /// Engines that reference `coordinator`.
    pub fn engines_for(&self, coordinator: &CoordinatorKey) -> Vec<ObjectKey> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_coordinator
            .get(coordinator)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Inner {
    fn remove(&mut self, engine: &ObjectKey) {
        if let Some(old) = self.by_engine.remove(engine)
            && let Some(set) = self.by_coordinator.get_mut(&old)
        {
            set.remove(engine);
            if set.is_empty() {
                self.by_coordinator.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coord(ns: &str, name: &str) -> CoordinatorKey {
        CoordinatorKey {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn references_resolve_in_the_engine_namespace() {
        let index = CoordinatorIndex::default();
        let a = ObjectKey::new(Kind::Engine, "team-a", "cache");
        let b = ObjectKey::new(Kind::Engine, "team-b", "cache");
        let cb = ObjectKey::new(Kind::BlendEngine, "team-a", "cache");
        index.set(&a, Some("coord"));
        index.set(&b, Some("coord"));
        index.set(&cb, Some("coord"));
        assert_eq!(
            index.engines_for(&coord("team-a", "coord")),
            [a.clone(), cb.clone()]
        );
        assert_eq!(
            index.engines_for(&coord("team-b", "coord")),
            std::slice::from_ref(&b)
        );

        index.set(&a, Some("other"));
        assert_eq!(
            index.engines_for(&coord("team-a", "coord")),
            std::slice::from_ref(&cb)
        );
        assert_eq!(
            index.engines_for(&coord("team-a", "other")),
            std::slice::from_ref(&a)
        );
        index.set(&a, None);
        assert!(index.engines_for(&coord("team-a", "other")).is_empty());

        index.rebuild(Kind::BlendEngine, []);
        assert!(index.engines_for(&coord("team-a", "coord")).is_empty());
        assert_eq!(
            index.engines_for(&coord("team-b", "coord")),
            std::slice::from_ref(&b)
        );
        index.remove(&b);
        assert!(index.engines_for(&coord("team-b", "coord")).is_empty());
    }
}
