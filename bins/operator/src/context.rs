//! What every reconcile shares: the client, the watch caches, the event recorder and the
//! per-object state.

use crate::applied::AppliedChildren;
use crate::cached_pod::CachedPod;
use crate::children::{ChildKind, service_monitor_resource};
use crate::client_cache::{ClientCache, ClientDemand};
use crate::coordinator_index::CoordinatorIndex;
use crate::keys::Uid;
use crate::metrics::Metrics;
use crate::opt_in::OptInCache;
use crate::packed::Packed;
use crate::pod_index::PodIndex;
use crate::reconcile::restart::RestartTracker;
use crate::resync_queue::ResyncQueue;
use crate::state::{Backoff, EventLog, StatusCoalescer};
use crate::watchdog::MissedCounts;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Service};
use kube::Client;
use kube::core::{DeserializeGuard, DynamicObject};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use lmcache_api::v1alpha1::{CacheBlendEngine, LMCacheCoordinator, LMCacheEngine};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::{Semaphore, watch};
use tokio_util::task::TaskTracker;

/// Events sent at once. They are sent beside the reconciles, not by them (see
/// [`Context::publish`]); four in flight keep up with four reconcile slots creating engines.
const EVENT_SENDS: usize = 4;

/// Resyncs in flight when nothing else says (see `run`: twice the reconcile slots).
const DEFAULT_RESYNC_BUDGET: usize = 8;

/// Name the operator reports Events under.
pub const REPORTER: &str = "lmcache-operator";

/// Read handles of every watch cache.
#[derive(Clone)]
pub struct Stores {
    /// LMCacheEngines (all namespaces).
    pub engines: Store<DeserializeGuard<LMCacheEngine>>,
    /// CacheBlendEngines.
    pub blend_engines: Store<DeserializeGuard<CacheBlendEngine>>,
    /// LMCacheCoordinators.
    pub coordinators: Store<DeserializeGuard<LMCacheCoordinator>>,
    /// Children and pods below carry `app.kubernetes.io/managed-by=lmcache-operator` (MT-11).
    pub daemon_sets: Store<Packed<DaemonSet>>,
    /// Coordinator Deployments.
    pub deployments: Store<Packed<Deployment>>,
    /// Lookup and metrics Services.
    pub services: Store<Packed<Service>>,
    /// Connection ConfigMaps.
    pub config_maps: Store<Packed<ConfigMap>>,
    /// ServiceMonitors (empty while the API is not served).
    pub service_monitors: Store<Packed<DynamicObject>>,
    /// Engine and coordinator pods (see [`CachedPod`]).
    pub pods: Store<CachedPod>,
    /// The pods of each engine and coordinator.
    pub pod_index: PodIndex,
    /// Opted-in pods the webhooks left unmarked (the missed-injection watchdog's input).
    pub opt_in: OptInCache,
    /// Missed injections per engine (`status.missedInjections`).
    pub missed: MissedCounts,
    /// Applied children whose watch event is still due; [`Stores::child`] reads through it.
    pub applied: Arc<AppliedChildren>,
}

/// The write handles matching [`Stores`], fed by the watches (or by tests).
pub struct Writers {
    /// See [`Stores::engines`].
    pub engines: Writer<DeserializeGuard<LMCacheEngine>>,
    /// See [`Stores::blend_engines`].
    pub blend_engines: Writer<DeserializeGuard<CacheBlendEngine>>,
    /// See [`Stores::coordinators`].
    pub coordinators: Writer<DeserializeGuard<LMCacheCoordinator>>,
    /// See [`Stores::daemon_sets`].
    pub daemon_sets: Writer<Packed<DaemonSet>>,
    /// See [`Stores::deployments`].
    pub deployments: Writer<Packed<Deployment>>,
    /// See [`Stores::services`].
    pub services: Writer<Packed<Service>>,
    /// See [`Stores::config_maps`].
    pub config_maps: Writer<Packed<ConfigMap>>,
    /// See [`Stores::service_monitors`].
    pub service_monitors: Writer<Packed<DynamicObject>>,
    /// See [`Stores::pods`].
    pub pods: Writer<CachedPod>,
    /// See [`Stores::pod_index`] (shared with the stores).
    pub pod_index: PodIndex,
    /// See [`Stores::opt_in`] (shared with the stores).
    pub opt_in: OptInCache,
    /// See [`Stores::missed`] (shared with the stores).
    pub missed: MissedCounts,
    /// See [`Stores::applied`] (shared with the stores).
    pub applied: Arc<AppliedChildren>,
}

