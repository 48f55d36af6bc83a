//! The webhooks' engine caches: one kube-runtime reflector per engine kind over every
//! namespace, keyed by namespace/name ([`ObjectRef`]), read without any API call during
//! admission.
//!
//! Engines are decoded leniently, as the operator reads them ([`CachedEngine::decode`]); one
//! that still cannot be decoded is kept as [`StoredEngine::Invalid`] (so the watch never breaks
//! on it) and counts as not found. The reflector swaps in a relisted set in one step once the
//! relist completes, so engines never disappear during a watch restart (cacheblend.md §10).

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use lmcache_api::v1alpha1::{CacheBlendEngine, LMCacheEngine};
use lmcache_blend_injector::{Injectable, decode_engine, decode_lmcache_engine};
use lmcache_runtime::{ReadyGate, Shutdown};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Objects per list page of the engine watches.
const LIST_PAGE_SIZE: u32 = 100;

/// An engine kind a webhook caches.
pub trait CachedEngine:
    Injectable
    + Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// Decodes a stored object leniently (`managedFields` dropped).
    fn decode(value: serde_json::Value) -> Result<Self, lmcache_blend_injector::Error>;
}

impl CachedEngine for CacheBlendEngine {
    fn decode(value: serde_json::Value) -> Result<Self, lmcache_blend_injector::Error> {
        decode_engine(value)
    }
}

impl CachedEngine for LMCacheEngine {
    fn decode(value: serde_json::Value) -> Result<Self, lmcache_blend_injector::Error> {
        decode_lmcache_engine(value)
    }
}

/// A stored engine as the watch delivered it.
#[derive(Clone, Debug)]
pub enum StoredEngine<E> {
    /// Decoded, defaults applied, `managedFields` dropped.
    Valid(Box<E>),
    /// Not decodable even leniently; only its metadata is kept.
    Invalid {
        /// The object's metadata (without `managedFields`).
        metadata: Box<ObjectMeta>,
        /// Why it could not be decoded.
        error: String,
    },
}

impl<'de, E: CachedEngine> Deserialize<'de> for StoredEngine<E> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(Self::from_value(value))
    }
}

impl<E: CachedEngine> StoredEngine<E> {
    /// Decodes one object; never fails.
    pub fn from_value(value: serde_json::Value) -> Self {
        let metadata = value.get("metadata").cloned();
        match E::decode(value) {
            Ok(engine) => Self::Valid(Box::new(engine)),
            Err(error) => {
                let mut metadata: ObjectMeta = metadata
                    .and_then(|m| serde_json::from_value(m).ok())
                    .unwrap_or_default();
                metadata.managed_fields = None;
                Self::Invalid {
                    metadata: Box::new(metadata),
                    error: error.to_string(),
                }
            }
        }
    }
}

impl<E> StoredEngine<E> {
    /// The engine, when it could be decoded.
    pub fn engine(&self) -> Option<&E> {
        match self {
            Self::Valid(engine) => Some(engine),
            Self::Invalid { .. } => None,
        }
    }
}

impl<E: CachedEngine> Resource for StoredEngine<E> {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        E::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        E::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        E::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        E::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match self {
            Self::Valid(engine) => engine.meta(),
            Self::Invalid { metadata, .. } => metadata,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Self::Valid(engine) => engine.meta_mut(),
            Self::Invalid { metadata, .. } => metadata,
        }
    }
}

/// What a lookup found.
#[derive(Clone, Debug)]
pub enum Lookup<E> {
    /// Usable engine (may still be being deleted: the injector checks that).
    Found(Arc<StoredEngine<E>>),
    /// Present but undecodable.
    Invalid(String),
    /// No such engine in that namespace.
    Missing,
}

/// Read side of one kind's cache. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EngineCache<E: CachedEngine> {
    store: Store<StoredEngine<E>>,
    synced: Arc<AtomicBool>,
}

/// Write side: feed it watcher events (the watch task does, tests may too).
#[derive(Debug)]
pub struct EngineCacheWriter<E: CachedEngine> {
    writer: reflector::store::Writer<StoredEngine<E>>,
    synced: Arc<AtomicBool>,
}

