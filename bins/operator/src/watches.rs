//! The watches. Each kind is watched once (children and pods with the `managed-by` label
//! selector, MT-11); every event updates that kind's cache and is mapped to the custom resources
//! it concerns, which are sent to the matching controller's trigger channel. Deletions are
//! mapped too, so a deleted child is recreated, and they drop per-object state (MT-2). The
//! client pod watch (`client_cache`) runs only while an engine asks for client restarts; two
//! metadata watches of the pods opted into each webhook feed the missed-injection watchdog.

use crate::cached_pod::CachedPod;
use crate::children::{ChildKind, service_monitor_gvk, service_monitor_resource};
use crate::context::{Context, Stores, Writers};
use crate::keys::{Kind, ObjectKey, Uid};
use crate::list_strategy::ListStrategy;
use crate::mapping::{engines_of_coordinator, engines_of_pod, owner_of};
use crate::opt_in::OptIn;
use crate::packed::Packed;
use crate::pod_index::PodIndex;
use crate::primary::Primary;
use crate::reconcile::status::CommonStatus;
use crate::resync_queue::ResyncQueue;
use crate::slim;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::Api;
use kube::core::{DeserializeGuard, DynamicObject, PartialObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use lmcache_api::constants::labels;
use lmcache_api::v1alpha1::{CacheBlendEngine, LMCacheCoordinator, LMCacheEngine};
use lmcache_runtime::{Liveness, LivenessCheck};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

/// Trigger channel item of the controller for `K`.
pub type TriggerRef<K> = ObjectRef<DeserializeGuard<K>>;

/// Senders into the three controllers' trigger channels, and the low-priority queue of
/// resyncs in front of them ([`ResyncQueue`]).
#[derive(Clone)]
pub struct Triggers {
    engines: UnboundedSender<TriggerRef<LMCacheEngine>>,
    blend_engines: UnboundedSender<TriggerRef<CacheBlendEngine>>,
    coordinators: UnboundedSender<TriggerRef<LMCacheCoordinator>>,
    resyncs: Arc<ResyncQueue>,
}

/// The receiving ends, one per controller.
pub struct TriggerStreams {
    /// LMCacheEngine controller.
    pub engines: UnboundedReceiver<TriggerRef<LMCacheEngine>>,
    /// CacheBlendEngine controller.
    pub blend_engines: UnboundedReceiver<TriggerRef<CacheBlendEngine>>,
    /// LMCacheCoordinator controller.
    pub coordinators: UnboundedReceiver<TriggerRef<LMCacheCoordinator>>,
}

impl Triggers {
    /// Connected senders and receivers; resyncs wait in `resyncs`.
    pub fn channel(resyncs: Arc<ResyncQueue>) -> (Self, TriggerStreams) {
        let (e_tx, e_rx) = unbounded();
        let (b_tx, b_rx) = unbounded();
        let (c_tx, c_rx) = unbounded();
        (
            Self {
                engines: e_tx,
                blend_engines: b_tx,
                coordinators: c_tx,
                resyncs,
            },
            TriggerStreams {
                engines: e_rx,
                blend_engines: b_rx,
                coordinators: c_rx,
            },
        )
    }

    /// Asks the controller of `key.kind` to reconcile `key`. A closed channel (shutdown) is
    /// ignored.
    pub fn send(&self, key: &ObjectKey) {
        let (namespace, name) = (key.namespace.as_str(), key.name.as_str());
        // A closed channel means the controllers stopped (shutdown): nothing to do.
        match key.kind {
            Kind::Engine => {
                let _ = self
                    .engines
                    .unbounded_send(ObjectRef::new(name).within(namespace));
            }
            Kind::BlendEngine => {
                let _ = self
                    .blend_engines
                    .unbounded_send(ObjectRef::new(name).within(namespace));
            }
            Kind::Coordinator => {
                let _ = self
                    .coordinators
                    .unbounded_send(ObjectRef::new(name).within(namespace));
            }
        }
    }

    /// Asks for a low-priority reconcile of `key` (a resync: nothing is known to have changed).
    pub fn resync(&self, key: ObjectKey) {
        self.resyncs.push(key);
    }

    /// Asks for a low-priority reconcile of every cached custom resource.
    pub fn resync_all(&self, stores: &Stores) {
        for key in all_keys(&stores.engines)
            .chain(all_keys(&stores.blend_engines))
            .chain(all_keys(&stores.coordinators))
        {
            self.resync(key);
        }
    }

    /// Hands the queued resyncs to the controllers as their budget allows; runs until the
    /// process ends.
    pub async fn feed_resyncs(self) {
        loop {
            let key = self.resyncs.next().await;
            self.send(&key);
        }
    }
}

fn key_of<K: Primary>(obj: &DeserializeGuard<K>) -> Option<ObjectKey> {
    let meta = obj.meta();
    Some(ObjectKey::new(
        K::KIND,
        meta.namespace.clone()?,
        meta.name.clone()?,
    ))
}

fn all_keys<K: Primary>(store: &Store<DeserializeGuard<K>>) -> impl Iterator<Item = ObjectKey> + use<K> {
    store.state().into_iter().filter_map(|o| key_of(&*o))
}

/// Where the watches report whether they work (`/healthz`, lifecycle.md §4).
#[derive(Clone, Debug)]
pub struct WatchHealth {
    liveness: Liveness,
    limit: Duration,
}

impl WatchHealth {
    /// Watches failing for `limit` without a success make the process unhealthy.
    pub fn new(liveness: Liveness, limit: Duration) -> Self {
        Self { liveness, limit }
    }

    fn check(&self, what: &str) -> LivenessCheck {
        self.liveness.check(format!("watch {what}"), self.limit)
    }
}

/// Runs one watch: feeds `writer` and calls `on_event` after each event was applied.
async fn run_watch<K>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    writer: &mut Writer<K>,
    mut on_event: impl FnMut(&watcher::Event<K>, &Store<K>),
    what: &str,
    health: &LivenessCheck,
) where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    let reader = writer.as_reader();
    drive(stream, what, health, |event| {
        writer.apply_watcher_event(&event);
        on_event(&event, &reader);
    })
    .await;
}

