//! Convergence (operator vs floor), steady-state writes and operator memory.
//!
//! The floor runs first, with no controller at all; its namespaces are deleted (and gone)
//! before the operator starts, so both phases begin from the same empty cluster.

use crate::bench::args::Args;
use crate::bench::change::{self, ChangeLatency};
use crate::bench::children::ChildrenObserver;
use crate::bench::engines::{Observer, create_engines, create_namespaces, delete_phase};
use crate::bench::floor::{self, FloorWritesSnapshot};
use crate::bench::phase::{self, Admin, Paths};
use crate::bench::stats::{Memory, Sample, median};
use crate::cluster::NODES;
use kube::Client;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Engine creations in flight (the same in both phases).
const CREATE_PARALLEL: usize = 16;
const FLOOR: &str = "floor";
const OPERATOR: &str = "op";
const WRITES: &str = "lmcache_operator_api_writes_total";
const RECONCILES: &str = "lmcache_operator_reconcile_total";
const RECONCILE_SECONDS: &str = "lmcache_operator_reconcile_duration_seconds_sum";

/// Results of the convergence phase.
#[derive(Clone, Debug, Serialize)]
pub struct Convergence {
    pub engines: usize,
    pub namespaces: usize,
    pub concurrency: u16,
    pub instances_per_engine: i64,
    pub floor: Timing,
    pub operator: Timing,
    /// operator.total_s / floor.total_s.
    pub ratio: f64,
    /// operator.applied_s / floor.applied_s.
    pub applied_ratio: f64,
    pub floor_writes: FloorWritesSnapshot,
    /// The operator's writes while converging, by `verb resource`.
    pub operator_writes: BTreeMap<String, f64>,
    /// The operator's `lmcacheengines/status` writes while converging, per engine.
    pub status_writes_per_engine: f64,
    /// The operator's reconciles while converging, by `kind result`: with `cpu_s` and
    /// `reconcile_seconds` it tells more work (more reconciles) from slower work.
    pub operator_reconciles: BTreeMap<String, f64>,
    /// Seconds spent inside reconciles while converging, by kind (summed over concurrent ones).
    pub reconcile_seconds: BTreeMap<String, f64>,
    pub steady: Steady,
    pub memory: OperatorMemory,
    pub change: Option<ChangeLatency>,
}

/// How long one phase took.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Timing {
    /// From the first engine create to the last engine converged.
    pub total_s: f64,
    /// Median time to converge, per engine.
    pub median_engine_s: f64,
    /// Time to create all engines (the same client in both phases).
    pub create_s: f64,
    /// From the first engine create until every engine's children exist (seen by a watch).
    pub applied_s: f64,
    /// CPU seconds the operator process used from the first create to the last Running (0 for
    /// the floor, which runs inside the bench process).
    pub cpu_s: f64,
}

impl Timing {
    fn from(times: &[f64], create_s: f64, applied: &[f64]) -> Self {
        Self {
            total_s: times.last().copied().unwrap_or(0.0),
            median_engine_s: median(times),
            create_s,
            applied_s: applied.last().copied().unwrap_or(0.0),
            cpu_s: 0.0,
        }
    }
}

/// The operator's writes in the window after convergence.
#[derive(Clone, Debug, Serialize)]
pub struct Steady {
    pub seconds: u64,
    pub writes: f64,
    pub by_resource: BTreeMap<String, f64>,
}

