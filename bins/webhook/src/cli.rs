//! Command line: `lmcache-webhook [serve] [flags]` and `lmcache-webhook inject`.

use crate::self_managed::DEFAULT_SECRET_NAME;
use clap::{Args, Parser, Subcommand, ValueEnum};
use lmcache_runtime::{BindAddress, LogFormat};
use std::net::IpAddr;
use std::path::PathBuf;

/// CacheBlend mutating admission webhook of the LMCache operator.
#[derive(Debug, Parser)]
#[command(name = "lmcache-webhook", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of `serve` when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve AdmissionReviews over HTTPS (the default).
    #[command(alias = "webhook")]
    Serve(ServeArgs),
    /// Print Pods and workloads as the webhook would admit them.
    Inject(InjectArgs),
}

/// Where the serving certificate comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TlsMode {
    /// The webhook issues its own CA and serving certificate into a Secret, rotates them and
    /// writes the CA into its MutatingWebhookConfiguration.
    SelfManaged,
    /// `tls.crt`/`tls.key` in `--cert-dir`, mounted from a cert-manager Secret (cert-manager
    /// renews it and injects the CA); the same as `files`.
    CertManager,
    /// `tls.crt`/`tls.key` in `--cert-dir`, from anywhere; re-read when they change.
    Files,
}

/// Flags of `serve`.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// HTTPS port of the admission endpoint.
    #[arg(long, env = "LMCACHE_WEBHOOK_PORT", default_value_t = 9443)]
    pub port: u16,
    /// Address the HTTPS server binds.
    #[arg(long, env = "LMCACHE_WEBHOOK_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Where the serving certificate comes from; see [`ServeArgs::tls_mode`] for the default.
    #[arg(long, env = "LMCACHE_WEBHOOK_TLS", value_enum)]
    pub tls: Option<TlsMode>,
    /// Directory holding `tls.crt` and `tls.key` (re-read when they change); `cert-manager`
    /// and `files` only (default [`DEFAULT_CERT_DIR`]).
    #[arg(long, env = "LMCACHE_WEBHOOK_CERT_DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Secret holding the self-managed CA and serving certificate, in the webhook's namespace.
    #[arg(long, env = "LMCACHE_WEBHOOK_TLS_SECRET", default_value = DEFAULT_SECRET_NAME)]
    pub tls_secret: String,
    /// MutatingWebhookConfiguration whose entries get the self-managed CA as `caBundle`.
    #[arg(
        long,
        env = "LMCACHE_WEBHOOK_CONFIGURATION",
        default_value = "lmcache-operator-cacheblend-injector"
    )]
    pub webhook_configuration: String,
    /// Service in front of the webhook: the self-managed certificate is issued for its names.
    #[arg(
        long,
        env = "LMCACHE_WEBHOOK_SERVICE",
        default_value = "lmcache-operator-webhook"
    )]
    pub service_name: String,
    /// The webhook's namespace (the Secret's and the Service's); default: the service-account
    /// namespace file.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Lifetime of a self-managed CA (renewed with a third left).
    #[arg(
        long,
        env = "LMCACHE_WEBHOOK_CA_LIFETIME_SECONDS",
        default_value_t = 10 * 365 * 86_400,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub ca_lifetime_seconds: u64,
    /// Lifetime of a self-managed serving certificate (renewed with a third left).
    #[arg(
        long,
        env = "LMCACHE_WEBHOOK_SERVING_LIFETIME_SECONDS",
        default_value_t = 90 * 86_400,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub serving_lifetime_seconds: u64,
    /// Mean seconds between two looks at the self-managed Secret and webhook configuration
    /// (jittered by 25 %).
    #[arg(
        long,
        env = "LMCACHE_WEBHOOK_TLS_POLL_SECONDS",
        default_value_t = 45,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub tls_poll_seconds: u64,
    /// Plain-HTTP address for `/metrics` (`host:port`, `:port`, or `0` to disable).
    #[arg(long, env = "LMCACHE_METRICS_BIND_ADDRESS", default_value = ":8080")]
    pub metrics_bind_address: BindAddress,
    /// Plain-HTTP address for `/healthz` and `/readyz` (`0` disables).
    #[arg(long, env = "LMCACHE_HEALTH_PROBE_BIND_ADDRESS", default_value = ":8081")]
    pub health_probe_bind_address: BindAddress,
    /// Cluster DNS domain; must equal the controller's.
    #[arg(long, env = "LMCACHE_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Log line format.
    #[arg(long, env = "LMCACHE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Log filter (`info`, `debug`, `info,kube=warn`); a non-empty `RUST_LOG` wins.
    #[arg(long, env = "LMCACHE_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Threads of the async runtime. The default is not one per CPU: on a large node that is
    /// dozens of threads, each with its own allocator arena and stack, for a handler that
    /// needs well under a millisecond per review (2000 reviews/s measured on 2 threads).
    #[arg(long, env = "LMCACHE_WEBHOOK_WORKER_THREADS", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub worker_threads: u16,
    /// Seconds to keep serving, unready, after SIGTERM before closing the listener, so the
    /// Service stops routing here first (the webhook fails open: a refused call is a pod
    /// admitted without injection).
    #[arg(long, env = "LMCACHE_WEBHOOK_SHUTDOWN_DELAY_SECONDS", default_value_t = 3)]
    pub shutdown_delay_seconds: u64,
}