/// Runs a watch stream to its end, handing each event to `on_event` and reporting to `health`.
/// Every watch of the operator goes through here (the cached ones through [`run_watch`]).
pub(crate) async fn drive<K>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    what: &str,
    health: &LivenessCheck,
    mut on_event: impl FnMut(watcher::Event<K>),
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                health.ok();
                on_event(event);
            }
            // Watch errors are retried by the stream's backoff; only a long run of them
            // (without a success in between) makes the process unhealthy.
            Err(error) => {
                health.failing();
                tracing::warn!(watch = what, %error, "watch error");
            }
        }
    }
}

fn managed_by(lists: ListStrategy) -> watcher::Config {
    lists.apply(watcher::Config::default().labels(&format!(
        "{}={}",
        labels::MANAGED_BY,
        labels::MANAGED_BY_VALUE
    )))
}

/// The watch of `api`. Lists are streamed or paged ([`ListStrategy`]), so a relist never holds
/// a whole fleet in one response. What a cache keeps of each object is decided by its type (`Packed`,
/// `CachedPod`) or, for custom resources, by `slim`.
fn watch_stream<K>(
    api: Api<K>,
    config: watcher::Config,
    slim: fn(&mut K),
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, config).default_backoff().modify(slim)
}

/// Nothing left to trim: the type already holds only what is read.
fn keep<K>(_: &mut K) {}

/// Maps a child event to the child's controller. A (re)list says nothing about children deleted
/// while the watch was not running (a watch that started late, like the ServiceMonitor one
/// when its API appears, or one that resynced after an error), so after every list every
/// custom resource is reconciled once: a child deleted in that gap is recreated now, not at the
/// next resync. Each event also settles the operator's expectation of its own apply
/// ([`crate::applied`]).
pub(crate) fn child_hook<K: Resource<DynamicType = D> + Clone, D: Eq + Hash + Clone>(
    kind: ChildKind,
    triggers: Triggers,
    stores: Stores,
) -> impl FnMut(&watcher::Event<K>, &Store<K>) {
    move |event, _store| match event {
        watcher::Event::Apply(obj) | watcher::Event::Delete(obj) => {
            let meta = obj.meta();
            let (namespace, name) = (
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default(),
            );
            if matches!(event, watcher::Event::Delete(_)) {
                stores.applied.deleted(kind, namespace, name);
            } else {
                stores
                    .applied
                    .observed(kind, namespace, name, meta.resource_version.as_deref());
            }
            if let Some(owner) = owner_of(meta) {
                triggers.send(&owner);
            }
        }
        watcher::Event::InitDone => {
            stores.applied.relisted(kind);
            triggers.resync_all(&stores);
        }
        watcher::Event::Init | watcher::Event::InitApply(_) => {}
    }
}

