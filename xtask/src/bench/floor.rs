//! The convergence floor: a purpose-built client that does only what must be done for an engine
//! to be reported `Running` — render its children with `lmcache-manifest-renderer`, server-side
//! apply them, and once the DaemonSet reports every pod ready write the final status — with the
//! same concurrency as the operator and no controller machinery (no ownership check, no
//! convergence check, no events, no intermediate statuses).

use anyhow::Context;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use lmcache_api::constants::{conditions, labels, phases, reasons};
use lmcache_api::v1alpha1::{Endpoint, EngineStatus};
use lmcache_manifest_renderer::RenderContext;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// The operator's field managers, so the floor writes exactly what the operator would own.
const FIELD_MANAGER: &str = "lmcache-operator";
const STATUS_FIELD_MANAGER: &str = "lmcache-operator/status";

/// Writes the floor client sent.
#[derive(Debug, Default)]
pub struct FloorWrites {
    pub child_applies: AtomicU64,
    pub status_writes: AtomicU64,
}

/// An engine whose children are applied, waiting for its DaemonSet.
#[derive(Clone, Debug)]
struct Applied {
    generation: i64,
    port: i32,
}

struct Shared {
    client: Client,
    permits: Semaphore,
    applied: Mutex<HashMap<(String, String), Applied>>,
    done: Mutex<HashSet<(String, String)>>,
    daemon_sets: Store<DaemonSet>,
    pods: Store<Pod>,
    writes: FloorWrites,
    namespace_prefix: String,
}

/// The keys of engines whose status is due, from the child applies and the DaemonSet watch.
type StatusQueue = UnboundedSender<(String, String)>;

/// Runs the floor for the engines arriving on `engines` (stored objects, with UIDs) until
/// `expected` statuses are written. `concurrency` requests-in-flight slots are shared by the
/// child applies and the status writes, as the operator's reconcile slots are.
pub async fn run(
    client: Client,
    engines: UnboundedReceiver<Value>,
    expected: usize,
    concurrency: usize,
    namespace_prefix: &str,
) -> anyhow::Result<FloorWritesSnapshot> {
    let selector = format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE);
    let (daemon_sets, ds_writer) = reflector::store::<DaemonSet>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let shared = Arc::new(Shared {
        client: client.clone(),
        permits: Semaphore::new(concurrency.max(1)),
        applied: Mutex::default(),
        done: Mutex::default(),
        daemon_sets,
        pods,
        writes: FloorWrites::default(),
        namespace_prefix: namespace_prefix.to_string(),
    });
    let pod_task = tokio::spawn(watch_pods(&client, pod_writer, &selector));
    let (status_tx, status_rx) = futures::channel::mpsc::unbounded::<(String, String)>();
    let ds_task = tokio::spawn(watch_daemon_sets(
        shared.clone(),
        ds_writer,
        &selector,
        status_tx.clone(),
    ));
    let mut applies = tokio::spawn(apply_all(shared.clone(), engines, expected, status_tx.clone()));
    let statuses = write_statuses(shared.clone(), status_rx, expected);
    tokio::pin!(statuses);
    // A failed apply means some statuses never come: stop at once instead of waiting.
    let result = tokio::select! {
        written = &mut statuses => written.map(drop),
        applied = &mut applies => match applied {
            Ok(Ok(_)) => statuses.await.map(drop),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::Error::from(e).context("floor apply task")),
        },
    };
    drop(status_tx);
    pod_task.abort();
    ds_task.abort();
    applies.abort();
    result?;
    Ok(FloorWritesSnapshot {
        child_applies: shared.writes.child_applies.load(Ordering::Relaxed),
        status_writes: shared.writes.status_writes.load(Ordering::Relaxed),
    })
}

/// Keeps the pod store current (the endpoints of the statuses).
fn watch_pods(client: &Client, writer: Writer<Pod>, selector: &str) -> impl Future<Output = ()> + use<> {
    reflector::reflector(
        writer,
        watcher(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().labels(selector),
        ),
    )
    .default_backoff()
    .for_each(|_| async {})
}

/// Keeps the DaemonSet store current and queues the status of every engine a change makes
/// ready to report.
fn watch_daemon_sets(
    shared: Arc<Shared>,
    writer: Writer<DaemonSet>,
    selector: &str,
    status_tx: StatusQueue,
) -> impl Future<Output = ()> + use<> {
    reflector::reflector(
        writer,
        watcher(
            Api::<DaemonSet>::all(shared.client.clone()),
            watcher::Config::default().labels(selector),
        ),
    )
    .default_backoff()
    .applied_objects()
    .for_each(move |ds| {
        if let Ok(ds) = ds {
            let key = (ds.namespace().unwrap_or_default(), ds.name_any());
            if shared.ready_to_report(&key) {
                let _ = status_tx.unbounded_send(key);
            }
        }
        async {}
    })
}

