//! The missed-injection watchdog. A pod that opted into a webhook but carries none of its marks
//! ([`OptInCache`]) and is older than the grace period (`--missed-injection-grace`: the
//! webhook marks a pod at admission, so a pod that old was admitted without it) is a **missed
//! injection**: it runs without LMCache. Each is reported once (a Warning `InjectionMissed` on
//! the pod and on the engine it names), counted (`lmcache_operator_missed_injections`, and
//! `status.missedInjections` of that engine), and — when that engine sets
//! `injection.repairMissed` and the pod has a controller — evicted once the webhook is ready
//! again, so its controller recreates it through the webhook. Bare pods are only reported.
//!
//! "The webhook is ready" is read from the API, never by dialling it: an EndpointSlice of the
//! webhook's Service (`--webhook-service`) with a ready endpoint. Without that flag nothing is
//! repaired.

use crate::context::Context;
use crate::eviction::{Evicted, evict};
use crate::keys::{Kind, ObjectKey};
use crate::opt_in::{OptInCache, Unmarked};
use crate::primary::EngineKind;
use crate::watches::Triggers;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, ListParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use lmcache_api::constants::reasons;
use lmcache_api::v1alpha1::{CacheBlendEngine, LMCacheEngine};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// The webhook Service whose EndpointSlices tell whether the webhook is ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookService {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl std::str::FromStr for WebhookService {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once('/') {
            Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Self {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!("{text:?}: expected <namespace>/<service name>")),
        }
    }
}

/// The watchdog's settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How old an unmarked opted-in pod must be to count as missed.
    pub grace: Duration,
    /// Where the webhook's readiness is read; `None`: report only.
    pub webhook_service: Option<WebhookService>,
}

/// Missed pods per engine, for `status.missedInjections`. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct MissedCounts {
    inner: Arc<RwLock<HashMap<ObjectKey, i32>>>,
}

impl MissedCounts {
    /// The missed pods naming `key` (none: `None`).
    pub fn get(&self, key: &ObjectKey) -> Option<i32> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
    }

    /// Replaces the counts; returns the engines whose count changed.
    fn replace(&self, counts: HashMap<ObjectKey, i32>) -> Vec<ObjectKey> {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let mut changed: Vec<ObjectKey> = counts
            .iter()
            .filter(|(k, v)| inner.get(*k) != Some(*v))
            .map(|(k, _)| k.clone())
            .chain(inner.keys().filter(|k| !counts.contains_key(*k)).cloned())
            .collect();
        changed.sort();
        *inner = counts;
        changed
    }
}

/// The missed injections among `pods` at `now`: created at least `grace` ago (a pod without a
/// creation time is not judged).
pub fn missed(pods: &[Arc<Unmarked>], now: Timestamp, grace: Duration) -> Vec<Arc<Unmarked>> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    pods.iter()
        .filter(|p| {
            p.created
                .as_ref()
                .is_some_and(|c| now.as_millisecond().saturating_sub(c.0.as_millisecond()) >= grace_ms)
        })
        .cloned()
        .collect()
}

/// The engine a missed pod names.
fn engine_key(pod: &Unmarked) -> Option<ObjectKey> {
    Some(ObjectKey::new(
        pod.opt_in.engine_kind(),
        pod.namespace.clone(),
        pod.engine.clone()?,
    ))
}

/// Missed pods per named engine.
pub fn counts(missed: &[Arc<Unmarked>]) -> HashMap<ObjectKey, i32> {
    let mut out = HashMap::new();
    for key in missed.iter().filter_map(|p| engine_key(p)) {
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// The named engine, if cached: its Event target and whether it asks for repairs.
fn engine_of(ctx: &Context, key: &ObjectKey) -> Option<(ObjectReference, i64, bool)> {
    match key.kind {
        Kind::Engine => cached_engine::<LMCacheEngine>(ctx, key),
        Kind::BlendEngine => cached_engine::<CacheBlendEngine>(ctx, key),
        Kind::Coordinator => None,
    }
}

fn cached_engine<E: EngineKind>(ctx: &Context, key: &ObjectKey) -> Option<(ObjectReference, i64, bool)> {
    let found = E::engine_store(&ctx.stores).get(&ObjectRef::new(&key.name).within(&key.namespace))?;
    let repair = found.0.as_ref().is_ok_and(EngineKind::repair_missed);
    Some((
        found.object_ref(&()),
        found.meta().generation.unwrap_or_default(),
        repair,
    ))
}

fn pod_ref(pod: &Unmarked) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Pod".to_string()),
        namespace: Some(pod.namespace.clone()),
        name: Some(pod.name.clone()),
        uid: Some(pod.uid.clone()),
        ..ObjectReference::default()
    }
}

