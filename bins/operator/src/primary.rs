//! The three custom resource kinds behind one trait, so the reconcile pipeline is written once.

use crate::cached_pod::CachedPod;
use crate::context::Stores;
use crate::error::Error;
use crate::keys::Kind;
use crate::reconcile::plan::Plan;
use crate::reconcile::status::{self, ApplyFailure, CommonStatus, Observed, pods, rollout};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use lmcache_api::v1alpha1::{
    CacheBlendEngine, CoordinatorStatus, Endpoint, EngineSpec, EngineStatus, LMCacheCoordinator,
    LMCacheEngine,
};
use lmcache_manifest_renderer::{
    Component, EngineChildren, RenderContext, RenderError, coordinator_url, render_blend_engine,
    render_coordinator, render_engine, selector_labels,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

/// Live children by kind and name, as JSON (from the caches, GETs or apply responses).
pub type LiveChildren = HashMap<(crate::children::ChildKind, String), Value>;

/// A custom resource kind the operator reconciles.
pub trait Primary:
    Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Serialize + Send + Sync + 'static
{
    /// Which kind.
    const KIND: Kind;
    /// Its status type.
    type Status: CommonStatus + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync;

    /// Decodes a raw stored object, applying defaults, with the spec's error messages.
    fn decode(raw: &Value) -> Result<Self, String>;
    /// Runs every validation rule; `Err` carries the joined `ConfigValid` message.
    fn validate(&self) -> Result<(), String>;
    /// The stored status.
    fn status(&self) -> Option<&Self::Status>;
    /// `spec.coordinator.ref.name`, for engine kinds.
    fn coordinator_ref(&self) -> Option<&str> {
        None
    }
    /// The port a coordinator's URL is built from (coordinators only).
    fn coordinator_port(&self) -> Option<i32> {
        None
    }
    /// Accepted fields that have no effect (Normal Events).
    fn warnings(&self) -> Vec<lmcache_validation::Warning> {
        Vec::new()
    }
    /// Renders the children.
    fn plan(&self, ctx: &RenderContext<'_>, sm_api: bool) -> Result<Plan, Error>;
    /// Status after the apply step; `failure` names the children the API server rejected.
    fn ready_status(
        &self,
        live: &LiveChildren,
        stores: &Stores,
        failure: Option<&ApplyFailure>,
        generation: i64,
        now: &Time,
    ) -> Self::Status;
    /// This kind's watch cache.
    fn store(stores: &Stores) -> &Store<DeserializeGuard<Self>>;
    /// The `RolloutComplete` Event's message when `new` completes a rollout `old` showed in
    /// progress (engines only).
    fn rollout_completed(_old: Option<&Self::Status>, _new: &Self::Status) -> Option<String> {
        None
    }
    /// `spec.updateStrategy.restartClients` (engines only).
    fn restart_clients(&self) -> bool {
        false
    }
    /// The engine's own pods (those of its live DaemonSet), sorted as the status lists them.
    fn engine_pods(&self, _live: &LiveChildren, _stores: &Stores) -> Vec<Arc<CachedPod>> {
        Vec::new()
    }
    /// `status.endpoints` as stored (engines only).
    fn stored_endpoints(&self) -> &[Endpoint] {
        &[]
    }
}

/// What differs between the two engine kinds; the [`Primary`] impl below is written once.
pub trait EngineKind:
    Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Serialize + Send + Sync + 'static
{
    /// Which kind.
    const ENGINE_KIND: Kind;
    /// The fields both kinds share.
    fn engine(&self) -> &EngineSpec;
    /// The stored status.
    fn engine_status(&self) -> Option<&EngineStatus>;
    /// Lenient decode of a stored object.
    fn decode_engine(raw: &Value) -> Result<Self, Vec<lmcache_validation::FieldError>>;
    /// Every validation rule of the kind.
    fn validate_engine(&self) -> Result<(), Vec<lmcache_validation::FieldError>>;
    /// The rendered children.
    fn render(&self, ctx: &RenderContext<'_>) -> Result<EngineChildren, RenderError>;
    /// This kind's watch cache.
    fn engine_store(stores: &Stores) -> &Store<DeserializeGuard<Self>>;
    /// `spec.injection.repairMissed`.
    fn repair_missed(&self) -> bool;
}

/// The two [`EngineKind`] impls: the kinds differ in these names only (their specs name
/// `engine`, `status` and `injection_settings` alike, with different types).
macro_rules! engine_kind {
    ($engine:ty, $kind:expr, $decode:path, $validate:path, $render:path, $store:ident) => {
        impl EngineKind for $engine {
            const ENGINE_KIND: Kind = $kind;
            fn engine(&self) -> &EngineSpec {
                &self.spec.engine
            }
            fn engine_status(&self) -> Option<&EngineStatus> {
                self.status.as_ref()
            }
            fn decode_engine(raw: &Value) -> Result<Self, Vec<lmcache_validation::FieldError>> {
                $decode(raw)
            }
            fn validate_engine(&self) -> Result<(), Vec<lmcache_validation::FieldError>> {
                $validate(name_of(self), &self.spec)
            }
            fn render(&self, ctx: &RenderContext<'_>) -> Result<EngineChildren, RenderError> {
                $render(self, ctx)
            }
            fn engine_store(stores: &Stores) -> &Store<DeserializeGuard<Self>> {
                &stores.$store
            }
            fn repair_missed(&self) -> bool {
                self.spec.injection_settings().repair_missed
            }
        }
    };
}

engine_kind!(
    LMCacheEngine,
    Kind::Engine,
    lmcache_validation::decode_engine,
    lmcache_validation::validate_engine,
    render_engine,
    engines
);
engine_kind!(
    CacheBlendEngine,
    Kind::BlendEngine,
    lmcache_validation::decode_blend_engine,
    lmcache_validation::validate_blend_engine,
    render_blend_engine,
    blend_engines
);

impl<E: EngineKind> Primary for E {
    const KIND: Kind = E::ENGINE_KIND;
    type Status = EngineStatus;

    fn decode(raw: &Value) -> Result<Self, String> {
        E::decode_engine(raw).map_err(|e| join(&e))
    }
    fn validate(&self) -> Result<(), String> {
        self.validate_engine().map_err(|e| join(&e))
    }
    fn status(&self) -> Option<&EngineStatus> {
        self.engine_status()
    }
    fn coordinator_ref(&self) -> Option<&str> {
        self.engine()
            .coordinator
            .as_ref()
            .filter(|c| c.url.is_none())
            .and_then(|c| c.ref_.as_ref())
            .map(|r| r.name.as_str())
    }
    fn warnings(&self) -> Vec<lmcache_validation::Warning> {
        lmcache_validation::engine_warnings(self.engine())
    }
    fn plan(&self, ctx: &RenderContext<'_>, sm_api: bool) -> Result<Plan, Error> {
        let generation = self.meta().generation.unwrap_or_default();
        Plan::for_engine(&self.render(ctx)?, name_of(self), generation, sm_api)
    }
    fn ready_status(
        &self,
        live: &LiveChildren,
        stores: &Stores,
        failure: Option<&ApplyFailure>,
        generation: i64,
        now: &Time,
    ) -> EngineStatus {
        let ds = live.get(&(crate::children::ChildKind::DaemonSet, name_of(self).to_string()));
        let count = |field: &str| read_count(ds, field);
        let own = self.engine_pods(live, stores);
        let observed = Observed {
            desired: count("/status/desiredNumberScheduled"),
            ready: count("/status/numberReady"),
            not_ready: pods::not_ready_detail(&own),
        };
        let ds_rollout = ds.map(rollout::DaemonSetRollout::of).unwrap_or_default();
        let up_to_date = rollout::up_to_date(&own, &ds_rollout, observed.desired);
        let mut outdated: Vec<String> = own
            .iter()
            .zip(&up_to_date)
            .filter(|(_, current)| !**current)
            .map(|(pod, _)| pod.node_name.clone())
            .filter(|node| !node.is_empty())
            .collect();
        outdated.dedup();
        let rollout = status::Rollout {
            updated: count("/status/updatedNumberScheduled"),
            up_to_date: rollout::condition(&ds_rollout, observed.desired, &outdated),
        };
        let endpoints = pods::endpoints(&own, self.engine().server.port, &up_to_date);
        let mut status = status::engine_ready_status(
            self.engine_status(),
            &observed,
            endpoints,
            &rollout,
            failure,
            generation,
            now,
        );
        let meta = self.meta();
        if let (Some(namespace), Some(name)) = (&meta.namespace, &meta.name) {
            status.missed_injections = stores.missed.get(&crate::keys::ObjectKey::new(
                E::ENGINE_KIND,
                namespace.clone(),
                name.clone(),
            ));
        }
        status
    }
    fn store(stores: &Stores) -> &Store<DeserializeGuard<Self>> {
        E::engine_store(stores)
    }
    fn restart_clients(&self) -> bool {
        self.engine()
            .update_strategy
            .as_ref()
            .is_some_and(|s| s.restart_clients)
    }
    fn engine_pods(&self, live: &LiveChildren, stores: &Stores) -> Vec<Arc<CachedPod>> {
        let meta = self.meta();
        let name = meta.name.as_deref().unwrap_or_default();
        let namespace = meta.namespace.as_deref().unwrap_or_default();
        let ds_uid = live
            .get(&(crate::children::ChildKind::DaemonSet, name.to_string()))
            .and_then(|d| d.pointer("/metadata/uid"))
            .and_then(Value::as_str);
        // Without a DaemonSet there are no pods of ours (a stray pod with our labels is not one).
        match ds_uid {
            Some(uid) => pods::workload_pods(
                &instance_pods(stores, namespace, name),
                namespace,
                &selector_labels(Component::CacheEngine, name),
                Some(uid),
            ),
            None => Vec::new(),
        }
    }
    fn stored_endpoints(&self) -> &[Endpoint] {
        self.engine_status()
            .and_then(|s| s.endpoints.as_deref())
            .unwrap_or_default()
    }
    fn rollout_completed(old: Option<&EngineStatus>, new: &EngineStatus) -> Option<String> {
        status::rollout_completed(old, new).then(|| {
            let updated = new.updated_instances.unwrap_or_default();
            format!("all {updated} engine pods run the current pod template")
        })
    }
}

fn name_of<K: Resource>(obj: &K) -> &str {
    obj.meta().name.as_deref().unwrap_or_default()
}

/// The cached pods of `namespace` labelled `instance: name` (engine or coordinator pods).
fn instance_pods(stores: &Stores, namespace: &str, name: &str) -> Vec<Arc<CachedPod>> {
    stores.pod_index.pods(&stores.pods, namespace, name)
}

/// An integer field of a live child, 0 when absent.
fn read_count(child: Option<&Value>, field: &str) -> i32 {
    child
        .and_then(|d| d.pointer(field))
        .and_then(Value::as_i64)
        .and_then(|v| i32::try_from(v).ok())
        .unwrap_or(0)
}

fn join(errors: &[lmcache_validation::FieldError]) -> String {
    lmcache_validation::join(errors)
}

impl Primary for LMCacheCoordinator {
    const KIND: Kind = Kind::Coordinator;
    type Status = CoordinatorStatus;

    fn decode(raw: &Value) -> Result<Self, String> {
        lmcache_validation::decode_coordinator(raw).map_err(|e| join(&e))
    }
    fn validate(&self) -> Result<(), String> {
        let name = self.metadata.name.as_deref().unwrap_or_default();
        lmcache_validation::validate_coordinator(name, &self.spec).map_err(|e| join(&e))
    }
    fn status(&self) -> Option<&CoordinatorStatus> {
        self.status.as_ref()
    }
    fn warnings(&self) -> Vec<lmcache_validation::Warning> {
        lmcache_validation::coordinator_warnings(&self.spec)
    }
    fn coordinator_port(&self) -> Option<i32> {
        Some(self.spec.port)
    }
    fn plan(&self, ctx: &RenderContext<'_>, sm_api: bool) -> Result<Plan, Error> {
        let children = render_coordinator(self, ctx)?;
        Plan::for_coordinator(
            &children,
            self.metadata.name.as_deref().unwrap_or_default(),
            sm_api,
        )
    }
    fn ready_status(
        &self,
        live: &LiveChildren,
        stores: &Stores,
        failure: Option<&ApplyFailure>,
        generation: i64,
        now: &Time,
    ) -> CoordinatorStatus {
        let name = self.metadata.name.as_deref().unwrap_or_default();
        let namespace = self.metadata.namespace.as_deref().unwrap_or_default();
        let deployment = live.get(&(crate::children::ChildKind::Deployment, name.to_string()));
        // Coordinator pods are controlled by the Deployment's ReplicaSets: the selector decides.
        let own = match deployment {
            Some(_) => pods::workload_pods(
                &instance_pods(stores, namespace, name),
                namespace,
                &selector_labels(Component::Coordinator, name),
                None,
            ),
            None => Vec::new(),
        };
        let observed = Observed {
            desired: read_count(deployment, "/spec/replicas"),
            ready: read_count(deployment, "/status/readyReplicas"),
            not_ready: pods::not_ready_detail(&own),
        };
        status::coordinator_ready_status(
            self.status.as_ref(),
            &observed,
            coordinator_url(name, namespace, self.spec.port),
            failure,
            generation,
            now,
        )
    }
    fn store(stores: &Stores) -> &Store<DeserializeGuard<Self>> {
        &stores.coordinators
    }
}

/// The URL `coordinator.ref.name` = `name` resolves to in `namespace`, if that coordinator is
/// cached (engine.md §8 step 4). `Err` when it exists but cannot be decoded.
pub fn resolve_coordinator(stores: &Stores, namespace: &str, name: &str) -> Result<Option<String>, Error> {
    let Some(found) = stores.coordinators.get(&ObjectRef::new(name).within(namespace)) else {
        return Ok(None);
    };
    match &found.0 {
        Ok(c) => Ok(Some(coordinator_url(name, namespace, c.spec.port))),
        Err(invalid) => Err(Error::UnreadableCoordinator {
            namespace: namespace.to_string(),
            name: name.to_string(),
            message: invalid.error.clone(),
        }),
    }
}
