//! The webhook's CacheBlendEngine cache: a kube-runtime reflector over every namespace, keyed
//! by namespace/name ([`ObjectRef`]), read without any API call during admission.
//!
//! Engines are decoded leniently ([`decode_engine`]): one that still cannot be decoded is kept
//! as [`StoredEngine::Invalid`] (so the watch never breaks on it) and counts as not found.
//! The reflector swaps in a relisted set in one step once the relist completes, so engines
//! never disappear during a watch restart (cacheblend.md §10).

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use lmcache_api::v1alpha1::CacheBlendEngine;
use lmcache_blend_injector::decode_engine;
use lmcache_runtime::{ReadyGate, Shutdown};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A stored CacheBlendEngine as the watch delivered it.
#[derive(Clone, Debug)]
pub enum StoredEngine {
    /// Decoded, defaults applied, `managedFields` dropped.
    Valid(Box<CacheBlendEngine>),
    /// Not decodable even leniently; only its metadata is kept.
    Invalid {
        /// The object's metadata (without `managedFields`).
        metadata: Box<ObjectMeta>,
        /// Why it could not be decoded.
        error: String,
    },
}

impl<'de> Deserialize<'de> for StoredEngine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(Self::from_value(value))
    }
}

impl StoredEngine {
    /// Decodes one object; never fails.
    pub fn from_value(value: serde_json::Value) -> Self {
        let metadata = value.get("metadata").cloned();
        match decode_engine(value) {
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

    /// The engine, when it could be decoded.
    pub fn engine(&self) -> Option<&CacheBlendEngine> {
        match self {
            Self::Valid(engine) => Some(engine),
            Self::Invalid { .. } => None,
        }
    }
}

impl Resource for StoredEngine {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        CacheBlendEngine::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        CacheBlendEngine::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        CacheBlendEngine::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        CacheBlendEngine::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match self {
            Self::Valid(engine) => &engine.metadata,
            Self::Invalid { metadata, .. } => metadata,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Self::Valid(engine) => &mut engine.metadata,
            Self::Invalid { metadata, .. } => metadata,
        }
    }
}

/// What a lookup found.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// Usable engine (may still be being deleted: the injector checks that).
    Found(Arc<StoredEngine>),
    /// Present but undecodable.
    Invalid(String),
    /// No such engine in that namespace.
    Missing,
}

/// Read side of the cache. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EngineCache {
    store: Store<StoredEngine>,
    synced: Arc<AtomicBool>,
}

/// Write side: feed it watcher events (the watch task does, tests may too).
#[derive(Debug)]
pub struct EngineCacheWriter {
    writer: reflector::store::Writer<StoredEngine>,
    synced: Arc<AtomicBool>,
}

impl EngineCache {
    /// An empty, not yet synced cache and its writer.
    pub fn new() -> (Self, EngineCacheWriter) {
        let writer = reflector::store::Writer::<StoredEngine>::default();
        let synced = Arc::new(AtomicBool::new(false));
        let cache = Self {
            store: writer.as_reader(),
            synced: synced.clone(),
        };
        (cache, EngineCacheWriter { writer, synced })
    }

    /// A synced cache holding `engines` (tests and the `inject` command). An engine without a
    /// namespace is placed in `default_namespace`.
    pub fn from_engines(
        engines: impl IntoIterator<Item = CacheBlendEngine>,
        default_namespace: &str,
    ) -> Self {
        let (cache, mut writer) = Self::new();
        writer.apply(&watcher::Event::Init);
        for mut engine in engines {
            engine
                .metadata
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
    pub fn get(&self, namespace: &str, name: &str) -> Lookup {
        let key = ObjectRef::<StoredEngine>::new(name).within(namespace);
        match self.store.get(&key) {
            Some(stored) => match stored.as_ref() {
                StoredEngine::Valid(_) => Lookup::Found(stored),
                StoredEngine::Invalid { error, .. } => Lookup::Invalid(error.clone()),
            },
            None => Lookup::Missing,
        }
    }
}

impl EngineCacheWriter {
    /// Applies one watcher event; the first `InitDone` marks the cache synced.
    pub fn apply(&mut self, event: &watcher::Event<StoredEngine>) {
        self.writer.apply_watcher_event(event);
        if matches!(event, watcher::Event::InitDone) {
            self.synced.store(true, Ordering::SeqCst);
        }
    }
}

/// Lists and watches CacheBlendEngines in every namespace into `writer` until `shutdown`.
/// Opens `gate` after the first complete list and calls `on_change(len)` after each event.
pub async fn run_watch(
    client: kube::Client,
    mut writer: EngineCacheWriter,
    gate: ReadyGate,
    on_change: impl Fn(usize),
    shutdown: Shutdown,
) {
    let api = kube::Api::<StoredEngine>::all(client);
    let reader = writer.writer.as_reader();
    let events = watcher(api, watcher::Config::default()).default_backoff();
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
                        tracing::info!(engines = reader.len(), "CacheBlendEngine cache synced");
                    }
                    watcher::Event::Apply(StoredEngine::Invalid { metadata, error })
                    | watcher::Event::InitApply(StoredEngine::Invalid { metadata, error }) => {
                        tracing::warn!(
                            kind = "CacheBlendEngine",
                            namespace = metadata.namespace.as_deref().unwrap_or_default(),
                            name = metadata.name.as_deref().unwrap_or_default(),
                            %error,
                            "cannot decode CacheBlendEngine; pods bound to it get engine-not-found"
                        );
                    }
                    _ => {}
                }
                on_change(reader.len());
            }
            // Recoverable: the backoff retries and the cache keeps its contents.
            Some(Err(error)) => tracing::warn!(%error, "CacheBlendEngine watch error"),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(name: &str, namespace: &str, repo: &str) -> StoredEngine {
        StoredEngine::from_value(json!({
            "apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": "CacheBlendEngine",
            "metadata": {"name": name, "namespace": namespace, "managedFields": [{"manager": "m"}]},
            "spec": {"l1": {"sizeGB": 60}, "injection": {"payloadImage": {"repository": repo}}}
        }))
    }

    fn repo(lookup: Lookup) -> String {
        match lookup {
            Lookup::Found(stored) => stored
                .engine()
                .and_then(|e| e.spec.payload_image())
                .map(|(image, _)| image)
                .unwrap_or_default(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn keyed_by_namespace_and_name() {
        let (cache, mut writer) = EngineCache::new();
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
        let (cache, mut writer) = EngineCache::new();
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
    fn undecodable_engines_are_kept_as_invalid() {
        let bad: StoredEngine = serde_json::from_value(json!({
            "metadata": {"name": "bad", "namespace": "ns", "managedFields": [{"manager": "m"}]},
            "spec": {"l1": "sixty"}
        }))
        .unwrap();
        assert!(bad.engine().is_none());
        assert_eq!(bad.meta().managed_fields, None);
        let (cache, mut writer) = EngineCache::new();
        writer.apply(&watcher::Event::Apply(bad));
        assert!(matches!(cache.get("ns", "bad"), Lookup::Invalid(_)));
        // `full` is read as eager, not as invalid.
        let full = StoredEngine::from_value(json!({
            "apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": "CacheBlendEngine",
            "metadata": {"name": "f", "namespace": "ns"},
            "spec": {"l1": {"sizeGB": 1}, "injection": {"cudagraph": "full"}}
        }));
        assert!(full.engine().is_some());
    }
}