/// Keeps the pod index in step with the pod watch and maps each pod to the custom resources of
/// its instance label.
pub(crate) fn pod_hook(
    triggers: Triggers,
    index: PodIndex,
) -> impl FnMut(&watcher::Event<CachedPod>, &Store<CachedPod>) {
    move |event, store| match event {
        watcher::Event::Apply(pod) => {
            index.apply(pod);
            for key in engines_of_pod(pod) {
                triggers.send(&key);
            }
        }
        watcher::Event::Delete(pod) => {
            index.delete(pod);
            for key in engines_of_pod(pod) {
                triggers.send(&key);
            }
        }
        watcher::Event::InitDone => {
            index.rebuild(store);
            for pod in store.state() {
                for key in engines_of_pod(&pod) {
                    triggers.resync(key);
                }
            }
        }
        watcher::Event::Init | watcher::Event::InitApply(_) => {}
    }
}

/// Keeps the coordinator index, object gauge and per-object state in step with an engine watch.
pub(crate) fn primary_hook<K: Primary>(
    ctx: Arc<Context>,
    triggers: Triggers,
) -> impl FnMut(&watcher::Event<DeserializeGuard<K>>, &Store<DeserializeGuard<K>>) {
    move |event, store| {
        match event {
            watcher::Event::Apply(obj) => {
                if let Some(key) = key_of(obj) {
                    if K::KIND != Kind::Coordinator {
                        let usable = obj.0.as_ref().ok();
                        ctx.coordinator_index
                            .set(&key, usable.and_then(|o| o.coordinator_ref()));
                        ctx.client_demand
                            .set(&key, usable.is_some_and(|o| o.restart_clients()));
                    }
                    triggers.send(&key);
                }
                if K::KIND == Kind::Coordinator && url_changed(&ctx, obj) {
                    for engine in engines_of_coordinator(&ctx.coordinator_index, obj.meta()) {
                        triggers.send(&engine);
                    }
                }
            }
            watcher::Event::Delete(obj) => {
                if let Some(uid) = &obj.meta().uid {
                    let uid = Uid(uid.clone());
                    ctx.events.forget(&uid);
                    ctx.backoff.reset(&uid);
                    ctx.statuses.forget(&uid);
                    ctx.restarts.forget(&uid);
                }
                if let Some(key) = key_of(obj) {
                    ctx.coordinator_index.remove(&key);
                    ctx.client_demand.set(&key, false);
                }
                if K::KIND == Kind::Coordinator {
                    if let Some(key) = coordinator_key(obj.meta()) {
                        ctx.coordinator_index.forget_coordinator(&key);
                    }
                    for engine in engines_of_coordinator(&ctx.coordinator_index, obj.meta()) {
                        triggers.send(&engine);
                    }
                }
            }
            watcher::Event::InitDone => {
                let objects = store.state();
                if K::KIND != Kind::Coordinator {
                    ctx.coordinator_index.rebuild(
                        K::KIND,
                        objects.iter().filter_map(|o| {
                            Some((key_of(&**o)?, o.0.as_ref().ok().and_then(|o| o.coordinator_ref())))
                        }),
                    );
                    ctx.client_demand.rebuild(
                        K::KIND,
                        objects
                            .iter()
                            .filter(|o| o.0.as_ref().is_ok_and(|o| o.restart_clients()))
                            .filter_map(|o| key_of(&**o)),
                    );
                }
                prune_state(&ctx);
                if K::KIND == Kind::Coordinator {
                    ctx.coordinator_index.clear_resolved();
                }
                for obj in &objects {
                    if let Some(key) = key_of(&**obj) {
                        // A spec the operator has not acted on yet (changed while it was not
                        // watching) is a change, not a resync.
                        if spec_unobserved(obj) {
                            triggers.send(&key);
                        } else {
                            triggers.resync(key);
                        }
                    }
                    if K::KIND == Kind::Coordinator {
                        url_changed(&ctx, obj);
                        for engine in engines_of_coordinator(&ctx.coordinator_index, obj.meta()) {
                            triggers.resync(engine);
                        }
                    }
                }
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
        ctx.metrics.set_objects(K::KIND, store.len());
    }
}

/// `metadata.generation` differs from `status.observedGeneration` (or there is no status yet).
fn spec_unobserved<K: Primary>(obj: &DeserializeGuard<K>) -> bool {
    let observed = obj
        .0
        .as_ref()
        .ok()
        .and_then(|o| o.status())
        .and_then(|s| s.observed_generation());
    observed.is_none() || observed != obj.meta().generation
}

fn coordinator_key(meta: &kube::core::ObjectMeta) -> Option<crate::keys::CoordinatorKey> {
    Some(crate::keys::CoordinatorKey {
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
    })
}

/// Whether the coordinator event changes what engines referencing it render (its URL, or
/// whether it can be read at all); a status write of the coordinator does not.
fn url_changed<K: Primary>(ctx: &Context, obj: &DeserializeGuard<K>) -> bool {
    let port = obj.0.as_ref().ok().and_then(|c| c.coordinator_port());
    coordinator_key(obj.meta()).is_some_and(|key| ctx.coordinator_index.resolves_to(key, port))
}

/// Drops per-object state of objects no longer cached (deletions missed during a relist).
fn prune_state(ctx: &Context) {
    let mut live = std::collections::HashSet::new();
    let stores = &ctx.stores;
    for meta in stores
        .engines
        .state()
        .iter()
        .map(|o| o.meta().clone())
        .chain(stores.blend_engines.state().iter().map(|o| o.meta().clone()))
        .chain(stores.coordinators.state().iter().map(|o| o.meta().clone()))
    {
        if let Some(uid) = meta.uid {
            live.insert(Uid(uid));
        }
    }
    ctx.events.retain(|uid| live.contains(uid));
    ctx.backoff.retain(|uid| live.contains(uid));
    ctx.statuses.retain(|uid| live.contains(uid));
    ctx.restarts.retain(|uid| live.contains(uid));
}

/// Spawns one watch task owning its writer.
fn spawn_watch<K>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    mut writer: Writer<K>,
    on_event: impl FnMut(&watcher::Event<K>, &Store<K>) + Send + 'static,
    what: &'static str,
    health: &WatchHealth,
) where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    let check = health.check(what);
    tokio::spawn(async move { run_watch(stream, &mut writer, on_event, what, &check).await });
}

