//! Watches of the children the operator (or the floor client) applies: when every engine of a
//! phase has all of its children, and when a DaemonSet's spec changed.
//!
//! Both use metadata-only watches filtered by the renderer's `managed-by` label, so the bench
//! itself stays small next to the processes it measures.

use anyhow::bail;
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use lmcache_api::constants::labels;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Children of a default engine: the DaemonSet, the node-local and the metrics Service, and the
/// connection ConfigMap (no ServiceMonitor: `prometheus.serviceMonitor` is off by default).
pub const CHILDREN_PER_ENGINE: usize = 4;

/// `(namespace, engine name)`.
type EngineKey = (String, String);

fn selector() -> watcher::Config {
    watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGED_BY_VALUE))
}

/// A watch event reduced to what the observer counts.
enum Seen {
    Synced,
    /// A child of engine `.0` in a namespace of the phase, as `kind/name`.
    Child(EngineKey, String),
    Other,
    Error(String),
}

/// A metadata-only watch of the operator-managed objects of type `K`, as [`Seen`] events.
fn children<K>(client: &Client, kind: &'static str, prefix: String) -> stream::BoxStream<'static, Seen>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let api = Api::<PartialObjectMeta<K>>::all(client.clone());
    watcher(api, selector())
        .map(move |event| match event {
            Ok(watcher::Event::InitDone) => Seen::Synced,
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                let namespace = o.namespace().unwrap_or_default();
                match o.labels().get(labels::INSTANCE) {
                    Some(engine) if namespace.starts_with(&prefix) => {
                        Seen::Child((namespace, engine.clone()), format!("{kind}/{}", o.name_any()))
                    }
                    _ => Seen::Other,
                }
            }
            Ok(_) => Seen::Other,
            Err(e) => Seen::Error(e.to_string()),
        })
        .boxed()
}

/// What the children observer saw so far.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    pub synced: usize,
    /// When each engine first had all of its children.
    pub complete: HashMap<EngineKey, Instant>,
    pub error: Option<String>,
}

/// Records, per engine of a phase, when all [`CHILDREN_PER_ENGINE`] children exist.
pub struct ChildrenObserver {
    progress: watch::Receiver<Applied>,
    task: tokio::task::JoinHandle<()>,
}

impl ChildrenObserver {
    /// Watches the children in the namespaces of `phase`; waits for the three initial lists.
    pub async fn start(client: &Client, phase: &str) -> anyhow::Result<Self> {
        let prefix = crate::bench::engines::namespace_prefix(phase);
        let ds = children::<DaemonSet>(client, "DaemonSet", prefix.clone());
        let svc = children::<Service>(client, "Service", prefix.clone());
        let cm = children::<ConfigMap>(client, "ConfigMap", prefix);
        let (tx, mut progress) = watch::channel(Applied::default());
        let task = tokio::spawn(async move {
            let mut events = stream::select_all([ds, svc, cm]);
            let mut seen: HashMap<EngineKey, HashSet<String>> = HashMap::new();
            while let Some(event) = events.next().await {
                let now = Instant::now();
                tx.send_modify(|p| match event {
                    Seen::Synced => p.synced += 1,
                    Seen::Child(key, child) => {
                        let children = seen.entry(key.clone()).or_default();
                        children.insert(child);
                        if children.len() >= CHILDREN_PER_ENGINE {
                            p.complete.entry(key).or_insert(now);
                        }
                    }
                    Seen::Other => {}
                    Seen::Error(e) => p.error = Some(e),
                });
            }
        });
        let synced = tokio::time::timeout(Duration::from_secs(30), progress.wait_for(|p| p.synced >= 3))
            .await
            .is_ok_and(|r| r.is_ok());
        if !synced {
            task.abort();
            bail!("the children watches did not complete their initial lists in 30 s");
        }
        Ok(Self { progress, task })
    }

    /// Waits until `count` engines have all their children; returns the seconds after `zero`
    /// at which each did (sorted).
    pub async fn wait(&mut self, count: usize, zero: Instant, timeout: Duration) -> anyhow::Result<Vec<f64>> {
        let done = tokio::time::timeout(timeout, self.progress.wait_for(|p| p.complete.len() >= count))
            .await
            .is_ok_and(|r| r.is_ok());
        let p = self.progress.borrow().clone();
        if !done {
            bail!(
                "{} of {count} engines had all children within {timeout:?} (last watch error: {})",
                p.complete.len(),
                p.error.as_deref().unwrap_or("none")
            );
        }
        let mut times: Vec<f64> = p
            .complete
            .values()
            .map(|t| t.saturating_duration_since(zero).as_secs_f64())
            .collect();
        times.sort_by(f64::total_cmp);
        Ok(times)
    }
}

impl Drop for ChildrenObserver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The latest `metadata.generation` of every operator-managed DaemonSet and when it was seen.
pub struct Generations {
    latest: watch::Receiver<HashMap<EngineKey, (i64, Instant)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Generations {
    pub async fn start(client: &Client, phase: &str) -> anyhow::Result<Self> {
        let prefix = crate::bench::engines::namespace_prefix(phase);
        let (tx, mut latest) = watch::channel(HashMap::new());
        let (synced_tx, mut synced) = watch::channel(false);
        let api = Api::<PartialObjectMeta<DaemonSet>>::all(client.clone());
        let task = tokio::spawn(async move {
            let mut events = watcher(api, selector()).boxed();
            while let Some(event) = events.next().await {
                let now = Instant::now();
                match event {
                    Ok(watcher::Event::InitDone) => {
                        let _ = synced_tx.send(true);
                    }
                    Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                        let (Some(ns), Some(generation)) = (o.namespace(), o.metadata.generation) else {
                            continue;
                        };
                        if ns.starts_with(&prefix) {
                            tx.send_modify(|m| {
                                let entry = m.entry((ns, o.name_any())).or_insert((generation, now));
                                if entry.0 != generation {
                                    *entry = (generation, now);
                                }
                            });
                        }
                    }
                    Ok(_) | Err(_) => {}
                }
            }
        });
        let ok = tokio::time::timeout(Duration::from_secs(30), synced.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok());
        if !ok {
            task.abort();
            bail!("the DaemonSet watch did not complete its initial list in 30 s");
        }
        latest.mark_unchanged();
        Ok(Self { latest, task })
    }

    /// The generation of DaemonSet `key` now.
    pub fn current(&self, key: &EngineKey) -> Option<i64> {
        self.latest.borrow().get(key).map(|(g, _)| *g)
    }

    /// Waits until DaemonSet `key` has a generation above `before`; returns when it was seen.
    pub async fn wait_above(
        &self,
        key: &EngineKey,
        before: i64,
        timeout: Duration,
    ) -> anyhow::Result<Instant> {
        let mut latest = self.latest.clone();
        let seen = tokio::time::timeout(
            timeout,
            latest.wait_for(|m| m.get(key).is_some_and(|(g, _)| *g > before)),
        )
        .await;
        match seen {
            Ok(Ok(m)) => Ok(m[key].1),
            _ => bail!("DaemonSet {}/{} did not change within {timeout:?}", key.0, key.1),
        }
    }
}

impl Drop for Generations {
    fn drop(&mut self) {
        self.task.abort();
    }
}
