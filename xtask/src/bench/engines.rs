//! The bench's engines on the cluster: its namespaces and engines, and the observer that
//! timestamps when each engine reports `Running` with every instance ready.

use crate::cluster::client::engine_resource;
use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use lmcache_api::constants::{API_VERSION, KIND_ENGINE, phases};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Label on every namespace and engine the bench creates (value: the phase).
pub const BENCH_LABEL: &str = "lmcache.ai/bench";

/// Namespace `i` of a phase.
pub fn namespace_name(phase: &str, i: usize) -> String {
    format!("{}{i}", namespace_prefix(phase))
}

/// What every namespace of a phase starts with.
pub fn namespace_prefix(phase: &str) -> String {
    format!("bench-{phase}-")
}

/// Engine `j` of a phase: `engine-j` in namespace `j mod namespaces`.
pub fn engine_key(phase: &str, j: usize, namespaces: usize) -> (String, String) {
    (
        namespace_name(phase, j % namespaces.max(1)),
        format!("engine-{j:04}"),
    )
}

/// An engine as a user would apply it: defaults except a 1 GB L1 and tiny requests, so a few
/// thousand fake pods fit on the fake nodes.
pub fn engine_manifest(phase: &str, namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND_ENGINE,
        "metadata": {"name": name, "namespace": namespace, "labels": {BENCH_LABEL: phase}},
        "spec": {
            "l1": {"sizeGB": 1},
            "resourceOverrides": {"requests": {"cpu": "10m", "memory": "64Mi"}},
        },
    })
}

/// Creates (or keeps) namespaces `0..count` of `phase`.
pub async fn create_namespaces(client: &Client, phase: &str, count: usize) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    for i in 0..count {
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": namespace_name(phase, i), "labels": {BENCH_LABEL: phase}},
        }))?;
        match api.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(e).context("creating a bench namespace"),
        }
    }
    Ok(())
}

/// Creates engines `range` of `phase`, `parallel` requests at a time; returns the stored objects
/// (with their UIDs) in completion order through `created`, if given.
pub async fn create_engines(
    client: &Client,
    phase: &str,
    range: std::ops::Range<usize>,
    namespaces: usize,
    parallel: usize,
    created: Option<futures::channel::mpsc::UnboundedSender<Value>>,
) -> anyhow::Result<()> {
    let manifests = range.map(|j| {
        let (namespace, name) = engine_key(phase, j, namespaces);
        engine_manifest(phase, &namespace, &name)
    });
    create_objects(client, &engine_resource(), manifests, parallel, created).await
}