/// Spawns every watch. The ServiceMonitor watch runs only while the API is served.
pub fn spawn_watches(
    client: &Client,
    lists: ListStrategy,
    writers: Writers,
    ctx: Arc<Context>,
    triggers: Triggers,
    health: &WatchHealth,
) {
    let Writers {
        engines,
        blend_engines,
        coordinators,
        daemon_sets,
        deployments,
        services,
        config_maps,
        service_monitors,
        pods,
        pod_index: _,
        opt_in,
        missed: _,
        applied: _,
    } = writers;
    let all = lists.apply(watcher::Config::default());
    spawn_watch(
        watch_stream(
            Api::<DeserializeGuard<LMCacheEngine>>::all(client.clone()),
            all.clone(),
            slim::primary,
        ),
        engines,
        primary_hook::<LMCacheEngine>(ctx.clone(), triggers.clone()),
        "lmcacheengines",
        health,
    );
    spawn_watch(
        watch_stream(
            Api::<DeserializeGuard<CacheBlendEngine>>::all(client.clone()),
            all.clone(),
            slim::primary,
        ),
        blend_engines,
        primary_hook::<CacheBlendEngine>(ctx.clone(), triggers.clone()),
        "cacheblendengines",
        health,
    );
    spawn_watch(
        watch_stream(
            Api::<DeserializeGuard<LMCacheCoordinator>>::all(client.clone()),
            all,
            slim::primary,
        ),
        coordinators,
        primary_hook::<LMCacheCoordinator>(ctx.clone(), triggers.clone()),
        "lmcachecoordinators",
        health,
    );
    spawn_watch(
        watch_stream(
            Api::<Packed<DaemonSet>>::all(client.clone()),
            managed_by(lists),
            keep,
        ),
        daemon_sets,
        child_hook(ChildKind::DaemonSet, triggers.clone(), ctx.stores.clone()),
        "daemonsets",
        health,
    );
    spawn_watch(
        watch_stream(
            Api::<Packed<Deployment>>::all(client.clone()),
            managed_by(lists),
            keep,
        ),
        deployments,
        child_hook(ChildKind::Deployment, triggers.clone(), ctx.stores.clone()),
        "deployments",
        health,
    );
    spawn_watch(
        watch_stream(
            Api::<Packed<Service>>::all(client.clone()),
            managed_by(lists),
            keep,
        ),
        services,
        child_hook(ChildKind::Service, triggers.clone(), ctx.stores.clone()),
        "services",
        health,
    );
    spawn_watch(
        watch_stream(
            Api::<Packed<ConfigMap>>::all(client.clone()),
            managed_by(lists),
            keep,
        ),
        config_maps,
        child_hook(ChildKind::ConfigMap, triggers.clone(), ctx.stores.clone()),
        "configmaps",
        health,
    );
    spawn_watch(
        watch_stream(Api::<CachedPod>::all(client.clone()), managed_by(lists), keep),
        pods,
        pod_hook(triggers.clone(), ctx.stores.pod_index.clone()),
        "pods",
        health,
    );
    for which in OptIn::ALL {
        let check = health.check(match which {
            OptIn::Blend => "pods opted into the CacheBlend webhook",
            OptIn::Connection => "pods opted into the connection webhook",
        });
        let config = lists.apply(watcher::Config::default().labels(&which.selector()));
        let stream = watcher(Api::<PartialObjectMeta<Pod>>::all(client.clone()), config).default_backoff();
        let cache = opt_in.clone();
        tokio::spawn(async move {
            drive(stream, which.label(), &check, |event| cache.apply(which, event)).await;
        });
    }
    tokio::spawn(crate::client_cache::watch_clients(
        client.clone(),
        ctx.clients.clone(),
        ctx.client_demand.clone(),
        health.check("client pods"),
    ));
    tokio::spawn(watch_service_monitors(
        client.clone(),
        lists,
        service_monitors,
        ctx,
        triggers,
        health.check("servicemonitors"),
    ));
}

