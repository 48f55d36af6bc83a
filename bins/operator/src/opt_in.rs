//! Pods that opted into a webhook but carry none of its marks: what the missed-injection
//! watchdog (`watchdog`) looks at.
//!
//! The webhooks run with `failurePolicy: Ignore`, so a pod created while they are down is
//! admitted unmutated and runs without LMCache. Such a pod still carries its opt-in label
//! (`lmcache.ai/cacheblend-inject` or `lmcache.ai/lmcache-inject`) and its engine annotation,
//! but neither the webhook's `*-injected` nor its `*-skip-reason` annotation (a pod naming no
//! engine is left unmarked by the webhook too, so it tells nothing). Two metadata-only watches, one per opt-in
//! label (a selector cannot OR two keys), feed [`OptInCache`], which keeps only such pods: an
//! injected or skipped pod is dropped at once, so the cache is empty while the webhooks work,
//! and unrelated pods never reach the operator at all (server-side selector).

use crate::keys::Kind;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use lmcache_api::constants::{annotations, labels};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// Which webhook a pod opted into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OptIn {
    /// `lmcache.ai/cacheblend-inject` (CacheBlendEngines).
    Blend,
    /// `lmcache.ai/lmcache-inject` (LMCacheEngines).
    Connection,
}

impl OptIn {
    /// Both.
    pub const ALL: [Self; 2] = [Self::Blend, Self::Connection];

    /// The opt-in label (value `"true"`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Blend => labels::CACHEBLEND_INJECT,
            Self::Connection => labels::LMCACHE_INJECT,
        }
    }

    /// The annotation naming the engine.
    pub fn engine_annotation(self) -> &'static str {
        match self {
            Self::Blend => annotations::CACHEBLEND_ENGINE,
            Self::Connection => annotations::LMCACHE_ENGINE,
        }
    }

    fn injected_annotation(self) -> &'static str {
        match self {
            Self::Blend => annotations::CACHEBLEND_INJECTED,
            Self::Connection => annotations::LMCACHE_INJECTED,
        }
    }

    fn skip_annotation(self) -> &'static str {
        match self {
            Self::Blend => annotations::CACHEBLEND_SKIP_REASON,
            Self::Connection => annotations::LMCACHE_SKIP_REASON,
        }
    }

    /// The engine kind the webhook serves.
    pub fn engine_kind(self) -> Kind {
        match self {
            Self::Blend => Kind::BlendEngine,
            Self::Connection => Kind::Engine,
        }
    }

    /// The webhook's name in messages.
    pub fn webhook(self) -> &'static str {
        match self {
            Self::Blend => "CacheBlend",
            Self::Connection => "LMCache connection",
        }
    }

    /// The label selector of its watch.
    pub fn selector(self) -> String {
        format!("{}=true", self.label())
    }
}

