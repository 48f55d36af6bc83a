//! Change latency under load: the operator is restarted with every engine converged, and from
//! the moment it is spawned — while it lists every cache and then resyncs every engine — one
//! engine after another gets a spec change; each change is timed from the API server's answer
//! to the PATCH until the engine's DaemonSet has a new generation (seen by a watch). The first
//! changes therefore include the restart itself (process start, the initial lists).

use crate::bench::children::Generations;
use crate::bench::engines::engine_key;
use crate::bench::phase::{self, Admin, Paths};
use crate::bench::stats::{Memory, Quantiles, Sample, sum};
use crate::cluster::client::engine_resource;
use crate::cluster::proc::Proc;
use futures::StreamExt;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DynamicObject;
use serde::Serialize;
use serde_json::json;
use std::time::{Duration, Instant};

/// Spec changes, one engine each, and the pause between two.
const CHANGES: usize = 50;
const INTERVAL: Duration = Duration::from_millis(100);
const CHANGE_TIMEOUT: Duration = Duration::from_secs(120);
const RECONCILES: &str = "lmcache_operator_reconcile_total";

/// Results of the change-latency phase.
#[derive(Clone, Debug, Serialize)]
pub struct ChangeLatency {
    pub engines: usize,
    pub changes: usize,
    /// From spawning the restarted operator to every engine reconciled once.
    pub resync_s: f64,
    /// Changes sent before the resync finished.
    pub during_resync: usize,
    pub latency: Quantiles,
    /// RSS of the restarted operator once its resync is done.
    pub restarted_memory: Memory,
}

/// Starts an operator with `args` (as [`phase::spawn`]), runs the phase on the `engines`
/// engines `0..engines` of `phase`, and stops it.
pub async fn run(
    client: &Client,
    paths: &Paths,
    phase: &str,
    engines: usize,
    namespaces: usize,
    start: impl FnOnce() -> anyhow::Result<(Proc, Admin)>,
) -> anyhow::Result<ChangeLatency> {
    let generations = Generations::start(client, phase).await?;
    let (operator, admin) = start()?;
    let spawned = Instant::now();
    let result = measure(
        client,
        paths,
        phase,
        engines,
        namespaces,
        &generations,
        &operator,
        &admin,
        spawned,
    )
    .await;
    phase::stop(operator).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    client: &Client,
    paths: &Paths,
    phase: &str,
    engines: usize,
    namespaces: usize,
    generations: &Generations,
    operator: &Proc,
    admin: &Admin,
    spawned: Instant,
) -> anyhow::Result<ChangeLatency> {
    eprintln!(
        "[bench] change latency: {CHANGES} spec changes while the restarted operator resyncs {engines} engines"
    );
    let resync = tokio::spawn(resync_done(admin.metrics, engines as f64));
    let mut pending = Vec::new();
    let step = (engines / CHANGES).max(1);
    for (i, j) in (0..engines).step_by(step).take(CHANGES).enumerate() {
        if i > 0 {
            tokio::time::sleep(INTERVAL).await;
        }
        let key = engine_key(phase, j, namespaces);
        let before = generations
            .current(&key)
            .ok_or_else(|| anyhow::anyhow!("no DaemonSet seen for {}/{}", key.0, key.1))?;
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &key.0, &engine_resource());
        let patch = json!({"spec": {"l1": {"sizeGB": 2}}});
        api.patch(&key.1, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let sent = Instant::now();
        pending.push(async move {
            let seen = generations.wait_above(&key, before, CHANGE_TIMEOUT).await?;
            anyhow::Ok((sent, seen.saturating_duration_since(sent)))
        });
    }
    phase::wait_ready(paths, operator, admin.health).await?;
    let results: Vec<anyhow::Result<(Instant, Duration)>> = futures::stream::iter(pending)
        .buffer_unordered(CHANGES)
        .collect()
        .await;
    let mut micros = Vec::with_capacity(results.len());
    let mut sent_at = Vec::with_capacity(results.len());
    for result in results {
        let (sent, latency) = result?;
        micros.push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        sent_at.push(sent);
    }
    let resync_at = resync.await??;
    let during_resync = sent_at.iter().filter(|t| **t < resync_at).count();
    // Let the last reconciles and cache updates settle before reading the RSS.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restarted_memory = Memory::of(operator.pid)
        .ok_or_else(|| anyhow::anyhow!("cannot read /proc/{}/status", operator.pid))?;
    Ok(ChangeLatency {
        engines,
        changes: micros.len(),
        resync_s: resync_at.saturating_duration_since(spawned).as_secs_f64(),
        during_resync,
        latency: Quantiles::of_micros(&mut micros),
        restarted_memory,
    })
}

/// When the operator's engine reconciles first reach `engines` (its initial resync is done).
async fn resync_done(metrics: std::net::SocketAddr, engines: f64) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        // Until the restarted process listens, a scrape fails: keep asking.
        let samples: Vec<Sample> = phase::scrape(metrics).await.unwrap_or_default();
        if sum(&samples, RECONCILES, &[("kind", "LMCacheEngine")]) >= engines {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            anyhow::bail!("the restarted operator did not reconcile {engines} engines in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