/// Where `cert-manager` and `files` read the pair when `--cert-dir` is not given.
pub const DEFAULT_CERT_DIR: &str = "/tmp/k8s-webhook-server/serving-certs";

impl ServeArgs {
    /// `--tls`, else `files` when `--cert-dir` is given (callers written before self-managed
    /// TLS existed keep what they asked for), else `self-managed`.
    pub fn tls_mode(&self) -> TlsMode {
        self.tls.unwrap_or(if self.cert_dir.is_some() {
            TlsMode::Files
        } else {
            TlsMode::SelfManaged
        })
    }

    /// The directory of `tls.crt` and `tls.key`.
    pub fn cert_dir(&self) -> PathBuf {
        self.cert_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CERT_DIR))
    }
}

/// Flags of `inject`.
#[derive(Clone, Debug, Args)]
pub struct InjectArgs {
    /// Multi-document YAML of CacheBlendEngines (repeatable).
    #[arg(long = "engine", short = 'e', required = true)]
    pub engines: Vec<PathBuf>,
    /// Pods or workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob);
    /// `-` reads stdin.
    #[arg(short = 'f', long = "filename")]
    pub filename: PathBuf,
    /// Namespace of objects (and engines) that do not name one.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Cluster DNS domain used in the injected `--kv-transfer-config`.
    #[arg(long, env = "LMCACHE_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_is_the_default_and_flags_parse() {
        let cli = Cli::try_parse_from([
            "lmcache-webhook",
            "--bind-address",
            "127.0.0.1",
            "--metrics-bind-address",
            "0",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.port, 9443);
        assert_eq!(cli.serve.bind_address.to_string(), "127.0.0.1");
        assert_eq!(cli.serve.metrics_bind_address, BindAddress::Disabled);
        assert_eq!(cli.serve.health_probe_bind_address.to_string(), "0.0.0.0:8081");
        assert_eq!(cli.serve.log_format, LogFormat::Json);
        assert_eq!(cli.serve.tls_mode(), TlsMode::SelfManaged);
        assert_eq!(cli.serve.cert_dir(), PathBuf::from(DEFAULT_CERT_DIR));
        assert_eq!(cli.serve.tls_secret, "lmcache-operator-webhook-tls");
        assert_eq!(
            cli.serve.webhook_configuration,
            "lmcache-operator-cacheblend-injector"
        );
        assert_eq!(cli.serve.ca_lifetime_seconds, 315_360_000);
        assert_eq!(cli.serve.serving_lifetime_seconds, 7_776_000);

        let cli = Cli::try_parse_from([
            "lmcache-webhook",
            "serve",
            "--port=9443",
            "--cert-dir=/tmp/k8s-webhook-server/serving-certs",
            "--metrics-bind-address=:8080",
            "--health-probe-bind-address=:8081",
            "--cluster-domain=cluster.local",
            "--log-format=plain",
        ])
        .unwrap();
        let Some(Command::Serve(args)) = cli.command else {
            panic!()
        };
        assert_eq!(args.log_format, LogFormat::Plain);
        for (text, mode) in [
            ("self-managed", TlsMode::SelfManaged),
            ("cert-manager", TlsMode::CertManager),
            ("files", TlsMode::Files),
        ] {
            let cli = Cli::try_parse_from(["lmcache-webhook", "--tls", text]).unwrap();
            assert_eq!(cli.serve.tls_mode(), mode);
            let cli = Cli::try_parse_from(["lmcache-webhook", "--cert-dir=/certs", "--tls", text]).unwrap();
            assert_eq!(cli.serve.tls_mode(), mode, "--tls wins");
        }
        let cli = Cli::try_parse_from(["lmcache-webhook", "--cert-dir=/certs"]).unwrap();
        assert_eq!(
            cli.serve.tls_mode(),
            TlsMode::Files,
            "a --cert-dir alone means files"
        );
        assert_eq!(cli.serve.cert_dir(), PathBuf::from("/certs"));
        assert!(Cli::try_parse_from(["lmcache-webhook", "--tls", "acme"]).is_err());
        assert!(Cli::try_parse_from(["lmcache-webhook", "--serving-lifetime-seconds", "0"]).is_err());
        assert!(Cli::try_parse_from(["lmcache-webhook", "--metrics-bind-address", "nope"]).is_err());
    }

    #[test]
    fn inject_flags() {
        let cli =
            Cli::try_parse_from(["lmcache-webhook", "inject", "--engine", "e.yaml", "-f", "-"]).unwrap();
        let Some(Command::Inject(args)) = cli.command else {
            panic!()
        };
        assert_eq!(args.filename, PathBuf::from("-"));
        assert_eq!(args.namespace, "default");
        assert!(Cli::try_parse_from(["lmcache-webhook", "inject", "-f", "x"]).is_err());
    }
}