/// Applies the children of every engine as it arrives (each waits for a slot) and queues its
/// status if its DaemonSet is already ready.
async fn apply_all(
    shared: Arc<Shared>,
    engines: UnboundedReceiver<Value>,
    expected: usize,
    status_tx: StatusQueue,
) -> anyhow::Result<Vec<()>> {
    engines
        .map(|raw| {
            let shared = shared.clone();
            let tx = status_tx.clone();
            async move {
                let key = shared.apply_children(&raw).await?;
                if shared.ready_to_report(&key) {
                    let _ = tx.unbounded_send(key);
                }
                anyhow::Ok(())
            }
        })
        // Every engine may queue; the semaphore admits `concurrency` at a time.
        .buffer_unordered(expected.max(1))
        .try_collect::<Vec<()>>()
        .await
}

/// Writes the queued statuses until `expected` are written.
async fn write_statuses(
    shared: Arc<Shared>,
    queue: UnboundedReceiver<(String, String)>,
    expected: usize,
) -> anyhow::Result<Vec<bool>> {
    queue
        .map(|key| {
            let shared = shared.clone();
            async move { shared.write_status(&key).await }
        })
        .buffer_unordered(expected.max(1))
        .try_filter(|wrote| futures::future::ready(*wrote))
        .take(expected)
        .try_collect::<Vec<bool>>()
        .await
}

/// Counts of the floor's writes.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct FloorWritesSnapshot {
    pub child_applies: u64,
    pub status_writes: u64,
}

impl Shared {
    /// Renders and applies the children of one engine; returns its key.
    async fn apply_children(&self, raw: &Value) -> anyhow::Result<(String, String)> {
        // One slot per engine for decode, render and every child, as a reconcile holds a worker.
        let _permit = self.permits.acquire().await?;
        let engine = lmcache_validation::decode_engine(raw)
            .map_err(|e| anyhow::anyhow!("{}", lmcache_validation::join(&e)))?;
        let namespace = engine.namespace().unwrap_or_default();
        let name = engine.name_any();
        let generation = engine.metadata.generation.unwrap_or(1);
        let children =
            lmcache_manifest_renderer::render_engine(&engine, &RenderContext::new("cluster.local"))?;
        let bodies = [
            (
                ApiResource::erase::<DaemonSet>(&()),
                serde_json::to_value(&children.daemon_set)?,
            ),
            (
                ApiResource::erase::<Service>(&()),
                serde_json::to_value(&children.service)?,
            ),
            (
                ApiResource::erase::<Service>(&()),
                serde_json::to_value(&children.metrics_service)?,
            ),
            (
                ApiResource::erase::<ConfigMap>(&()),
                serde_json::to_value(&children.config_map)?,
            ),
        ];
        // All four at once, as the operator applies an engine's children.
        futures::future::try_join_all(bodies.into_iter().map(|(resource, body)| {
            let namespace = namespace.clone();
            async move {
                let child = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.client.clone(), &namespace, &resource);
                api.patch(
                    &child,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await
                .with_context(|| format!("applying {} {namespace}/{child}", resource.kind))?;
                self.writes.child_applies.fetch_add(1, Ordering::Relaxed);
                anyhow::Ok(())
            }
        }))
        .await?;
        let key = (namespace, name);
        let port = engine.spec.engine.server.port;
        self.applied
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(key.clone(), Applied { generation, port });
        Ok(key)
    }

    /// Children applied, DaemonSet fully ready, status not yet queued.
    fn ready_to_report(&self, key: &(String, String)) -> bool {
        if !key.0.starts_with(&self.namespace_prefix) {
            return false;
        }
        let applied = self.applied.lock().is_ok_and(|a| a.contains_key(key));
        let ready = self
            .daemon_sets
            .get(&reflector::ObjectRef::new(&key.1).within(&key.0))
            .and_then(|ds| ds.status.clone())
            .is_some_and(|s| s.desired_number_scheduled > 0 && s.number_ready >= s.desired_number_scheduled);
        applied && ready && self.done.lock().is_ok_and(|mut d| d.insert(key.clone()))
    }