impl Default for Writers {
    fn default() -> Self {
        Self {
            engines: Writer::default(),
            blend_engines: Writer::default(),
            coordinators: Writer::default(),
            daemon_sets: Writer::default(),
            deployments: Writer::default(),
            services: Writer::default(),
            config_maps: Writer::default(),
            service_monitors: Writer::new(service_monitor_resource()),
            pods: Writer::default(),
            pod_index: PodIndex::default(),
            opt_in: OptInCache::default(),
            missed: MissedCounts::default(),
            applied: Arc::default(),
        }
    }
}

impl Writers {
    /// Read handles of these writers.
    pub fn stores(&self) -> Stores {
        Stores {
            engines: self.engines.as_reader(),
            blend_engines: self.blend_engines.as_reader(),
            coordinators: self.coordinators.as_reader(),
            daemon_sets: self.daemon_sets.as_reader(),
            deployments: self.deployments.as_reader(),
            services: self.services.as_reader(),
            config_maps: self.config_maps.as_reader(),
            service_monitors: self.service_monitors.as_reader(),
            pods: self.pods.as_reader(),
            pod_index: self.pod_index.clone(),
            opt_in: self.opt_in.clone(),
            missed: self.missed.clone(),
            applied: self.applied.clone(),
        }
    }
}

fn cached_json<K>(store: &Store<Packed<K>>, key: &ObjectRef<Packed<K>>) -> Option<Value>
where
    K: kube::Resource + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.get(key).and_then(|obj| obj.to_json())
}

impl Stores {
    /// The child `namespace/name` of `kind` as JSON: the cached object, or the operator's own
    /// apply of it while the watch has not delivered that yet ([`AppliedChildren`]).
    pub fn child(&self, kind: ChildKind, namespace: &str, name: &str) -> Option<Value> {
        let cached = self.cached_child(kind, namespace, name);
        self.applied.current(kind, namespace, name, cached)
    }

    fn cached_child(&self, kind: ChildKind, namespace: &str, name: &str) -> Option<Value> {
        match kind {
            ChildKind::DaemonSet => cached_json(&self.daemon_sets, &ObjectRef::new(name).within(namespace)),
            ChildKind::Deployment => cached_json(&self.deployments, &ObjectRef::new(name).within(namespace)),
            ChildKind::Service => cached_json(&self.services, &ObjectRef::new(name).within(namespace)),
            ChildKind::ConfigMap => cached_json(&self.config_maps, &ObjectRef::new(name).within(namespace)),
            ChildKind::ServiceMonitor => cached_json(
                &self.service_monitors,
                &ObjectRef::new_with(name, service_monitor_resource()).within(namespace),
            ),
        }
    }
}

/// Whether the cluster serves `monitoring.coreos.com/v1` ServiceMonitors, as last discovered.
#[derive(Clone, Debug)]
pub struct ServiceMonitorApi {
    tx: Arc<watch::Sender<bool>>,
}

impl ServiceMonitorApi {
    /// Starts as `available`.
    pub fn new(available: bool) -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(available)),
        }
    }

    /// The last discovery result.
    pub fn is_available(&self) -> bool {
        *self.tx.borrow()
    }

    /// Records a discovery result; `true` when the API just became available.
    pub fn set(&self, available: bool) -> bool {
        let was = self.tx.send_replace(available);
        available && !was
    }

    /// Notified on every change.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