impl<E: CachedEngine> EngineCache<E> {
    /// An empty, not yet synced cache and its writer.
    pub fn new() -> (Self, EngineCacheWriter<E>) {
        let writer = reflector::store::Writer::<StoredEngine<E>>::default();
        let synced = Arc::new(AtomicBool::new(false));
        let cache = Self {
            store: writer.as_reader(),
            synced: synced.clone(),
        };
        (cache, EngineCacheWriter { writer, synced })
    }

    /// A synced cache holding `engines` (tests and the `inject` command). An engine without a
    /// namespace is placed in `default_namespace`.
    pub fn from_engines(engines: impl IntoIterator<Item = E>, default_namespace: &str) -> Self {
        let (cache, mut writer) = Self::new();
        writer.apply(&watcher::Event::Init);
        for mut engine in engines {
            engine
                .meta_mut()
                .namespace
                .get_or_insert_with(|| default_namespace.to_string());
            writer.apply(&watcher::Event::InitApply(StoredEngine::Valid(Box::new(engine))));
        }
        writer.apply(&watcher::Event::InitDone);
        cache
    }

    /// Whether the initial list has completed.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::SeqCst)
    }

    /// Number of cached engines (valid or not).
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// The engine `name` in `namespace`. Never looks in another namespace.
    pub fn get(&self, namespace: &str, name: &str) -> Lookup<E> {
        let key = ObjectRef::<StoredEngine<E>>::new(name).within(namespace);
        match self.store.get(&key) {
            Some(stored) => match stored.as_ref() {
                StoredEngine::Valid(_) => Lookup::Found(stored),
                StoredEngine::Invalid { error, .. } => Lookup::Invalid(error.clone()),
            },
            None => Lookup::Missing,
        }
    }
}

impl<E: CachedEngine> EngineCacheWriter<E> {
    /// Applies one watcher event; the first `InitDone` marks the cache synced.
    pub fn apply(&mut self, event: &watcher::Event<StoredEngine<E>>) {
        self.writer.apply_watcher_event(event);
        if matches!(event, watcher::Event::InitDone) {
            self.synced.store(true, Ordering::SeqCst);
        }
    }
}