/// The `InjectionMissed` message on the pod.
pub fn pod_message(pod: &Unmarked) -> String {
    let engine = pod
        .engine
        .as_deref()
        .map(|e| format!(" for {} {e}", pod.opt_in.engine_kind()))
        .unwrap_or_default();
    format!(
        "admitted without the {} webhook (it was down or unreachable): labelled {}=true{engine} but \
         not injected, so it runs without LMCache; delete it once the webhook is ready (or set \
         spec.injection.repairMissed on the engine)",
        pod.opt_in.webhook(),
        pod.opt_in.label(),
    )
}

/// Whether an EndpointSlice of `service` has a ready endpoint (an endpoint without a `ready`
/// condition counts as ready, as the API defines).
async fn webhook_ready(ctx: &Context, service: &WebhookService) -> bool {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &service.namespace);
    let params = ListParams::default().labels(&format!("kubernetes.io/service-name={}", service.name));
    match api.list(&params).await {
        Ok(list) => list.items.iter().any(|slice| {
            slice
                .endpoints
                .iter()
                .any(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        }),
        Err(error) => {
            tracing::warn!(%error, namespace = %service.namespace, service = %service.name,
                "cannot read the webhook's EndpointSlices; missed injections are not repaired");
            false
        }
    }
}

/// Runs the watchdog every `tick` until the process ends.
pub async fn run(ctx: Arc<Context>, cache: OptInCache, triggers: Triggers, settings: Settings) {
    let tick = (settings.grace / 3).clamp(Duration::from_secs(1), Duration::from_secs(10));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported: HashSet<(crate::opt_in::OptIn, String)> = HashSet::new();
    loop {
        ticker.tick().await;
        let found = missed(&cache.all(), Timestamp::now(), settings.grace);
        ctx.metrics.set_missed_injections(found.len());
        for engine in ctx.stores.missed.replace(counts(&found)) {
            triggers.send(&engine);
        }
        reported.retain(|(opt_in, uid)| found.iter().any(|p| p.opt_in == *opt_in && p.uid == *uid));
        let mut repairable = Vec::new();
        for pod in &found {
            let engine = engine_key(pod).and_then(|key| engine_of(&ctx, &key));
            if reported.insert((pod.opt_in, pod.uid.clone())) {
                report(&ctx, pod, engine.as_ref()).await;
            }
            if let Some((regarding, generation, true)) = engine
                && pod.controller.is_some()
            {
                repairable.push((pod.clone(), regarding, generation));
            }
        }
        let Some(service) = &settings.webhook_service else {
            continue;
        };
        if repairable.is_empty() || !webhook_ready(&ctx, service).await {
            continue;
        }
        for (pod, regarding, generation) in repairable {
            repair(&ctx, &pod, &regarding, generation).await;
        }
    }
}

async fn report(ctx: &Context, pod: &Unmarked, engine: Option<&(ObjectReference, i64, bool)>) {
    let message = pod_message(pod);
    tracing::warn!(namespace = %pod.namespace, pod = %pod.name, %message, "missed injection");
    ctx.publish(
        &pod_ref(pod),
        0,
        EventType::Warning,
        reasons::INJECTION_MISSED,
        &message,
    );
    if let Some((regarding, generation, repair)) = engine {
        let then = if *repair && pod.controller.is_some() {
            "; it is evicted once the webhook is ready (injection.repairMissed)"
        } else if *repair {
            "; it has no controller to recreate it, so it is only reported"
        } else {
            ""
        };
        let message = format!(
            "pod {} was admitted without the {} webhook and runs without LMCache{then}",
            pod.name,
            pod.opt_in.webhook()
        );
        ctx.publish(
            regarding,
            *generation,
            EventType::Warning,
            reasons::INJECTION_MISSED,
            &message,
        );
    }
}