/// Watches ServiceMonitors while the API is available; empties the cache when it goes away.
async fn watch_service_monitors(
    client: Client,
    lists: ListStrategy,
    mut writer: Writer<Packed<DynamicObject>>,
    ctx: Arc<Context>,
    triggers: Triggers,
    health: LivenessCheck,
) {
    let mut availability = ctx.service_monitor_api.subscribe();
    loop {
        if availability.wait_for(|available| *available).await.is_err() {
            return;
        }
        let api = Api::<Packed<DynamicObject>>::all_with(client.clone(), &service_monitor_resource());
        let watch = run_watch(
            watch_stream(api, managed_by(lists), keep),
            &mut writer,
            child_hook(ChildKind::ServiceMonitor, triggers.clone(), ctx.stores.clone()),
            "servicemonitors",
            &health,
        );
        tokio::select! {
            () = watch => return,
            lost = availability.wait_for(|available| !*available) => {
                if lost.is_err() {
                    return;
                }
                tracing::info!("ServiceMonitor API gone; stopping its watch");
            }
        }
        // Not watching is not failing.
        health.ok();
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
    }
}

/// Re-checks every `interval` whether `monitoring.coreos.com/v1` ServiceMonitors are served;
/// when they appear, every custom resource is reconciled so wanted ServiceMonitors are created.
pub async fn recheck_service_monitor_api(
    client: Client,
    ctx: Arc<Context>,
    triggers: Triggers,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Some(available) = service_monitor_api_served(&client).await
            && ctx.service_monitor_api.set(available)
        {
            tracing::info!("ServiceMonitor API now available; reconciling everything");
            triggers.resync_all(&ctx.stores);
        }
    }
}

/// `Some(served)`, or `None` when discovery itself failed (keep the last answer).
pub async fn service_monitor_api_served(client: &Client) -> Option<bool> {
    let gvk = service_monitor_gvk();
    match client
        .list_api_group_resources(&format!("{}/{}", gvk.group, gvk.version))
        .await
    {
        Ok(list) => Some(list.resources.iter().any(|r| r.name == "servicemonitors")),
        Err(kube::Error::Api(status)) if status.code == 404 => Some(false),
        Err(error) => {
            tracing::warn!(%error, "ServiceMonitor API discovery failed");
            None
        }
    }
}
