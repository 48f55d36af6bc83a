//! The vLLM pods wired to engines (rollouts.md §4), for client restarts.
//!
//! Clients are user pods: no label selects them, so their watch sees every pod of the cluster.
//! It therefore runs only while some engine asks for client restarts ([`ClientDemand`]), and
//! keeps only the pods that are clients ([`ClientPod`], a few fields each); every other pod is
//! decoded to those fields and dropped. The cache is keyed by namespace, then pod name
//! (clients of an engine live in its namespace, MT-1).

use crate::client_pod::ClientPod;
use crate::keys::{Kind, ObjectKey};
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use lmcache_runtime::LivenessCheck;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use tokio::sync::watch;

type ByNamespace = HashMap<String, HashMap<String, Arc<ClientPod>>>;

#[derive(Debug, Default)]
struct Inner {
    /// namespace → pod name → client.
    clients: ByNamespace,
    /// The last list completed and no event was missed since.
    synced: bool,
    /// Pods of a (re)list in progress.
    listing: Option<ByNamespace>,
}

/// The client pods. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ClientCache {
    inner: Arc<RwLock<Inner>>,
}

fn insert(map: &mut ByNamespace, pod: ClientPod) {
    let namespace = pod.namespace().to_string();
    let name = pod.name().to_string();
    map.entry(namespace).or_default().insert(name, Arc::new(pod));
}

fn remove(map: &mut ByNamespace, namespace: &str, name: &str) {
    if let Some(pods) = map.get_mut(namespace) {
        pods.remove(name);
        if pods.is_empty() {
            map.remove(namespace);
        }
    }
}

impl ClientCache {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies one watch event.
    pub fn apply(&self, event: watcher::Event<ClientPod>) {
        let mut inner = self.write();
        match event {
            watcher::Event::Apply(pod) => {
                let (namespace, name) = (pod.namespace().to_string(), pod.name().to_string());
                remove(&mut inner.clients, &namespace, &name);
                if !pod.wiring.is_empty() {
                    insert(&mut inner.clients, pod);
                }
            }
            watcher::Event::Delete(pod) => remove(&mut inner.clients, pod.namespace(), pod.name()),
            watcher::Event::Init => inner.listing = Some(HashMap::new()),
            watcher::Event::InitApply(pod) => {
                if !pod.wiring.is_empty() {
                    insert(inner.listing.get_or_insert_default(), pod);
                }
            }
            watcher::Event::InitDone => {
                inner.clients = inner.listing.take().unwrap_or_default();
                inner.synced = true;
            }
        }
    }

    /// Forgets everything (the watch stopped): nothing is known until the next list.
    pub fn clear(&self) {
        *self.write() = Inner::default();
    }

    /// Whether the cache holds a complete list (restarts wait until it does).
    pub fn is_synced(&self) -> bool {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).synced
    }

    /// The live clients of engine `namespace/name` of `kind` on `node`, sorted by name.
    pub fn clients_on(&self, kind: Kind, namespace: &str, name: &str, node: &str) -> Vec<Arc<ClientPod>> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<Arc<ClientPod>> = inner
            .clients
            .get(namespace)
            .into_iter()
            .flat_map(HashMap::values)
            .filter(|p| p.node_name == node && p.is_live() && p.is_client_of(kind, name))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name().cmp(b.name()));
        out
    }

    /// Client pods cached.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.clients.values().map(HashMap::len).sum()
    }
}

/// Which engines ask for client restarts; the client watch runs while any does.
#[derive(Clone, Debug)]
pub struct ClientDemand {
    engines: Arc<Mutex<HashSet<ObjectKey>>>,
    wanted: Arc<watch::Sender<bool>>,
}

impl Default for ClientDemand {
    fn default() -> Self {
        Self {
            engines: Arc::default(),
            wanted: Arc::new(watch::Sender::new(false)),
        }
    }
}

impl ClientDemand {
    fn publish(&self, engines: &HashSet<ObjectKey>) {
        self.wanted.send_if_modified(|wanted| {
            let now = !engines.is_empty();
            std::mem::replace(wanted, now) != now
        });
    }

    /// Records whether engine `key` asks for client restarts.
    pub fn set(&self, key: &ObjectKey, restart_clients: bool) {
        let mut engines = self.engines.lock().unwrap_or_else(PoisonError::into_inner);
        if restart_clients {
            engines.insert(key.clone());
        } else {
            engines.remove(key);
        }
        self.publish(&engines);
    }