/// Shared by every reconcile of every controller.
pub struct Context {
    /// Kubernetes client (its writes are counted by `WriteCounterLayer`).
    pub client: Client,
    /// The client evictions are sent with: one that does not retry a 429 itself (a refused
    /// eviction is reported and retried by the restart step).
    pub eviction_client: Client,
    /// `--cluster-domain`.
    pub cluster_domain: String,
    /// Watch caches.
    pub stores: Stores,
    /// Who the operator's Events are reported by.
    pub reporter: Reporter,
    /// (reason, message) pairs already published per object generation.
    pub events: Arc<EventLog>,
    /// Events being sent.
    events_in_flight: TaskTracker,
    /// Bounds [`Context::events_in_flight`] to [`EVENT_SENDS`] requests at once.
    event_sends: Arc<Semaphore>,
    /// Per-object error backoff.
    pub backoff: Backoff,
    /// Status writes waiting to settle.
    pub statuses: StatusCoalescer,
    /// Coordinator → referencing engines.
    pub coordinator_index: CoordinatorIndex,
    /// ServiceMonitor API availability.
    pub service_monitor_api: ServiceMonitorApi,
    /// Metrics.
    pub metrics: Metrics,
    /// vLLM pods wired to engines (filled only while [`Context::client_demand`] wants them).
    pub clients: ClientCache,
    /// Engines asking for client restarts.
    pub client_demand: ClientDemand,
    /// Which engine pod each node's clients run against, per engine asking for restarts.
    pub restarts: RestartTracker,
    /// Low-priority reconciles (resyncs); a reconcile reports itself done here.
    pub resyncs: Arc<ResyncQueue>,
}

impl Context {
    /// A context with empty per-object state.
    pub fn new(
        client: Client,
        cluster_domain: impl Into<String>,
        stores: Stores,
        service_monitor_api: ServiceMonitorApi,
        metrics: Metrics,
    ) -> Self {
        Self {
            eviction_client: client.clone(),
            client,
            cluster_domain: cluster_domain.into(),
            stores,
            reporter: Reporter::from(REPORTER),
            events: Arc::default(),
            events_in_flight: TaskTracker::new(),
            event_sends: Arc::new(Semaphore::new(EVENT_SENDS)),
            backoff: Backoff::default(),
            statuses: StatusCoalescer::default(),
            coordinator_index: CoordinatorIndex::default(),
            service_monitor_api,
            metrics,
            clients: ClientCache::default(),
            client_demand: ClientDemand::default(),
            restarts: RestartTracker::default(),
            resyncs: Arc::new(ResyncQueue::new(DEFAULT_RESYNC_BUDGET)),
        }
    }

    /// Uses `resyncs` (the queue the triggers push resyncs into).
    pub fn with_resyncs(mut self, resyncs: Arc<ResyncQueue>) -> Self {
        self.resyncs = resyncs;
        self
    }

    /// Sends evictions with `client` (see [`Context::eviction_client`]).
    pub fn with_eviction_client(mut self, client: Client) -> Self {
        self.eviction_client = client;
        self
    }

    /// Publishes an Event on `regarding` unless this (reason, message) was already published
    /// for this generation of this incarnation. The Event is sent in the background: a
    /// reconcile does not hold its worker for it (client-go's event broadcaster is asynchronous
    /// for the same reason), so a new engine costs its reconcile slot the ownership check and
    /// the apply, not a third round trip. Failures are logged, not returned: an Event is never
    /// a reason to retry a reconcile.
    pub fn publish(
        &self,
        regarding: &ObjectReference,
        generation: i64,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        let uid = Uid(regarding.uid.clone().unwrap_or_default());
        if !self.events.first_time(&uid, generation, reason, message) {
            return;
        }
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(message.to_string()),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        // A recorder per Event: kube's recorder folds every Event of the same object, reason
        // and type within six minutes into one series that keeps the first note, so a second
        // `RolloutStarted` or `ClientsRestarted` with another message would only bump a count.
        // Repeats of one message are already dropped above, per generation.
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        let regarding = regarding.clone();
        let log = self.events.clone();
        let sends = self.event_sends.clone();
        self.events_in_flight.spawn(async move {
            // The semaphore is never closed, so a permit always comes.
            let _permit = sends.acquire_owned().await;
            if let Err(error) = recorder.publish(&event, &regarding).await {
                log.unmark(&uid, &event.reason, event.note.as_deref().unwrap_or_default());
                tracing::warn!(
                    namespace = regarding.namespace.as_deref().unwrap_or_default(),
                    name = regarding.name.as_deref().unwrap_or_default(),
                    kind = regarding.kind.as_deref().unwrap_or_default(),
                    reason = event.reason,
                    %error,
                    "cannot publish event"
                );
            }
        });
    }

    /// Waits until every Event published so far was sent or failed: at shutdown, and in tests
    /// before they look at the Events.
    pub async fn events_sent(&self) {
        self.events_in_flight.close();
        self.events_in_flight.wait().await;
        self.events_in_flight.reopen();
    }
}