/// An opted-in pod the webhook left no mark on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmarked {
    /// Which webhook it opted into.
    pub opt_in: OptIn,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.creationTimestamp`.
    pub created: Option<Time>,
    /// The engine it names (its webhook's engine annotation).
    pub engine: Option<String>,
    /// Kind of its controller owner, if it has one (a Deployment's pods: `ReplicaSet`).
    pub controller: Option<String>,
}

/// `Some` when `pod` opted into `opt_in` and carries neither of its marks; `None` for a
/// terminating pod (nothing to report or repair).
pub fn unmarked(opt_in: OptIn, pod: &PartialObjectMeta<Pod>) -> Option<Unmarked> {
    let meta = &pod.metadata;
    if meta.deletion_timestamp.is_some() {
        return None;
    }
    let label = meta.labels.as_ref()?.get(opt_in.label())?;
    if label != "true" {
        return None;
    }
    let annotation = |key: &str| meta.annotations.as_ref().and_then(|a| a.get(key));
    if annotation(opt_in.injected_annotation()).is_some() || annotation(opt_in.skip_annotation()).is_some() {
        return None;
    }
    // The webhook leaves a pod that names no engine unmarked by design (docs/webhook.md):
    // only a pod naming one tells a missed admission apart.
    annotation(opt_in.engine_annotation()).filter(|e| !e.trim().is_empty())?;
    Some(Unmarked {
        opt_in,
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        uid: meta.uid.clone().unwrap_or_default(),
        created: meta.creation_timestamp.clone(),
        engine: annotation(opt_in.engine_annotation()).cloned(),
        controller: meta
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
            .map(|r| r.kind.clone()),
    })
}

type Key = (OptIn, String, String);

#[derive(Debug, Default)]
struct Inner {
    pods: HashMap<Key, Arc<Unmarked>>,
    /// A (re)list of one watch in progress.
    listing: HashMap<OptIn, HashMap<Key, Arc<Unmarked>>>,
}

/// The unmarked opted-in pods, keyed by webhook, namespace and name. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct OptInCache {
    inner: Arc<RwLock<Inner>>,
}

fn key_of(opt_in: OptIn, pod: &PartialObjectMeta<Pod>) -> Option<Key> {
    Some((
        opt_in,
        pod.metadata.namespace.clone()?,
        pod.metadata.name.clone()?,
    ))
}

impl OptInCache {
    /// Applies one event of `opt_in`'s watch.
    pub fn apply(&self, opt_in: OptIn, event: watcher::Event<PartialObjectMeta<Pod>>) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(pod) => {
                let Some(key) = key_of(opt_in, &pod) else { return };
                match unmarked(opt_in, &pod) {
                    Some(found) => inner.pods.insert(key, Arc::new(found)),
                    None => inner.pods.remove(&key),
                };
            }
            watcher::Event::Delete(pod) => {
                if let Some(key) = key_of(opt_in, &pod) {
                    inner.pods.remove(&key);
                }
            }
            watcher::Event::Init => {
                inner.listing.insert(opt_in, HashMap::new());
            }
            watcher::Event::InitApply(pod) => {
                if let (Some(key), Some(found)) = (key_of(opt_in, &pod), unmarked(opt_in, &pod)) {
                    inner
                        .listing
                        .entry(opt_in)
                        .or_default()
                        .insert(key, Arc::new(found));
                }
            }
            watcher::Event::InitDone => {
                let listed = inner.listing.remove(&opt_in).unwrap_or_default();
                inner.pods.retain(|(o, _, _), _| *o != opt_in);
                inner.pods.extend(listed);
            }
        }
    }

    /// Every unmarked pod, sorted by webhook, namespace and name.
    pub fn all(&self) -> Vec<Arc<Unmarked>> {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<(Key, Arc<Unmarked>)> =
            inner.pods.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.into_iter().map(|(_, v)| v).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A pod naming engine `cache` for both webhooks; `annotations` are added (`null` removes).
    fn pod(name: &str, labels: serde_json::Value, extra: serde_json::Value) -> PartialObjectMeta<Pod> {
        let mut annotations =
            json!({"lmcache.ai/lmcache-engine": "cache", "lmcache.ai/cacheblend-engine": "cache"});
        for (key, value) in extra.as_object().into_iter().flatten() {
            match value {
                serde_json::Value::Null => annotations.as_object_mut().map(|a| a.remove(key)),
                v => annotations
                    .as_object_mut()
                    .map(|a| a.insert(key.clone(), v.clone())),
            };
        }
        serde_json::from_value(json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": name, "namespace": "team-a", "uid": format!("uid-{name}"),
                         "creationTimestamp": "2026-12-01T10:00:00Z",
                         "labels": labels, "annotations": annotations,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                                              "uid": "rs", "controller": true}]}
        }))
        .unwrap()
    }

    #[test]
    fn only_pods_without_the_webhooks_marks_are_unmarked() {
        let opted = json!({"lmcache.ai/lmcache-inject": "true"});
        let missed = unmarked(
            OptIn::Connection,
            &pod("a", opted.clone(), json!({"lmcache.ai/lmcache-engine": "cache"})),
        )
        .unwrap();
        assert_eq!(missed.engine.as_deref(), Some("cache"));
        assert_eq!(missed.controller.as_deref(), Some("ReplicaSet"));
        assert_eq!(missed.created.map(|t| t.0.as_second()), Some(1_796_119_200));
        for marks in [
            json!({"lmcache.ai/lmcache-injected": "true"}),
            json!({"lmcache.ai/lmcache-skip-reason": "engine-not-found"}),
        ] {
            assert!(unmarked(OptIn::Connection, &pod("b", opted.clone(), marks)).is_none());
        }
        // The other webhook's marks do not count; a label other than "true" is no opt-in.
        assert!(
            unmarked(
                OptIn::Connection,
                &pod("c", opted, json!({"lmcache.ai/cacheblend-injected": "true"}))
            )
            .is_some()
        );
        assert!(
            unmarked(
                OptIn::Blend,
                &pod("d", json!({"lmcache.ai/cacheblend-inject": "false"}), json!({}))
            )
            .is_none()
        );
        // No (or a blank) engine annotation: the webhook marks nothing either.
        for extra in [
            json!({"lmcache.ai/lmcache-engine": null}),
            json!({"lmcache.ai/lmcache-engine": " "}),
        ] {
            let opted = json!({"lmcache.ai/lmcache-inject": "true"});
            assert!(unmarked(OptIn::Connection, &pod("e", opted, extra)).is_none());
        }
    }

    #[test]
    fn the_cache_drops_pods_once_marked_and_relists_per_watch() {
        let cache = OptInCache::default();
        let blend = json!({"lmcache.ai/cacheblend-inject": "true"});
        let conn = json!({"lmcache.ai/lmcache-inject": "true"});
        cache.apply(
            OptIn::Blend,
            watcher::Event::Apply(pod("a", blend.clone(), json!({}))),
        );
        cache.apply(
            OptIn::Connection,
            watcher::Event::Apply(pod("b", conn.clone(), json!({}))),
        );
        assert_eq!(cache.all().len(), 2);
        cache.apply(
            OptIn::Blend,
            watcher::Event::Apply(pod(
                "a",
                blend.clone(),
                json!({"lmcache.ai/cacheblend-injected": "true"}),
            )),
        );
        assert_eq!(
            cache.all().iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        // A relist of the blend watch leaves the connection watch's pods alone.
        cache.apply(OptIn::Blend, watcher::Event::Init);
        cache.apply(
            OptIn::Blend,
            watcher::Event::InitApply(pod("c", blend, json!({}))),
        );
        cache.apply(OptIn::Blend, watcher::Event::InitDone);
        let names: Vec<(OptIn, String)> = cache.all().iter().map(|p| (p.opt_in, p.name.clone())).collect();
        assert_eq!(
            names,
            [
                (OptIn::Blend, "c".to_string()),
                (OptIn::Connection, "b".to_string())
            ]
        );
        cache.apply(
            OptIn::Connection,
            watcher::Event::Delete(pod("b", conn, json!({}))),
        );
        assert_eq!(cache.all().len(), 1);
    }
}
