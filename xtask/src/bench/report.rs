//! The bench report: `target/bench/report.json` (everything measured) and `report.md` (the
//! tables, also printed), with the issue's targets checked.

use crate::bench::args::Args;
use crate::bench::converge::Convergence;
use crate::bench::webhook::WebhookBench;
use serde::Serialize;
use std::fmt::Write as _;

/// Targets of issues 8 and 14 (goals, not assertions).
pub const TARGET_RATIO: f64 = 1.25;
pub const TARGET_HANDLER_P99_MS: f64 = 1.0;
pub const TARGET_HANDLER_RATE: u32 = 500;
pub const TARGET_OPERATOR_RSS_MIB: f64 = 40.0;
pub const TARGET_OPERATOR_IDLE_MIB: f64 = 15.0;
pub const TARGET_WEBHOOK_RSS_MIB: f64 = 20.0;
/// The fleet size the memory targets are stated for.
pub const TARGET_FLEET: usize = 1000;
pub const TARGET_STATUS_WRITES: f64 = 3.0;
pub const TARGET_CHANGE_P99_MS: f64 = 2000.0;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub engines: usize,
    pub namespaces: usize,
    pub memory_engines: usize,
    pub convergence: Option<Convergence>,
    pub webhook: Option<WebhookBench>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    /// 1-minute load average when the bench started (other work on the shared cores).
    pub load_at_start: f64,
    pub commit: String,
}

impl Machine {
    fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let load_at_start = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0.0);
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(crate::util::root())
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        Self {
            cpu,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            load_at_start,
            commit,
        }
    }
}

impl Report {
    pub fn new(args: &Args) -> Self {
        Self {
            machine: Machine::detect(),
            engines: args.engines,
            namespaces: args.namespaces,
            memory_engines: args.memory_engines,
            convergence: None,
            webhook: None,
        }
    }

    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(
            md,
            "# Bench report\n\ncommit {}, {} × {}, load average {:.2} at start\n",
            m.commit, m.cpus, m.cpu, m.load_at_start
        );
        if let Some(c) = &self.convergence {
            convergence_md(&mut md, c);
        }
        if let Some(w) = &self.webhook {
            webhook_md(&mut md, w);
        }
        targets_md(&mut md, self);
        md
    }
}

fn convergence_md(md: &mut String, c: &Convergence) {
    let _ = writeln!(
        md,
        "## Convergence\n\n{} engines in {} namespaces ({} pods each), concurrency {}\n",
        c.engines, c.namespaces, c.instances_per_engine, c.concurrency
    );
    convergence_table(md, c);
    md.push('\n');
    let _ = writeln!(
        md,
        "Status writes per engine while converging: {:.2}; operator CPU while converging: {:.1} s\n",
        c.status_writes_per_engine, c.operator.cpu_s
    );
    if !c.operator_writes.is_empty() {
        let list: Vec<String> = c
            .operator_writes
            .iter()
            .map(|(k, v)| format!("{k}: {v:.0}"))
            .collect();
        let _ = writeln!(md, "Operator writes while converging: {}\n", list.join(", "));
    }
    if !c.operator_reconciles.is_empty() {
        let list: Vec<String> = c
            .operator_reconciles
            .iter()
            .map(|(k, v)| format!("{k}: {v:.0} ({:.2} per engine)", v / c.engines.max(1) as f64))
            .collect();
        let inside: Vec<String> = c
            .reconcile_seconds
            .iter()
            .map(|(k, v)| format!("{k}: {v:.1} s"))
            .collect();
        let _ = writeln!(
            md,
            "Reconciles while converging: {}; time inside reconciles: {}\n",
            list.join(", "),
            inside.join(", ")
        );
    }
    let _ = writeln!(
        md,
        "## Steady state\n\n{:.0} operator writes in the {} s after convergence{}\n",
        c.steady.writes,
        c.steady.seconds,
        if c.steady.by_resource.is_empty() {
            String::new()
        } else {
            format!(" ({:?})", c.steady.by_resource)
        }
    );
    operator_memory_md(md, c);
    if let Some(ch) = &c.change {
        let _ = writeln!(
            md,
            "## Change latency under load\n\nOperator restarted with {} engines converged; from its spawn, every engine \
             was reconciled after {:.2} s; {} spec changes from the spawn on, one per 100 ms ({} before the resync \
             ended), PATCH answered → DaemonSet generation seen\n\n\
             | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) |\n|---:|---:|---:|---:|\n| {:.0} | {:.0} | {:.0} | {:.0} |\n",
            ch.engines,
            ch.resync_s,
            ch.changes,
            ch.during_resync,
            ch.latency.p50_ms,
            ch.latency.p95_ms,
            ch.latency.p99_ms,
            ch.latency.max_ms
        );
    }
}