/// Operator memory.
#[derive(Clone, Debug, Serialize)]
pub struct OperatorMemory {
    /// Ready, no engines.
    pub idle: Memory,
    /// After convergence of `--engines`.
    pub converged: Memory,
    /// With `engines` engines (`--memory-engines`), of which `converged` reported Running.
    pub scaled: Option<Scaled>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Scaled {
    pub engines: usize,
    pub converged: usize,
    pub seconds: f64,
    pub memory: Memory,
}

pub async fn run(client: &Client, args: &Args, paths: &Paths) -> anyhow::Result<Convergence> {
    let instances = NODES.iter().filter(|(_, gpu)| *gpu).count() as i64;
    let timeout = Duration::from_secs(args.timeout);
    let (n, m) = (args.engines, args.namespaces);
    for phase in [FLOOR, OPERATOR] {
        delete_phase(client, phase, Some(timeout)).await?;
    }

    let (floor_timing, floor_writes) = if args.skip_floor {
        (Timing::default(), FloorWritesSnapshot::default())
    } else {
        floor(client, args, instances).await?
    };

    // Operator.
    let (operator, admin) = start_operator(paths, args)?;
    let result = with_operator(client, args, paths, &admin, &operator, instances).await;
    phase::stop(operator).await;
    let (operator_timing, work, steady, memory) = result?;
    let engines_now = memory.scaled.as_ref().map_or(n, |s| s.engines);
    let change = if args.skip_change {
        None
    } else {
        Some(
            change::run(client, paths, OPERATOR, engines_now, m, || {
                start_operator(paths, args)
            })
            .await?,
        )
    };
    if !args.keep {
        delete_phase(client, OPERATOR, Some(timeout)).await?;
    }
    let status_writes = work
        .writes
        .iter()
        .filter(|(k, _)| k.ends_with("lmcacheengines/status"))
        .map(|(_, v)| v)
        .sum::<f64>();
    Ok(Convergence {
        engines: n,
        namespaces: m,
        concurrency: args.concurrency,
        instances_per_engine: instances,
        ratio: ratio(operator_timing.total_s, floor_timing.total_s),
        applied_ratio: ratio(operator_timing.applied_s, floor_timing.applied_s),
        floor: floor_timing,
        operator: operator_timing,
        floor_writes,
        operator_writes: work.writes,
        status_writes_per_engine: status_writes / n as f64,
        operator_reconciles: work.reconciles,
        reconcile_seconds: work.reconcile_seconds,
        steady,
        memory,
        change,
    })
}

/// Floor: the least work that makes every engine report Running.
async fn floor(
    client: &Client,
    args: &Args,
    instances: i64,
) -> anyhow::Result<(Timing, FloorWritesSnapshot)> {
    let timeout = Duration::from_secs(args.timeout);
    let (n, m) = (args.engines, args.namespaces);
    let concurrency = usize::from(args.concurrency);
    create_namespaces(client, FLOOR, m).await?;
    let mut observer = Observer::start(client, FLOOR, instances).await?;
    let mut children = ChildrenObserver::start(client, FLOOR).await?;
    eprintln!("[bench] floor: applying {n} engines in {m} namespaces");
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let zero = Instant::now();
    let mut floor = tokio::spawn(floor::run(client.clone(), rx, n, concurrency, "bench-floor-"));
    create_engines(client, FLOOR, 0..n, m, CREATE_PARALLEL, Some(tx)).await?;
    let create_s = zero.elapsed().as_secs_f64();
    // The floor client ends after its last status write; ending with an error is its failure.
    let early = tokio::select! {
        times = observer.wait(n, zero, timeout) => Err(times),
        ended = &mut floor => Ok(ended.map_err(anyhow::Error::from).and_then(|r| r)),
    };
    let (times, floor_writes) = match early {
        Err(times) => {
            let writes = match &times {
                Ok(_) => floor.await??,
                Err(_) => {
                    floor.abort();
                    FloorWritesSnapshot::default()
                }
            };
            (times, writes)
        }
        Ok(Err(e)) => return Err(anyhow::anyhow!("the floor client failed: {e:?}")),
        Ok(Ok(writes)) => (observer.wait(n, zero, timeout).await, writes),
    };
    let applied = children.wait(n, zero, timeout).await?;
    let floor_timing = Timing::from(&times?, create_s, &applied);
    drop((observer, children));
    eprintln!("[bench] floor converged in {:.1}s", floor_timing.total_s);
    delete_phase(client, FLOOR, Some(timeout)).await?;
    Ok((floor_timing, floor_writes))
}

fn ratio(operator: f64, floor: f64) -> f64 {
    if floor > 0.0 { operator / floor } else { 0.0 }
}

/// A release operator without leader election (so the bench counts no Lease renewals).
fn start_operator(paths: &Paths, args: &Args) -> anyhow::Result<(crate::cluster::proc::Proc, Admin)> {
    let admin = Admin::new()?;
    let operator = phase::spawn(
        paths,
        "lmcache-operator",
        "lmcache-operator",
        &[
            "run".to_string(),
            format!("--metrics-bind-address={}", admin.metrics),
            format!("--health-probe-bind-address={}", admin.health),
            format!("--max-concurrent-reconciles={}", args.concurrency),
        ],
        // install.yaml's environment, so what is measured is what ships.
        &crate::release::manifests::ALLOCATOR_ENV,
    )?;
    Ok((operator, admin))
}

async fn with_operator(
    client: &Client,
    args: &Args,
    paths: &Paths,
    admin: &Admin,
    proc: &crate::cluster::proc::Proc,
    instances: i64,
) -> anyhow::Result<(Timing, Work, Steady, OperatorMemory)> {
    let pid = proc.pid;
    phase::wait_ready(paths, proc, admin.health).await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = memory(pid)?;

    create_namespaces(client, OPERATOR, args.namespaces).await?;
    let mut observer = Observer::start(client, OPERATOR, instances).await?;
    let (timing, before, converged_at) = operator_converges(client, args, admin, pid, &mut observer).await?;
    let work = Work::between(&before, &converged_at);
    let steady = steady_state(args, admin, &converged_at).await?;
    let converged = memory(pid)?;
    let scaled = if args.memory_engines > args.engines {
        Some(scale_up(client, args, pid, &mut observer).await?)
    } else {
        None
    };
    drop(observer);
    Ok((
        timing,
        work,
        steady,
        OperatorMemory {
            idle,
            converged,
            scaled,
        },
    ))
}

/// Applies `--engines` engines to the running operator and times them; returns the timing and
/// the scrapes of its metrics before and once converged.
async fn operator_converges(
    client: &Client,
    args: &Args,
    admin: &Admin,
    pid: u32,
    observer: &mut Observer,
) -> anyhow::Result<(Timing, Vec<Sample>, Vec<Sample>)> {
    let timeout = Duration::from_secs(args.timeout);
    let (n, m) = (args.engines, args.namespaces);
    let mut children = ChildrenObserver::start(client, OPERATOR).await?;
    eprintln!("[bench] operator: applying {n} engines in {m} namespaces");
    let before = phase::scrape(admin.metrics).await?;
    let cpu_before = crate::bench::stats::cpu_seconds(pid).unwrap_or(0.0);
    let zero = Instant::now();
    create_engines(client, OPERATOR, 0..n, m, CREATE_PARALLEL, None).await?;
    let create_s = zero.elapsed().as_secs_f64();
    let times = observer.wait(n, zero, timeout).await?;
    let applied = children.wait(n, zero, timeout).await?;
    let cpu_s = crate::bench::stats::cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
    drop(children);
    // The last status write may be coalesced: let it land before counting.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let converged_at = phase::scrape(admin.metrics).await?;
    let timing = Timing {
        cpu_s,
        ..Timing::from(&times, create_s, &applied)
    };
    eprintln!("[bench] operator converged in {:.1}s", timing.total_s);
    Ok((timing, before, converged_at))
}

/// The operator's writes in the `--steady-seconds` after `converged_at`.
async fn steady_state(args: &Args, admin: &Admin, converged_at: &[Sample]) -> anyhow::Result<Steady> {
    eprintln!(
        "[bench] steady state: counting writes for {}s",
        args.steady_seconds
    );
    tokio::time::sleep(Duration::from_secs(args.steady_seconds)).await;
    let steady_end = phase::scrape(admin.metrics).await?;
    let by_resource = writes_between(converged_at, &steady_end);
    Ok(Steady {
        seconds: args.steady_seconds,
        // An empty f64 sum is -0.0.
        writes: by_resource.values().sum::<f64>() + 0.0,
        by_resource,
    })
}

/// Adds engines up to `--memory-engines` and measures the operator's memory with them (also
/// when not all of them converge in time).
async fn scale_up(client: &Client, args: &Args, pid: u32, observer: &mut Observer) -> anyhow::Result<Scaled> {
    let timeout = Duration::from_secs(args.timeout);
    let (n, m, total) = (args.engines, args.namespaces, args.memory_engines);
    eprintln!("[bench] memory: scaling to {total} engines");
    let zero = Instant::now();
    create_engines(client, OPERATOR, n..total, m, CREATE_PARALLEL, None).await?;
    let reached = match observer.wait(total, zero, timeout).await {
        Ok(_) => total,
        Err(e) => {
            eprintln!("[bench] WARNING: {e:#}; measuring memory anyway");
            observer.converged()
        }
    };
    let seconds = zero.elapsed().as_secs_f64();
    // Let the last status writes and cache updates settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    Ok(Scaled {
        engines: total,
        converged: reached,
        seconds,
        memory: memory(pid)?,
    })
}

