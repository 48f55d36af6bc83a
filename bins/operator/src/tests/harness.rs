//! A reconcile context wired to [`FakeApi`], with watch caches refilled from the fake's state.

use super::fake_api::FakeApi;
use crate::children::ChildKind;
use crate::context::{Context, ServiceMonitorApi, Writers};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::primary::Primary;
use crate::reconcile::reconcile;
use crate::state::StatusCoalescer;
use crate::watches::{TriggerStreams, Triggers, child_hook, primary_hook};
use crate::write_counter::WriteCounterLayer;
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher::Event;
use lmcache_api::v1alpha1::{CacheBlendEngine, LMCacheCoordinator, LMCacheEngine};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

pub struct Harness {
    pub fake: FakeApi,
    pub writers: Writers,
    pub ctx: Arc<Context>,
    pub metrics: Metrics,
    pub triggers: Triggers,
    pub streams: TriggerStreams,
}

fn managed(obj: &Value) -> bool {
    obj.pointer("/metadata/labels/app.kubernetes.io~1managed-by")
        .and_then(Value::as_str)
        == Some("lmcache-operator")
}

/// Replaces the cache content (a relist), running `hook` as the watch would.
fn refill<K>(writer: &mut Writer<K>, objects: Vec<Value>, mut hook: impl FnMut(&Event<K>, &Store<K>))
where
    K: Resource + Clone + DeserializeOwned + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    let reader = writer.as_reader();
    let mut events = vec![Event::Init];
    events.extend(
        objects
            .into_iter()
            .map(|o| Event::InitApply(serde_json::from_value(o).expect("fake object decodes"))),
    );
    events.push(Event::InitDone);
    for event in events {
        writer.apply_watcher_event(&event);
        hook(&event, &reader);
    }
}

impl Harness {
    pub fn new(service_monitor_api: bool) -> Self {
        let fake = FakeApi::default();
        let metrics = Metrics::default();
        let client = fake.client(WriteCounterLayer::new(metrics.clone()));
        let writers = Writers::default();
        let mut ctx = Context::new(
            client,
            "cluster.local",
            writers.stores(),
            ServiceMonitorApi::new(service_monitor_api),
            metrics.clone(),
        );
        // Statuses are written at once here; `with_status_coalescing` tests the real timing.
        ctx.statuses = StatusCoalescer::with_timing(Duration::ZERO, Duration::ZERO);
        let ctx = Arc::new(ctx);
        let (triggers, streams) = Triggers::channel(ctx.resyncs.clone());
        Self {
            fake,
            writers,
            ctx,
            metrics,
            triggers,
            streams,
        }
    }