/// The floor's and the operator's timings side by side (no floor row without a floor).
fn convergence_table(md: &mut String, c: &Convergence) {
    let _ = writeln!(
        md,
        "| | children applied (s) | all Running (s) | median engine (s) | creates done (s) | writes |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
    let floor_writes = c.floor_writes.child_applies + c.floor_writes.status_writes;
    let operator_writes = c.operator_writes.values().sum::<f64>() + 0.0;
    // `--skip-floor` leaves the floor's row empty and no ratio.
    let floored = c.floor.total_s > 0.0;
    if floored {
        let _ = writeln!(
            md,
            "| floor | {:.1} | {:.1} | {:.1} | {:.1} | {floor_writes} |",
            c.floor.applied_s, c.floor.total_s, c.floor.median_engine_s, c.floor.create_s
        );
    }
    let _ = writeln!(
        md,
        "| operator | {:.1} | {:.1} | {:.1} | {:.1} | {operator_writes:.0} |",
        c.operator.applied_s, c.operator.total_s, c.operator.median_engine_s, c.operator.create_s
    );
    if floored {
        let _ = writeln!(
            md,
            "| **operator / floor** | **{:.2}** | **{:.2}** | | | |",
            c.applied_ratio, c.ratio
        );
    }
}

fn operator_memory_md(md: &mut String, c: &Convergence) {
    let _ = writeln!(
        md,
        "## Operator memory\n\n| state | RSS (MiB) | peak (MiB) |\n|---|---:|---:|"
    );
    let mem = &c.memory;
    let _ = writeln!(
        md,
        "| idle | {:.1} | {:.1} |",
        mem.idle.rss_mib, mem.idle.peak_mib
    );
    let _ = writeln!(
        md,
        "| {} engines | {:.1} | {:.1} |",
        c.engines, mem.converged.rss_mib, mem.converged.peak_mib
    );
    if let Some(s) = &mem.scaled {
        let _ = writeln!(
            md,
            "| {} engines ({} Running after {:.0} s) | {:.1} | {:.1} |",
            s.engines, s.converged, s.seconds, s.memory.rss_mib, s.memory.peak_mib
        );
    }
    if let Some(ch) = &c.change {
        let _ = writeln!(
            md,
            "| {} engines, restarted and resynced | {:.1} | {:.1} |",
            ch.engines, ch.restarted_memory.rss_mib, ch.restarted_memory.peak_mib
        );
    }
    md.push('\n');
}

fn webhook_md(md: &mut String, w: &WebhookBench) {
    let _ = writeln!(
        md,
        "## Webhook\n\n{} s per rate, one HTTP/2 TLS connection, injected reviews, {:.0} engines cached; latency in ms\n",
        w.step_seconds, w.cached_engines
    );
    let _ = writeln!(
        md,
        "| rate/s | achieved/s | handler p50 | p95 | p99 | e2e p50 | p95 | p99 | floor e2e p50 | p99 | e2e ratio p50 | p99 | failed |"
    );
    let _ = writeln!(
        md,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for s in &w.steps {
        let h = s.webhook.in_handler;
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        let _ = writeln!(
            md,
            "| {} | {:.0} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {} |",
            s.rate,
            s.webhook.achieved_per_s,
            f(h.map(|h| h.p50_ms)),
            f(h.map(|h| h.p95_ms)),
            f(h.map(|h| h.p99_ms)),
            s.webhook.end_to_end.p50_ms,
            s.webhook.end_to_end.p95_ms,
            s.webhook.end_to_end.p99_ms,
            s.floor.end_to_end.p50_ms,
            s.floor.end_to_end.p99_ms,
            s.ratio_p50,
            s.ratio_p99,
            s.webhook.failed + s.floor.failed,
        );
    }
    let _ = writeln!(
        md,
        "\n| process | idle RSS (MiB) | max RSS under load (MiB) |\n|---|---:|---:|\n| webhook | {:.1} | {:.1} |\n| floor server | {:.1} | {:.1} |\n",
        w.webhook_idle.rss_mib, w.webhook_loaded_rss_mib, w.floor_idle.rss_mib, w.floor_loaded_rss_mib
    );
}

/// One line per target: met, missed, or not measured.
pub fn targets(report: &Report) -> Vec<(String, Option<bool>)> {
    let mut lines = convergence_targets(report.convergence.as_ref());
    lines.extend(latency_and_memory_targets(report));
    lines
}

/// `v` with two decimals and `unit`, or `-` when not measured.
fn show(v: Option<f64>, unit: &str) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}{unit}"))
}