/// Lists and watches `E` in every namespace into `writer` until `shutdown`. Opens `gate`
/// after the first complete list and calls `on_change(len)` after each event.
pub async fn run_watch<E: CachedEngine>(
    client: kube::Client,
    mut writer: EngineCacheWriter<E>,
    gate: ReadyGate,
    on_change: impl Fn(usize),
    shutdown: Shutdown,
) {
    let kind = E::kind(&());
    let api = kube::Api::<StoredEngine<E>>::all(client);
    let reader = writer.writer.as_reader();
    // Pages of 100: a list page is held whole while it is decoded, and the allocator keeps
    // that peak as RSS afterwards (500 engines per page, the default, doubled the heap's peak).
    let events = watcher(api, watcher::Config::default().page_size(LIST_PAGE_SIZE)).default_backoff();
    let mut events = std::pin::pin!(events);
    loop {
        let event = tokio::select! {
            () = shutdown.requested() => return,
            event = events.next() => event,
        };
        match event {
            Some(Ok(event)) => {
                writer.apply(&event);
                match &event {
                    watcher::Event::InitDone => {
                        gate.set(true);
                        tracing::info!(%kind, engines = reader.len(), "engine cache synced");
                    }
                    watcher::Event::Apply(StoredEngine::Invalid { metadata, error })
                    | watcher::Event::InitApply(StoredEngine::Invalid { metadata, error }) => {
                        tracing::warn!(
                            %kind,
                            namespace = metadata.namespace.as_deref().unwrap_or_default(),
                            name = metadata.name.as_deref().unwrap_or_default(),
                            %error,
                            "cannot decode the engine; pods bound to it get engine-not-found"
                        );
                    }
                    _ => {}
                }
                on_change(reader.len());
            }
            // Recoverable: the backoff retries and the cache keeps its contents.
            Some(Err(error)) => tracing::warn!(%kind, %error, "engine watch error"),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(name: &str, namespace: &str, repo: &str) -> StoredEngine<CacheBlendEngine> {
        StoredEngine::from_value(json!({
            "apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": "CacheBlendEngine",
            "metadata": {"name": name, "namespace": namespace, "managedFields": [{"manager": "m"}]},
            "spec": {"l1": {"sizeGB": 60}, "injection": {"payloadImage": {"repository": repo}}}
        }))
    }

    fn repo(lookup: Lookup<CacheBlendEngine>) -> String {
        match lookup {
            Lookup::Found(stored) => stored
                .engine()
                .and_then(|e| e.spec.injection_settings().payload())
                .map(|(image, _)| image)
                .unwrap_or_default(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn keyed_by_namespace_and_name() {
        let (cache, mut writer) = EngineCache::<CacheBlendEngine>::new();
        assert!(!cache.is_synced());
        writer.apply(&watcher::Event::Init);
        writer.apply(&watcher::Event::InitApply(stored("cb", "team-a", "reg/a")));
        writer.apply(&watcher::Event::InitApply(stored("cb", "team-b", "reg/b")));
        assert!(!cache.is_synced());
        assert!(
            matches!(cache.get("team-a", "cb"), Lookup::Missing),
            "not visible before InitDone"
        );
        writer.apply(&watcher::Event::InitDone);
        assert!(cache.is_synced());
        assert_eq!(repo(cache.get("team-a", "cb")), "reg/a:latest");
        assert_eq!(repo(cache.get("team-b", "cb")), "reg/b:latest");
        assert!(matches!(cache.get("team-c", "cb"), Lookup::Missing));
        assert!(matches!(cache.get("team-b", "team-a/cb"), Lookup::Missing));
        let Lookup::Found(found) = cache.get("team-a", "cb") else {
            panic!()
        };
        assert_eq!(found.meta().managed_fields, None);
    }

    #[test]
    fn relist_swaps_atomically_and_deletes_apply() {
        let (cache, mut writer) = EngineCache::<CacheBlendEngine>::new();
        writer.apply(&watcher::Event::Init);
        writer.apply(&watcher::Event::InitApply(stored("old", "ns", "reg/o")));
        writer.apply(&watcher::Event::InitDone);
        // Watch restart: the old contents stay visible until the relist completes.
        writer.apply(&watcher::Event::Init);
        writer.apply(&watcher::Event::InitApply(stored("new", "ns", "reg/n")));
        assert!(matches!(cache.get("ns", "old"), Lookup::Found(_)));
        assert!(matches!(cache.get("ns", "new"), Lookup::Missing));
        writer.apply(&watcher::Event::InitDone);
        assert!(matches!(cache.get("ns", "old"), Lookup::Missing));
        assert!(matches!(cache.get("ns", "new"), Lookup::Found(_)));
        assert!(cache.is_synced());
        writer.apply(&watcher::Event::Apply(stored("later", "ns", "reg/l")));
        assert_eq!(cache.len(), 2);
        writer.apply(&watcher::Event::Delete(stored("new", "ns", "reg/n")));
        assert!(matches!(cache.get("ns", "new"), Lookup::Missing));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn damaged_engines_decode_as_the_operator_reads_them() {
        // A spec the schema would reject is repaired (defaults), not "not found": the operator
        // reports it in the engine's status.
        let damaged: StoredEngine<CacheBlendEngine> = serde_json::from_value(json!({
            "apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": "CacheBlendEngine",
            "metadata": {"name": "d", "namespace": "ns", "managedFields": [{"manager": "m"}]},
            "spec": {"l1": "sixty", "server": null, "injection": {"cudagraph": "full",
                     "payloadImage": {"repository": "reg/a"}}}
        }))
        .unwrap();
        let engine = damaged.engine().expect("decoded");
        assert_eq!(engine.spec.engine.server.port, 5555);
        assert_eq!(damaged.meta().managed_fields, None);
        // Only something that is not an object at all stays invalid (and is not found).
        let bad = StoredEngine::<LMCacheEngine>::from_value(json!(["not", "an", "engine"]));
        assert!(bad.engine().is_none());
        let (cache, mut writer) = EngineCache::<LMCacheEngine>::new();
        let mut bad = bad;
        bad.meta_mut().name = Some("bad".into());
        bad.meta_mut().namespace = Some("ns".into());
        writer.apply(&watcher::Event::Apply(bad));
        assert!(matches!(cache.get("ns", "bad"), Lookup::Invalid(_)));
    }
}
