//! Command line: `run` (alias `controller`), `render` and `crds`. Every `run` flag can also be
//! set through an environment variable.

use crate::list_strategy::ListStrategy;
use clap::{Args, Parser, Subcommand};
use lmcache_api::constants::DEFAULT_CLUSTER_DOMAIN;
use lmcache_runtime::{BindAddress, LogFormat};
use std::path::PathBuf;
use std::time::Duration;

/// The LMCache operator.
#[derive(Debug, Parser)]
#[command(name = "lmcache-operator", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controllers for LMCacheEngine, CacheBlendEngine and LMCacheCoordinator (in-cluster
    /// or with KUBECONFIG).
    #[command(alias = "controller")]
    Run(RunArgs),
    /// Print the objects the operator would create for the custom resources in the given files.
    Render(RenderArgs),
    /// Print the three CustomResourceDefinitions as YAML.
    Crds,
}

/// Flags of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Compete for the leader Lease; only the leader reconciles.
    #[arg(
        long,
        env = "LMCACHE_OPERATOR_LEADER_ELECT",
        num_args = 0..=1,
        default_value_t = false,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub leader_elect: bool,

    /// Address of the metrics endpoint (`host:port`, `:port`, or `0` to disable).
    #[arg(long, env = "LMCACHE_OPERATOR_METRICS_BIND_ADDRESS", default_value = ":8080")]
    pub metrics_bind_address: BindAddress,

    /// Address of the /healthz and /readyz endpoints.
    #[arg(
        long,
        env = "LMCACHE_OPERATOR_HEALTH_PROBE_BIND_ADDRESS",
        default_value = ":8081"
    )]
    pub health_probe_bind_address: BindAddress,

    /// Cluster DNS domain used in connection hosts (`tcp://N.S.svc.<domain>`); must equal the
    /// webhook's.
    #[arg(long, env = "LMCACHE_OPERATOR_CLUSTER_DOMAIN", default_value = DEFAULT_CLUSTER_DOMAIN)]
    pub cluster_domain: String,

    /// Objects of each kind reconciled in parallel.
    #[arg(long, env = "LMCACHE_OPERATOR_MAX_CONCURRENT_RECONCILES", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,

    /// Threads of the async runtime. The work is waiting on the API server, so a few suffice;
    /// the runtime's default (one per CPU) would start dozens on a large node, each with its
    /// own allocator arena and stack.
    #[arg(long, env = "LMCACHE_OPERATOR_WORKER_THREADS", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub worker_threads: u16,

    /// How the watches fill their caches: `auto` streams the initial lists (`sendInitialEvents`)
    /// when the API server confirms it does (Kubernetes 1.32, 1.34 and later by default), else
    /// lists in pages of 100.
    #[arg(long, env = "LMCACHE_OPERATOR_LIST_STRATEGY", value_enum, default_value_t = ListStrategy::Auto)]
    pub list_strategy: ListStrategy,

    /// Log line format.
    #[arg(long, env = "LMCACHE_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Log filter (`RUST_LOG` syntax); a non-empty `RUST_LOG` wins.
    #[arg(long, env = "LMCACHE_OPERATOR_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// How often to re-check whether the ServiceMonitor API is served (e.g. `5m`, `3s`).
    #[arg(long, env = "LMCACHE_OPERATOR_SERVICEMONITOR_RECHECK", default_value = "5m", value_parser = parse_duration)]
    pub servicemonitor_recheck: Duration,

    /// `/healthz` fails when the watches have not completed their initial list this long
    /// after leadership began, or a watch has failed for this long without a success.
    #[arg(long, env = "LMCACHE_OPERATOR_LIVENESS_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub liveness_timeout: Duration,

    /// An opted-in pod without its webhook's marks this old was admitted without the webhook
    /// (a missed injection: reported, and repaired for engines with `injection.repairMissed`).
    #[arg(long, env = "LMCACHE_OPERATOR_MISSED_INJECTION_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub missed_injection_grace: Duration,

    /// `<namespace>/<name>` of the webhook's Service: missed injections are repaired only
    /// while an EndpointSlice of it has a ready endpoint. Unset: they are only reported.
    #[arg(long, env = "LMCACHE_OPERATOR_WEBHOOK_SERVICE")]
    pub webhook_service: Option<crate::watchdog::WebhookService>,
}

/// Flags of `render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// A YAML file with custom resources (repeatable; `-` reads standard input).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,

    /// Cluster DNS domain used in connection hosts.
    #[arg(long, default_value = DEFAULT_CLUSTER_DOMAIN)]
    pub cluster_domain: String,
}

/// Parses `500ms`, `3s`, `5m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 30s, 5m, 1h"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "" | "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        _ => return Err(format!("invalid duration {text:?}: unit must be ms, s, m or h")),
    };
    if duration.is_zero() {
        return Err("the duration must be greater than zero".to_string());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> RunArgs {
        let mut all = vec!["lmcache-operator"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Run(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_documented_flags() {
        let args = run(&["run"]);
        assert!(!args.leader_elect);
        assert_eq!(args.metrics_bind_address, ":8080".parse().unwrap());
        assert_eq!(args.health_probe_bind_address, ":8081".parse().unwrap());
        assert_eq!(args.cluster_domain, "cluster.local");
        assert_eq!(args.max_concurrent_reconciles, 4);
        assert_eq!(args.worker_threads, 2);
        assert_eq!(args.log_format, LogFormat::Json);
        assert_eq!(args.servicemonitor_recheck, Duration::from_secs(300));
    }

    #[test]
    fn install_manifest_arguments_parse() {
        let args = run(&[
            "controller",
            "--leader-elect",
            "--metrics-bind-address=:8080",
            "--health-probe-bind-address=:8081",
            "--cluster-domain=corp.local",
            "--servicemonitor-recheck=3s",
            "--log-format=plain",
        ]);
        assert!(args.leader_elect);
        assert_eq!(args.cluster_domain, "corp.local");
        assert_eq!(args.servicemonitor_recheck, Duration::from_secs(3));
        assert_eq!(args.log_format, LogFormat::Plain);
        assert!(!run(&["run", "--leader-elect=false"]).leader_elect);
        assert_eq!(
            run(&["run", "--metrics-bind-address", "0"]).metrics_bind_address,
            BindAddress::Disabled
        );
        assert!(Cli::try_parse_from(["lmcache-operator", "run", "--max-concurrent-reconciles=0"]).is_err());
    }

    #[test]
    fn render_and_crds_parse() {
        let cli = Cli::try_parse_from(["lmcache-operator", "render", "-f", "a.yaml", "-f", "-"]).unwrap();
        match cli.command {
            Command::Render(r) => assert_eq!(r.files, [PathBuf::from("a.yaml"), PathBuf::from("-")]),
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["lmcache-operator", "render"]).is_err());
        assert!(matches!(
            Cli::try_parse_from(["lmcache-operator", "crds"]).unwrap().command,
            Command::Crds
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
    }
}