fn convergence_targets(c: Option<&Convergence>) -> Vec<(String, Option<bool>)> {
    // Without the floor (`--skip-floor`) there is no ratio.
    let floored = c.filter(|c| c.floor.total_s > 0.0);
    let change_p99 = c.and_then(|c| c.change.as_ref()).map(|ch| ch.latency.p99_ms);
    vec![
        (
            format!(
                "children applied ≤ {TARGET_RATIO} × floor: {}",
                show(floored.map(|c| c.applied_ratio), "")
            ),
            floored.map(|c| c.applied_ratio <= TARGET_RATIO),
        ),
        (
            format!(
                "all Running ≤ {TARGET_RATIO} × floor: {}",
                show(floored.map(|c| c.ratio), "")
            ),
            floored.map(|c| c.ratio <= TARGET_RATIO),
        ),
        (
            format!(
                "≤ {TARGET_STATUS_WRITES} status writes per engine: {}",
                show(c.map(|c| c.status_writes_per_engine), "")
            ),
            c.map(|c| c.status_writes_per_engine <= TARGET_STATUS_WRITES),
        ),
        (
            format!(
                "0 steady-state writes: {}",
                c.map_or("-".into(), |c| format!("{:.0}", c.steady.writes))
            ),
            c.map(|c| c.steady.writes == 0.0),
        ),
        (
            format!(
                "change latency p99 under load ≤ {TARGET_CHANGE_P99_MS} ms: {}",
                show(change_p99, " ms")
            ),
            change_p99.map(|v| v <= TARGET_CHANGE_P99_MS),
        ),
    ]
}

fn latency_and_memory_targets(report: &Report) -> Vec<(String, Option<bool>)> {
    let c = report.convergence.as_ref();
    let handler_p99 = report.webhook.as_ref().and_then(|w| {
        w.steps
            .iter()
            .find(|s| s.rate == TARGET_HANDLER_RATE)
            .and_then(|s| s.webhook.in_handler)
            .map(|h| h.p99_ms)
    });
    let fleet = c.and_then(fleet_memory);
    // The goal is for 1000 engines of each kind: a run with more cached (`--keep` leaves the
    // operator phase's 1000 LMCacheEngines in place) does not measure it.
    let fleet_of_each = (2 * TARGET_FLEET) as f64;
    let webhook = report
        .webhook
        .as_ref()
        .filter(|w| (fleet_of_each..=fleet_of_each + 10.0).contains(&w.cached_engines));
    vec![
        (
            format!(
                "webhook in-handler p99 ≤ {TARGET_HANDLER_P99_MS} ms at {TARGET_HANDLER_RATE}/s: {}",
                handler_p99.map_or("-".into(), |v| format!("{v:.3} ms"))
            ),
            handler_p99.map(|v| v <= TARGET_HANDLER_P99_MS),
        ),
        (
            format!(
                "operator RSS ≤ {TARGET_OPERATOR_RSS_MIB} MiB with {TARGET_FLEET} engines: {}",
                show(fleet, " MiB")
            ),
            fleet.map(|v| v <= TARGET_OPERATOR_RSS_MIB),
        ),
        (
            format!(
                "operator idle RSS ≤ {TARGET_OPERATOR_IDLE_MIB} MiB: {}",
                show(c.map(|c| c.memory.idle.rss_mib), " MiB")
            ),
            c.map(|c| c.memory.idle.rss_mib <= TARGET_OPERATOR_IDLE_MIB),
        ),
        (
            format!(
                "webhook RSS ≤ {TARGET_WEBHOOK_RSS_MIB} MiB with {TARGET_FLEET} engines of each kind: {}",
                show(webhook.map(|w| w.webhook_loaded_rss_mib), " MiB")
            ),
            webhook.map(|w| w.webhook_loaded_rss_mib <= TARGET_WEBHOOK_RSS_MIB),
        ),
    ]
}

