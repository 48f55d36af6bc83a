//! Which cached pods belong to which engine or coordinator: `(namespace, instance label)` →
//! pod names, kept in step with the pod watch, so a reconcile reads its own pods instead of
//! scanning every cached pod (O(own pods), not O(all pods)).

use crate::cached_pod::CachedPod;
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use lmcache_api::constants::labels;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

type Instance = (String, String);

#[derive(Debug, Default)]
struct Inner {
    /// `(namespace, instance)` → pod names.
    by_instance: HashMap<Instance, BTreeSet<String>>,
    /// `(namespace, pod)` → its instance, to move a pod whose label changed.
    by_pod: HashMap<(String, String), String>,
}

/// The index. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct PodIndex {
    inner: Arc<RwLock<Inner>>,
}

fn instance_of(pod: &CachedPod) -> Option<(String, String, String)> {
    let namespace = pod.meta().namespace.clone()?;
    let name = pod.meta().name.clone()?;
    let instance = pod.label(labels::INSTANCE)?.to_string();
    Some((namespace, name, instance))
}

impl PodIndex {
    /// Records `pod` (created or changed).
    pub fn apply(&self, pod: &CachedPod) {
        let Some((namespace, name, instance)) = instance_of(pod) else {
            return;
        };
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.remove((namespace.clone(), name.clone()));
        inner
            .by_instance
            .entry((namespace.clone(), instance.clone()))
            .or_default()
            .insert(name.clone());
        inner.by_pod.insert((namespace, name), instance);
    }

    /// Forgets `pod` (deleted).
    pub fn delete(&self, pod: &CachedPod) {
        let (Some(namespace), Some(name)) = (pod.meta().namespace.clone(), pod.meta().name.clone()) else {
            return;
        };
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove((namespace, name));
    }

    /// Rebuilds from the cache after a (re)list.
    pub fn rebuild(&self, store: &Store<CachedPod>) {
        let mut fresh = Inner::default();
        for pod in store.state() {
            if let Some((namespace, name, instance)) = instance_of(&pod) {
                fresh
                    .by_instance
                    .entry((namespace.clone(), instance.clone()))
                    .or_default()
                    .insert(name.clone());
                fresh.by_pod.insert((namespace, name), instance);
            }
        }
        *self.inner.write().unwrap_or_else(PoisonError::into_inner) = fresh;
    }

    /// The cached pods of `namespace` labelled `instance: name`.
    pub fn pods(&self, store: &Store<CachedPod>, namespace: &str, instance: &str) -> Vec<Arc<CachedPod>> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner
            .by_instance
            .get(&(namespace.to_string(), instance.to_string()))
            .into_iter()
            .flatten()
            .filter_map(|name| store.get(&ObjectRef::new(name).within(namespace)))
            .collect()
    }
}

impl Inner {
    fn remove(&mut self, key: (String, String)) {
        if let Some(instance) = self.by_pod.remove(&key) {
            let slot = (key.0, instance);
            if let Some(names) = self.by_instance.get_mut(&slot) {
                names.remove(&key.1);
                if names.is_empty() {
                    self.by_instance.remove(&slot);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    fn pod(ns: &str, name: &str, instance: &str) -> CachedPod {
        serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name,
            "labels": {"app.kubernetes.io/instance": instance}}}))
        .unwrap()
    }

    fn names(pods: Vec<Arc<CachedPod>>) -> Vec<String> {
        let mut v: Vec<String> = pods.iter().filter_map(|p| p.meta().name.clone()).collect();
        v.sort();
        v
    }

    #[test]
    fn keyed_by_namespace_and_instance_and_follows_changes() {
        let mut writer = Writer::<CachedPod>::default();
        let store = writer.as_reader();
        let index = PodIndex::default();
        for p in [
            pod("a", "p1", "cache"),
            pod("a", "p2", "cache"),
            pod("b", "p1", "cache"),
            pod("a", "p3", "other"),
        ] {
            writer.apply_watcher_event(&Event::Apply(p.clone()));
            index.apply(&p);
        }
        assert_eq!(names(index.pods(&store, "a", "cache")), ["p1", "p2"]);
        assert_eq!(names(index.pods(&store, "b", "cache")), ["p1"]);
        // A relabelled pod moves; a deleted one goes.
        let moved = pod("a", "p2", "other");
        writer.apply_watcher_event(&Event::Apply(moved.clone()));
        index.apply(&moved);
        index.delete(&pod("a", "p1", "cache"));
        assert!(index.pods(&store, "a", "cache").is_empty());
        assert_eq!(names(index.pods(&store, "a", "other")), ["p2", "p3"]);
        index.rebuild(&store);
        assert_eq!(names(index.pods(&store, "a", "cache")), ["p1"]);
    }
}