/// Creates `manifests` (namespaced objects of `resource`), `parallel` requests at a time;
/// returns the stored objects in completion order through `created`, if given.
pub async fn create_objects(
    client: &Client,
    resource: &ApiResource,
    manifests: impl Iterator<Item = Value>,
    parallel: usize,
    created: Option<futures::channel::mpsc::UnboundedSender<Value>>,
) -> anyhow::Result<()> {
    futures::stream::iter(manifests)
        .map(|body| {
            let created = created.clone();
            async move {
                let obj: DynamicObject = serde_json::from_value(body)?;
                let namespace = obj.namespace().unwrap_or_default();
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, resource);
                let stored = api
                    .create(&PostParams::default(), &obj)
                    .await
                    .with_context(|| format!("creating {} {namespace}/{}", resource.kind, obj.name_any()))?;
                if let Some(tx) = created {
                    let _ = tx.unbounded_send(serde_json::to_value(&stored)?);
                }
                anyhow::Ok(())
            }
        })
        .buffer_unordered(parallel.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Deletes every namespace of `phase` and, with `wait`, waits until they are gone.
pub async fn delete_phase(client: &Client, phase: &str, wait: Option<Duration>) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let selector = ListParams::default().labels(&format!("{BENCH_LABEL}={phase}"));
    for ns in api.list(&selector).await? {
        match api.delete(&ns.name_any(), &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let Some(timeout) = wait else { return Ok(()) };
    let started = Instant::now();
    loop {
        let left = api.list(&selector).await?.items.len();
        if left == 0 {
            eprintln!(
                "[bench] namespaces of phase {phase} deleted in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if started.elapsed() > timeout {
            bail!("{left} namespaces of phase {phase} still exist after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Whether an engine's status says `Running` with `instances` of `instances` ready.
pub fn is_converged(engine: &Value, instances: i64) -> bool {
    let status = &engine["status"];
    status["phase"] == phases::RUNNING
        && status["readyInstances"].as_i64() == Some(instances)
        && status["desiredInstances"].as_i64() == Some(instances)
}

/// Watches the engines of a phase and records when each first converged.
pub struct Observer {
    progress: watch::Receiver<Progress>,
    task: tokio::task::JoinHandle<()>,
}

/// What the observer saw so far.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// The initial list completed (so later events are changes).
    pub synced: bool,
    /// When each engine was first seen converged.
    pub converged: HashMap<(String, String), Instant>,
    /// Engines seen at all.
    pub seen: usize,
    /// The last watch error, if any.
    pub error: Option<String>,
    /// Since when the watch has failed without a good event in between.
    pub failing_since: Option<Instant>,
}

/// A watch failing this long means the cluster is gone: stop waiting.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

impl Observer {
    /// Starts watching engines labelled with `phase`; waits for the initial list.
    pub async fn start(client: &Client, phase: &str, instances: i64) -> anyhow::Result<Self> {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &engine_resource());
        let config = watcher::Config::default().labels(&format!("{BENCH_LABEL}={phase}"));
        let (tx, mut progress) = watch::channel(Progress::default());
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, config).boxed();
            let mut seen = std::collections::HashSet::new();
            while let Some(event) = stream.next().await {
                let now = Instant::now();
                tx.send_modify(|p| {
                    if event.is_ok() {
                        p.failing_since = None;
                    }
                    match event {
                        Ok(watcher::Event::InitDone) => p.synced = true,
                        Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                            let key = (obj.namespace().unwrap_or_default(), obj.name_any());
                            seen.insert(key.clone());
                            p.seen = seen.len();
                            let converged =
                                serde_json::to_value(&obj).is_ok_and(|v| is_converged(&v, instances));
                            if converged {
                                p.converged.entry(key).or_insert(now);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            p.error = Some(e.to_string());
                            p.failing_since.get_or_insert(now);
                        }
                    }
                });
            }
        });
        let synced = tokio::time::timeout(Duration::from_secs(30), progress.wait_for(|p| p.synced))
            .await
            .is_ok_and(|r| r.is_ok());
        if !synced {
            task.abort();
            bail!("the engine watch did not complete its initial list in 30 s");
        }
        Ok(Self { progress, task })
    }

    /// Engines converged so far.
    pub fn converged(&self) -> usize {
        self.progress.borrow().converged.len()
    }

    /// Waits until `count` engines converged; returns the seconds after `zero` at which each
    /// did (sorted), or fails after `timeout` saying how far it got.
    pub async fn wait(&mut self, count: usize, zero: Instant, timeout: Duration) -> anyhow::Result<Vec<f64>> {
        let deadline = Instant::now() + timeout;
        let mut done = false;
        while !done && Instant::now() < deadline {
            let step = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(5));
            done = tokio::time::timeout(step, self.progress.wait_for(|p| p.converged.len() >= count))
                .await
                .is_ok_and(|r| r.is_ok());
            let failing = self.progress.borrow().failing_since;
            if failing.is_some_and(|since| since.elapsed() > GIVE_UP_AFTER) {
                break;
            }
        }
        let p = self.progress.borrow().clone();
        if !done {
            bail!(
                "{} of {count} engines converged within {timeout:?} ({} seen; last watch error: {})",
                p.converged.len(),
                p.seen,
                p.error.as_deref().unwrap_or("none")
            );
        }
        let mut times: Vec<f64> = p
            .converged
            .values()
            .map(|t| t.saturating_duration_since(zero).as_secs_f64())
            .collect();
        times.sort_by(f64::total_cmp);
        Ok(times)
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_spread_over_namespaces() {
        assert_eq!(
            engine_key("op", 0, 30),
            ("bench-op-0".to_string(), "engine-0000".to_string())
        );
        assert_eq!(
            engine_key("op", 31, 30),
            ("bench-op-1".to_string(), "engine-0031".to_string())
        );
        assert_eq!(engine_key("op", 5, 0).0, "bench-op-0");
    }

    #[test]
    fn engine_manifest_decodes_validates_and_renders() {
        let raw = engine_manifest("floor", "bench-floor-0", "engine-0000");
        assert_eq!(raw["metadata"]["labels"][BENCH_LABEL], "floor");
        let engine = lmcache_validation::decode_engine(&raw).unwrap();
        lmcache_validation::validate_engine("engine-0000", &engine.spec).unwrap();
        let children = lmcache_manifest_renderer::render_engine(
            &engine,
            &lmcache_manifest_renderer::RenderContext::new("cluster.local"),
        )
        .unwrap();
        let requests = children
            .daemon_set
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .resources
            .clone()
            .unwrap()
            .requests
            .unwrap();
        assert_eq!(requests["cpu"].0, "10m");
    }

    #[test]
    fn convergence_needs_running_and_every_instance() {
        let status = |phase: &str, ready: i64, desired: i64| json!({"status": {"phase": phase, "readyInstances": ready, "desiredInstances": desired}});
        assert!(is_converged(&status("Running", 3, 3), 3));
        assert!(!is_converged(&status("Degraded", 2, 3), 3));
        assert!(!is_converged(&status("Running", 1, 1), 3));
        assert!(!is_converged(&json!({"spec": {}}), 3));
    }
}