/// The operator's largest measured RSS with at least [`TARGET_FLEET`] engines.
fn fleet_memory(c: &Convergence) -> Option<f64> {
    let mut at_fleet = Vec::new();
    if c.engines >= TARGET_FLEET {
        at_fleet.push(c.memory.converged.rss_mib);
    }
    if let Some(s) = c.memory.scaled.as_ref().filter(|s| s.engines >= TARGET_FLEET) {
        at_fleet.push(s.memory.rss_mib);
    }
    if let Some(ch) = c.change.as_ref().filter(|ch| ch.engines >= TARGET_FLEET) {
        at_fleet.push(ch.restarted_memory.rss_mib);
    }
    at_fleet.into_iter().reduce(f64::max)
}

fn targets_md(md: &mut String, report: &Report) {
    let _ = writeln!(md, "## Targets\n");
    for (line, met) in targets(report) {
        let mark = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        let _ = writeln!(md, "- {line} — {mark}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::change::ChangeLatency;
    use crate::bench::converge::{OperatorMemory, Scaled, Steady, Timing};
    use crate::bench::stats::{Memory, Quantiles};
    use crate::bench::webhook::{HandlerLatency, Side, Step};
    use clap::Parser;
    use std::collections::BTreeMap;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: Args,
    }

    fn args(extra: &[&str]) -> Args {
        let mut all = vec!["bench"];
        all.extend_from_slice(extra);
        Wrapper::parse_from(all).args
    }

    fn side(p99: f64, handler_p99: Option<f64>) -> Side {
        Side {
            sent: 10,
            ok: 10,
            failed: 0,
            achieved_per_s: 500.0,
            end_to_end: Quantiles {
                p50_ms: p99 / 2.0,
                p95_ms: p99,
                p99_ms: p99,
                max_ms: p99,
            },
            in_handler: handler_p99.map(|p99_ms| HandlerLatency {
                p50_ms: 0.1,
                p95_ms: 0.2,
                p99_ms,
                mean_ms: 0.1,
            }),
            injected: Some(10.0),
            max_rss_mib: 12.0,
        }
    }

    #[test]
    fn flags_default_to_the_issue() {
        let a = args(&[]);
        assert_eq!((a.engines, a.namespaces, a.memory_engines), (1000, 100, 1000));
        assert_eq!(a.rates, [100, 500, 1000, 2000]);
        assert_eq!(a.webhook_engines, 1000);
        assert!(!a.skip_change);
        assert_eq!(a.steady_seconds, 60);
        assert_eq!(a.concurrency, 4);
        let a = args(&["--engines=50", "--rates=10,20", "--skip-webhook"]);
        assert_eq!(a.engines, 50);
        assert_eq!(a.rates, [10, 20]);
        assert!(a.skip_webhook && !a.skip_convergence);
    }

    fn mem(rss_mib: f64) -> Memory {
        Memory {
            rss_mib,
            peak_mib: rss_mib,
        }
    }

    /// A convergence phase that meets some targets and misses others.
    fn convergence() -> Convergence {
        Convergence {
            engines: 300,
            namespaces: 30,
            concurrency: 4,
            instances_per_engine: 3,
            floor: Timing {
                total_s: 100.0,
                median_engine_s: 50.0,
                create_s: 5.0,
                applied_s: 10.0,
                cpu_s: 0.0,
            },
            operator: Timing {
                total_s: 110.0,
                median_engine_s: 55.0,
                create_s: 5.0,
                applied_s: 15.0,
                cpu_s: 12.0,
            },
            ratio: 1.1,
            applied_ratio: 1.5,
            floor_writes: Default::default(),
            operator_writes: BTreeMap::from([("PATCH daemonsets".to_string(), 300.0)]),
            status_writes_per_engine: 2.5,
            operator_reconciles: BTreeMap::from([("LMCacheEngine success".to_string(), 750.0)]),
            reconcile_seconds: BTreeMap::from([("LMCacheEngine".to_string(), 40.0)]),
            steady: Steady {
                seconds: 60,
                writes: 2.0,
                by_resource: BTreeMap::from([("PATCH lmcacheengines/status".to_string(), 2.0)]),
            },
            memory: OperatorMemory {
                idle: mem(10.0),
                converged: mem(20.0),
                scaled: Some(Scaled {
                    engines: 1000,
                    converged: 1000,
                    seconds: 200.0,
                    memory: mem(45.0),
                }),
            },
            change: Some(ChangeLatency {
                engines: 1000,
                changes: 50,
                resync_s: 1.5,
                during_resync: 20,
                latency: Quantiles {
                    p50_ms: 300.0,
                    p95_ms: 900.0,
                    p99_ms: 1200.0,
                    max_ms: 1300.0,
                },
                restarted_memory: mem(30.0),
            }),
        }
    }

    fn webhook_bench() -> WebhookBench {
        WebhookBench {
            step_seconds: 15,
            cached_engines: 2001.0,
            steps: vec![Step {
                rate: 500,
                webhook: side(1.0, Some(0.4)),
                floor: side(0.5, None),
                ratio_p50: 2.0,
                ratio_p99: 2.0,
            }],
            webhook_idle: mem(8.0),
            webhook_loaded_rss_mib: 12.0,
            floor_idle: mem(5.0),
            floor_loaded_rss_mib: 6.0,
        }
    }

    #[test]
    fn targets_are_judged_and_rendered() {
        let mut report = Report::new(&args(&[]));
        assert!(targets(&report).iter().all(|(_, met)| met.is_none()));
        report.convergence = Some(convergence());
        report.webhook = Some(webhook_bench());
        let met: Vec<Option<bool>> = targets(&report).into_iter().map(|(_, m)| m).collect();
        // applied, Running, status writes, steady, change, handler, fleet RSS, idle, webhook.
        assert_eq!(
            met,
            [
                Some(false),
                Some(true),
                Some(true),
                Some(false),
                Some(true),
                Some(true),
                Some(false),
                Some(true),
                Some(true)
            ]
        );
        let md = report.to_markdown();
        assert!(
            md.contains("| **operator / floor** | **1.50** | **1.10** |"),
            "{md}"
        );
        assert!(md.contains("| 300 | 900 | 1200 | 1300 |"), "{md}");
        assert!(
            md.contains("Status writes per engine while converging: 2.50"),
            "{md}"
        );
        assert!(
            md.contains(
                "Reconciles while converging: LMCacheEngine success: 750 (2.50 per engine); \
                 time inside reconciles: LMCacheEngine: 40.0 s"
            ),
            "{md}"
        );
        assert!(md.contains("| 500 | 500 | 0.100 | 0.200 | 0.400 |"), "{md}");
        assert!(md.contains("0 steady-state writes: 2 — MISSED"), "{md}");
        assert!(
            md.contains("| 1000 engines (1000 Running after 200 s) | 45.0 | 45.0 |"),
            "{md}"
        );
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["convergence"]["ratio"], 1.1);
        assert_eq!(
            json["webhook"]["steps"][0]["webhook"]["in_handler"]["p99_ms"],
            0.4
        );
        // A `--keep` cluster's webhook also caches the operator phase's engines: not the goal's.
        let rss = |report: &Report| {
            targets(report)
                .into_iter()
                .find(|(line, _)| line.starts_with("webhook RSS"))
                .map(|(_, met)| met)
        };
        assert!(rss(&report).flatten().is_some());
        if let Some(w) = report.webhook.as_mut() {
            w.cached_engines = 3001.0;
        }
        assert_eq!(rss(&report), Some(None));
    }
}