async fn repair(ctx: &Context, pod: &Unmarked, regarding: &ObjectReference, generation: i64) {
    let owner = pod.controller.as_deref().unwrap_or("controller");
    match evict(ctx, &pod.namespace, &pod.name, &pod.uid).await {
        Ok(Evicted::Done) => {
            let message = format!(
                "evicted pod {} (admitted without the {} webhook) so its {owner} recreates it through the webhook",
                pod.name,
                pod.opt_in.webhook()
            );
            tracing::info!(namespace = %pod.namespace, pod = %pod.name, "missed injection repaired");
            ctx.publish(
                regarding,
                generation,
                EventType::Normal,
                reasons::MISSED_INJECTION_REPAIRED,
                &message,
            );
        }
        Ok(Evicted::Refused(reason)) => {
            let message = format!(
                "cannot evict pod {} (admitted without the {} webhook): {reason}; retrying",
                pod.name,
                pod.opt_in.webhook()
            );
            tracing::warn!(namespace = %pod.namespace, pod = %pod.name, %message, "missed injection repair refused");
            ctx.publish(
                regarding,
                generation,
                EventType::Warning,
                reasons::MISSED_INJECTION_REPAIR_BLOCKED,
                &message,
            );
        }
        Err(error) => {
            tracing::warn!(namespace = %pod.namespace, pod = %pod.name, %error, "cannot evict a missed pod; retrying");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opt_in::OptIn;

    fn pod(name: &str, opt_in: OptIn, engine: Option<&str>, created: Option<&str>) -> Arc<Unmarked> {
        Arc::new(Unmarked {
            opt_in,
            namespace: "team-a".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            created: created.map(|c| serde_json::from_value(serde_json::json!(c)).unwrap()),
            engine: engine.map(str::to_string),
            controller: Some("ReplicaSet".into()),
        })
    }

    #[test]
    fn only_pods_older_than_the_grace_period_are_missed() {
        let now: Timestamp = "2026-12-01T10:01:00Z".parse().unwrap();
        let pods = [
            pod(
                "old",
                OptIn::Connection,
                Some("cache"),
                Some("2026-12-01T10:00:00Z"),
            ),
            pod(
                "edge",
                OptIn::Connection,
                Some("cache"),
                Some("2026-12-01T10:00:30Z"),
            ),
            pod("young", OptIn::Blend, Some("blend"), Some("2026-12-01T10:00:45Z")),
            pod("unknown", OptIn::Blend, None, None),
        ];
        let found: Vec<String> = missed(&pods, now, Duration::from_secs(30))
            .iter()
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(found, ["old", "edge"]);
    }

    #[test]
    fn counts_are_per_engine_kind_namespace_and_name() {
        let pods = [
            pod("a", OptIn::Connection, Some("cache"), None),
            pod("b", OptIn::Connection, Some("cache"), None),
            pod("c", OptIn::Blend, Some("cache"), None),
            pod("d", OptIn::Blend, None, None),
        ];
        let counts = counts(&pods);
        assert_eq!(
            counts.get(&ObjectKey::new(Kind::Engine, "team-a", "cache")),
            Some(&2)
        );
        assert_eq!(
            counts.get(&ObjectKey::new(Kind::BlendEngine, "team-a", "cache")),
            Some(&1)
        );
        assert_eq!(counts.len(), 2, "a pod naming no engine counts only in the gauge");
        let store = MissedCounts::default();
        assert_eq!(store.replace(counts.clone()).len(), 2);
        assert!(
            store.replace(counts).is_empty(),
            "unchanged counts trigger nothing"
        );
        assert_eq!(
            store.replace(HashMap::new()),
            [
                ObjectKey::new(Kind::Engine, "team-a", "cache"),
                ObjectKey::new(Kind::BlendEngine, "team-a", "cache")
            ]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
    }

    #[test]
    fn messages_say_what_happened_and_what_to_do() {
        let p = pod("vllm-0", OptIn::Blend, Some("blend"), None);
        assert_eq!(
            pod_message(&p),
            "admitted without the CacheBlend webhook (it was down or unreachable): labelled \
             lmcache.ai/cacheblend-inject=true for CacheBlendEngine blend but not injected, so it \
             runs without LMCache; delete it once the webhook is ready (or set \
             spec.injection.repairMissed on the engine)"
        );
        assert_eq!(
            "lmcache-operator-system/lmcache-operator-webhook".parse::<WebhookService>(),
            Ok(WebhookService {
                namespace: "lmcache-operator-system".into(),
                name: "lmcache-operator-webhook".into()
            })
        );
        assert!("webhook".parse::<WebhookService>().is_err());
        assert!("a/b/c".parse::<WebhookService>().is_err());
    }
}