fn memory(pid: u32) -> anyhow::Result<Memory> {
    Memory::of(pid).ok_or_else(|| anyhow::anyhow!("cannot read /proc/{pid}/status"))
}

/// What the operator did between two scrapes of its metrics.
struct Work {
    writes: BTreeMap<String, f64>,
    reconciles: BTreeMap<String, f64>,
    reconcile_seconds: BTreeMap<String, f64>,
}

impl Work {
    fn between(before: &[Sample], after: &[Sample]) -> Self {
        Self {
            writes: writes_between(before, after),
            reconciles: counter_deltas(before, after, RECONCILES, &["kind", "result"]),
            reconcile_seconds: counter_deltas(before, after, RECONCILE_SECONDS, &["kind"]),
        }
    }
}

/// Increase of the operator's write counter per `verb resource` between two scrapes.
pub fn writes_between(before: &[Sample], after: &[Sample]) -> BTreeMap<String, f64> {
    counter_deltas(before, after, WRITES, &["verb", "kind"])
}

/// Increase of counter `name` between two scrapes, per the values of `labels` joined by spaces;
/// keys that did not grow are left out.
fn counter_deltas(before: &[Sample], after: &[Sample], name: &str, labels: &[&str]) -> BTreeMap<String, f64> {
    let tally = |samples: &[Sample]| {
        let mut out = BTreeMap::new();
        for s in samples.iter().filter(|s| s.name == name) {
            let key: Vec<&str> = labels.iter().map(|l| s.label(l).unwrap_or("?")).collect();
            *out.entry(key.join(" ")).or_insert(0.0) += s.value;
        }
        out
    };
    let earlier = tally(before);
    tally(after)
        .into_iter()
        .map(|(k, v)| {
            let d = v - earlier.get(&k).copied().unwrap_or(0.0);
            (k, d)
        })
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::parse_samples;

    #[test]
    fn write_deltas_by_verb_and_resource() {
        let before = parse_samples(
            "lmcache_operator_api_writes_total{verb=\"PATCH\",kind=\"daemonsets\"} 10\n\
             lmcache_operator_api_writes_total{verb=\"POST\",kind=\"events\"} 5\n\
             lmcache_operator_reconcile_total{kind=\"LMCacheEngine\",result=\"success\"} 9\n",
        );
        let after = parse_samples(
            "lmcache_operator_api_writes_total{verb=\"PATCH\",kind=\"daemonsets\"} 12\n\
             lmcache_operator_api_writes_total{verb=\"POST\",kind=\"events\"} 5\n\
             lmcache_operator_api_writes_total{verb=\"PATCH\",kind=\"lmcacheengines/status\"} 3\n\
             lmcache_operator_reconcile_total{kind=\"LMCacheEngine\",result=\"success\"} 99\n\
             lmcache_operator_reconcile_total{kind=\"LMCacheEngine\",result=\"error\"} 1\n\
             lmcache_operator_reconcile_duration_seconds_sum{kind=\"LMCacheEngine\"} 2.5\n",
        );
        let d = writes_between(&before, &after);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d["PATCH daemonsets"], 2.0);
        assert_eq!(d["PATCH lmcacheengines/status"], 3.0);
        assert!(writes_between(&after, &after).is_empty());
        let work = Work::between(&before, &after);
        assert_eq!(work.reconciles["LMCacheEngine success"], 90.0);
        assert_eq!(work.reconciles["LMCacheEngine error"], 1.0);
        assert_eq!(work.reconcile_seconds["LMCacheEngine"], 2.5);
    }

    #[test]
    fn timing_takes_the_last_and_median_engine() {
        let t = Timing::from(&[1.0, 2.0, 4.0], 0.5, &[0.2, 0.3]);
        assert_eq!(t.total_s, 4.0);
        assert_eq!(t.applied_s, 0.3);
        assert_eq!(t.median_engine_s, 2.0);
        assert_eq!(t.create_s, 0.5);
    }
}