    /// Replaces the engines of `kind` (after a relist of that kind).
    pub fn rebuild(&self, kind: Kind, asking: impl IntoIterator<Item = ObjectKey>) {
        let mut engines = self.engines.lock().unwrap_or_else(PoisonError::into_inner);
        engines.retain(|k| k.kind != kind);
        engines.extend(asking);
        self.publish(&engines);
    }

    /// Whether the client watch should run.
    #[cfg(test)]
    pub fn is_wanted(&self) -> bool {
        *self.wanted.borrow()
    }

    fn subscribe(&self) -> watch::Receiver<bool> {
        self.wanted.subscribe()
    }
}

/// Objects per list page of the client watch (see the other watches).
const PAGE_SIZE: u32 = 100;

/// Watches pods while [`ClientDemand`] wants it, feeding `cache`; empties it when stopped.
pub async fn watch_clients(client: Client, cache: ClientCache, demand: ClientDemand, health: LivenessCheck) {
    let mut wanted = demand.subscribe();
    loop {
        if wanted.wait_for(|w| *w).await.is_err() {
            return;
        }
        tracing::info!("an engine asks for client restarts; watching pods for clients");
        // Finished pods are never restarted: the API server filters them out.
        let config = watcher::Config::default()
            .fields("status.phase!=Succeeded,status.phase!=Failed")
            .page_size(PAGE_SIZE);
        let stream = watcher(Api::<ClientPod>::all(client.clone()), config).default_backoff();
        let run = crate::watches::drive(stream, "client pods", &health, |event| cache.apply(event));
        tokio::select! {
            () = run => return,
            stopped = wanted.wait_for(|w| !*w) => {
                if stopped.is_err() {
                    return;
                }
                tracing::info!("no engine asks for client restarts; stopping the client pod watch");
            }
        }
        // Not watching is not failing.
        health.ok();
        cache.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(namespace: &str, name: &str, node: &str, engine: Option<&str>) -> ClientPod {
        let annotations = engine.map_or(
            json!({}),
            |e| json!({"lmcache.ai/lmcache-injected": "true", "lmcache.ai/lmcache-engine": e}),
        );
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": {"nodeName": node}
        }))
        .unwrap()
    }

    #[test]
    fn keeps_only_clients_by_namespace_and_node() {
        let cache = ClientCache::default();
        cache.apply(watcher::Event::Init);
        cache.apply(watcher::Event::InitApply(pod(
            "team-a",
            "a0",
            "n0",
            Some("cache"),
        )));
        cache.apply(watcher::Event::InitApply(pod("team-a", "other", "n0", None)));
        cache.apply(watcher::Event::InitApply(pod(
            "team-b",
            "b0",
            "n0",
            Some("cache"),
        )));
        assert!(!cache.is_synced());
        cache.apply(watcher::Event::InitDone);
        assert!(cache.is_synced());
        assert_eq!(cache.len(), 2, "the unwired pod is not kept");
        let names = |c: &ClientCache, ns: &str, node: &str| -> Vec<String> {
            c.clients_on(Kind::Engine, ns, "cache", node)
                .iter()
                .map(|p| p.name().to_string())
                .collect()
        };
        assert_eq!(
            names(&cache, "team-a", "n0"),
            ["a0"],
            "team-b's pod of an engine named alike is not team-a's"
        );
        assert!(names(&cache, "team-a", "n1").is_empty());
        // A pod that loses its wiring leaves; a deleted one too.
        cache.apply(watcher::Event::Apply(pod("team-a", "a0", "n0", None)));
        assert!(names(&cache, "team-a", "n0").is_empty());
        cache.apply(watcher::Event::Delete(pod("team-b", "b0", "n0", Some("cache"))));
        assert_eq!(cache.len(), 0);
        cache.clear();
        assert!(!cache.is_synced());
    }

    #[test]
    fn demand_follows_the_engines_asking() {
        let demand = ClientDemand::default();
        let a = ObjectKey::new(Kind::Engine, "team-a", "cache");
        let b = ObjectKey::new(Kind::BlendEngine, "team-b", "blend");
        assert!(!demand.is_wanted());
        demand.set(&a, true);
        demand.set(&b, true);
        demand.set(&a, false);
        assert!(demand.is_wanted());
        demand.rebuild(Kind::BlendEngine, []);
        assert!(!demand.is_wanted());
        demand.rebuild(Kind::Engine, [a]);
        assert!(demand.is_wanted());
    }
}