    /// Creates a custom resource (uid `uid-<ns>-<name>`, generation 1) and refreshes the caches.
    pub fn create(&mut self, plural: &str, kind: &str, ns: &str, name: &str, spec: Value) {
        self.fake.put(
            plural,
            json!({
                "apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": kind,
                "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{ns}-{name}-{kind}"),
                             "generation": 1, "resourceVersion": "1"},
                "spec": spec,
            }),
        );
        self.sync();
    }

    /// Replaces a custom resource's spec and bumps its generation.
    pub fn update_spec(&mut self, plural: &str, ns: &str, name: &str, spec: Value) {
        self.fake.edit(plural, ns, name, |o| {
            o["spec"] = spec;
            let generation = o["metadata"]["generation"].as_i64().unwrap_or(1);
            o["metadata"]["generation"] = json!(generation + 1);
        });
        self.sync();
    }

    /// A harness whose status writes are coalesced with the production timing (run under
    /// `tokio::time::pause`).
    pub fn with_status_coalescing() -> Self {
        let mut h = Self::new(true);
        if let Some(ctx) = Arc::get_mut(&mut h.ctx) {
            ctx.statuses = StatusCoalescer::default();
        }
        h
    }

    /// Refills every cache from the fake (children and pods filtered by the managed-by label).
    pub fn sync(&mut self) {
        let of = |plural: &str, only_managed: bool| -> Vec<Value> {
            self.fake
                .objects()
                .into_iter()
                .filter(|((p, _, _), o)| p == plural && (!only_managed || managed(o)))
                .map(|(_, o)| o)
                .collect()
        };
        let w = &mut self.writers;
        let (ctx, t) = (&self.ctx, &self.triggers);
        refill(
            &mut w.engines,
            of("lmcacheengines", false),
            primary_hook::<LMCacheEngine>(ctx.clone(), t.clone()),
        );
        refill(
            &mut w.blend_engines,
            of("cacheblendengines", false),
            primary_hook::<CacheBlendEngine>(ctx.clone(), t.clone()),
        );
        refill(
            &mut w.coordinators,
            of("lmcachecoordinators", false),
            primary_hook::<LMCacheCoordinator>(ctx.clone(), t.clone()),
        );
        refill(
            &mut w.daemon_sets,
            of("daemonsets", true),
            child_hook(ChildKind::DaemonSet, t.clone(), ctx.stores.clone()),
        );
        refill(
            &mut w.deployments,
            of("deployments", true),
            child_hook(ChildKind::Deployment, t.clone(), ctx.stores.clone()),
        );
        refill(
            &mut w.services,
            of("services", true),
            child_hook(ChildKind::Service, t.clone(), ctx.stores.clone()),
        );
        refill(
            &mut w.config_maps,
            of("configmaps", true),
            child_hook(ChildKind::ConfigMap, t.clone(), ctx.stores.clone()),
        );
        refill(
            &mut w.service_monitors,
            of("servicemonitors", true),
            child_hook(ChildKind::ServiceMonitor, t.clone(), ctx.stores.clone()),
        );
        refill(
            &mut w.pods,
            of("pods", true),
            crate::watches::pod_hook(t.clone(), ctx.stores.pod_index.clone()),
        );
    }

    /// One reconcile of the cached object `ns/name`, and the Events it published.
    pub async fn reconcile<K: Primary>(&self, ns: &str, name: &str) -> Result<Action, Error> {
        let obj = K::store(&self.ctx.stores)
            .get(&ObjectRef::new(name).within(ns))
            .unwrap_or_else(|| panic!("{ns}/{name} not cached"));
        let action = reconcile::<K>(obj, self.ctx.clone()).await;
        self.ctx.events_sent().await;
        action
    }

    /// Reconciles, then refreshes the caches (as the watch events would).
    pub async fn reconcile_and_sync<K: Primary>(&mut self, ns: &str, name: &str) -> Action {
        let action = self.reconcile::<K>(ns, name).await.expect("reconcile succeeds");
        self.sync();
        action
    }

    /// The stored status of a custom resource.
    pub fn status(&self, plural: &str, ns: &str, name: &str) -> Value {
        self.fake
            .get(plural, ns, name)
            .and_then(|o| o.get("status").cloned())
            .unwrap_or(Value::Null)
    }

    /// The stored condition `type_` of a custom resource.
    pub fn condition(&self, plural: &str, ns: &str, name: &str, type_: &str) -> Value {
        self.status(plural, ns, name)["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == type_).cloned())
            .unwrap_or(Value::Null)
    }

    /// Drains the trigger channels and the resync queue: every key sent since the last call.
    pub fn take_triggers(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(key) = self.ctx.resyncs.try_next() {
            self.ctx.resyncs.done(&key);
            out.push(key.to_string());
        }
        while let Ok(r) = self.streams.engines.try_recv() {
            out.push(format!(
                "LMCacheEngine {}/{}",
                r.namespace.unwrap_or_default(),
                r.name
            ));
        }
        while let Ok(r) = self.streams.blend_engines.try_recv() {
            out.push(format!(
                "CacheBlendEngine {}/{}",
                r.namespace.unwrap_or_default(),
                r.name
            ));
        }
        while let Ok(r) = self.streams.coordinators.try_recv() {
            out.push(format!(
                "LMCacheCoordinator {}/{}",
                r.namespace.unwrap_or_default(),
                r.name
            ));
        }
        out.sort();
        out.dedup();
        out
    }
}