    /// Writes the status the operator writes once every pod is ready; false if nothing to write.
    async fn write_status(&self, key: &(String, String)) -> anyhow::Result<bool> {
        let (namespace, name) = key;
        let Some(applied) = self.applied.lock().ok().and_then(|a| a.get(key).cloned()) else {
            return Ok(false);
        };
        let Some(ds) = self
            .daemon_sets
            .get(&reflector::ObjectRef::new(name).within(namespace))
        else {
            return Ok(false);
        };
        let ds_status = ds.status.clone().unwrap_or_default();
        let ds_uid = ds.uid().unwrap_or_default();
        let pods = self.pods.state_filter(|p| {
            p.namespace().as_deref() == Some(namespace)
                && p.labels().get(labels::INSTANCE) == Some(name)
                && p.owner_references()
                    .iter()
                    .any(|r| r.controller == Some(true) && r.uid == ds_uid)
        });
        let status = running_status(
            ds_status.desired_number_scheduled,
            ds_status.number_ready,
            endpoints(&pods, applied.port),
            applied.generation,
            &now(),
        );
        let body = json!({
            "apiVersion": lmcache_api::constants::API_VERSION,
            "kind": lmcache_api::constants::KIND_ENGINE,
            "metadata": {"name": name, "namespace": namespace},
            "status": status,
        });
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            namespace,
            &crate::cluster::client::engine_resource(),
        );
        let _permit = self.permits.acquire().await?;
        api.patch_status(
            name,
            &PatchParams::apply(STATUS_FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .with_context(|| format!("writing the status of {namespace}/{name}"))?;
        self.writes.status_writes.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }
}

fn now() -> Time {
    let now = Timestamp::now();
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// Endpoints as in engine.md §9.3: one per pod, sorted by node, then pod name.
fn endpoints(pods: &[Arc<Pod>], port: i32) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|pod| {
            let status = pod.status.as_ref();
            Endpoint {
                node_name: pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
                host_ip: status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
                pod_name: pod.name_any(),
                port,
                ready: status
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                    .is_some_and(|c| c.status == "True"),
                // The floor never changes a template: every pod runs the current one.
                up_to_date: true,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.node_name, &a.pod_name).cmp(&(&b.node_name, &b.pod_name)));
    out
}

/// The status of an engine whose pods are all ready, as the operator words it.
fn running_status(
    desired: i32,
    ready: i32,
    endpoints: Vec<Endpoint>,
    generation: i64,
    now: &Time,
) -> EngineStatus {
    let message = format!("{ready}/{desired} instances ready");
    let condition = |type_: &str, reason: &str, message: &str| Condition {
        last_transition_time: now.clone(),
        message: message.to_string(),
        observed_generation: Some(generation),
        reason: reason.to_string(),
        status: "True".to_string(),
        type_: type_.to_string(),
    };
    EngineStatus {
        phase: Some(phases::RUNNING.to_string()),
        ready_instances: Some(ready),
        desired_instances: Some(desired),
        updated_instances: Some(desired),
        endpoints: Some(endpoints),
        conditions: Some(vec![
            condition(conditions::AVAILABLE, reasons::AT_LEAST_ONE_READY, &message),
            condition(conditions::ALL_INSTANCES_READY, reasons::ALL_READY, &message),
            condition(
                conditions::UP_TO_DATE,
                reasons::CURRENT,
                &format!("{desired}/{desired} instances run the current template"),
            ),
            condition(conditions::CONFIG_VALID, reasons::VALID, reasons::VALID_MESSAGE),
        ]),
        observed_generation: Some(generation),
        missed_injections: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_status_matches_the_operator_wording() {
        let status = running_status(3, 3, vec![], 1, &now());
        let value = serde_json::to_value(&status).unwrap();
        assert!(crate::bench::engines::is_converged(
            &json!({ "status": value }),
            3
        ));
        let conds = status.conditions.unwrap();
        let types: Vec<&str> = conds.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            ["Available", "AllInstancesReady", "UpToDate", "ConfigValid"]
        );
        assert_eq!(conds[0].message, "3/3 instances ready");
        assert_eq!(conds[2].message, "3/3 instances run the current template");
        assert_eq!(conds[3].message, "Spec validation passed");
    }

    #[test]
    fn endpoints_are_sorted_by_node_then_pod() {
        let pod = |name: &str, node: &str| {
            Arc::new(
                serde_json::from_value::<Pod>(json!({
                    "metadata": {"name": name},
                    "spec": {"nodeName": node, "containers": []},
                    "status": {"hostIP": "127.2.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
                }))
                .unwrap(),
            )
        };
        let eps = endpoints(&[pod("b", "n1"), pod("a", "n2"), pod("c", "n1")], 5555);
        let order: Vec<(&str, &str)> = eps
            .iter()
            .map(|e| (e.node_name.as_str(), e.pod_name.as_str()))
            .collect();
        assert_eq!(order, [("n1", "b"), ("n1", "c"), ("n2", "a")]);
        assert!(eps.iter().all(|e| e.ready && e.port == 5555));
    }
}
