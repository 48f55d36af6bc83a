//! `lmcache-webhook`: wiring only; see the library crate for the parts.

use anyhow::Context;
use clap::Parser;
use lmcache_api::v1alpha1::{CacheBlendEngine, LMCacheEngine};
use lmcache_blend_injector::Webhook;
use lmcache_runtime::{AdminServer, CertFiles, Readiness, ServingCert, Shutdown, shutdown, tls};
use lmcache_webhook::cli::{Cli, Command, InjectArgs, ServeArgs, TlsMode};
use lmcache_webhook::engines::run_watch;
use lmcache_webhook::inject_cmd::inject_yaml;
use lmcache_webhook::self_managed::{SERVICE_ACCOUNT_NAMESPACE_FILE, Settings};
use lmcache_webhook::{Admitter, EngineCache, Metrics, SelfManaged, WebhookServer};
use prometheus_client::registry::Registry;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    lmcache_runtime::install_crypto_provider();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Inject(args)) => return inject(&args),
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.worker_threads))
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(serve(args))
}

fn inject(args: &InjectArgs) -> anyhow::Result<()> {
    let engines = args
        .engines
        .iter()
        .map(|path| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let input = if args.filename.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        text
    } else {
        std::fs::read_to_string(&args.filename)
            .with_context(|| format!("reading {}", args.filename.display()))?
    };
    let report = inject_yaml(&engines, &input, &args.namespace, &args.cluster_domain)?;
    for note in &report.notes {
        eprintln!("{note}");
    }
    print!("{}", report.output);
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    lmcache_runtime::init_tracing(args.log_format, &args.log_level)?;
    let (_trigger, signal) = Shutdown::on_signals()?;

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let readiness = Readiness::new();
    let cacheblend_gate = readiness.gate("cacheblendengine-cache");
    let lmcache_gate = readiness.gate("lmcacheengine-cache");
    // Self-managed TLS may wait for the API before it has a certificate: unready meanwhile.
    let certificate_gate = readiness.gate("serving-certificate");
    let (cacheblend, cacheblend_writer) = EngineCache::<CacheBlendEngine>::new();
    let (lmcache, lmcache_writer) = EngineCache::<LMCacheEngine>::new();

    // Files are read before anything starts, so a bad pair fails the start.
    let files = match args.tls_mode() {
        TlsMode::CertManager | TlsMode::Files => {
            let files = CertFiles::in_dir(args.cert_dir());
            let serving = ServingCert::load(&files).context("loading the serving certificate")?;
            Some((files, Arc::new(serving)))
        }
        TlsMode::SelfManaged => None,
    };
    let self_managed = match args.tls_mode() {
        TlsMode::SelfManaged => Some(Settings::from_args(
            &args,
            Path::new(SERVICE_ACCOUNT_NAMESPACE_FILE),
        )?),
        TlsMode::CertManager | TlsMode::Files => None,
    };

    let admin = AdminServer::bind(
        &[args.metrics_bind_address, args.health_probe_bind_address],
        Arc::new(registry),
        readiness.clone(),
    )
    .await?;
    let client = kube::Client::try_default()
        .await
        .context("building a Kubernetes client (KUBECONFIG or in-cluster)")?;

    // After a signal: unready at once, keep serving for the delay, then stop and drain.
    let (stop_trigger, stop) = shutdown::channel();
    let delay = Duration::from_secs(args.shutdown_delay_seconds);
    tokio::spawn({
        let readiness = readiness.clone();
        let signal = signal.clone();
        async move {
            signal.requested().await;
            readiness.set_draining();
            tokio::time::sleep(delay).await;
            stop_trigger.trigger();
        }
    });

    let admin = tokio::spawn(admin.serve(stop.clone()));
    let cacheblend_metrics = metrics.clone();
    let cacheblend_watch = tokio::spawn(run_watch(
        client.clone(),
        cacheblend_writer,
        cacheblend_gate,
        move |count| cacheblend_metrics.set_cached_engines(Webhook::CacheBlend, count),
        stop.clone(),
    ));
    let lmcache_metrics = metrics.clone();
    let lmcache_watch = tokio::spawn(run_watch(
        client.clone(),
        lmcache_writer,
        lmcache_gate,
        move |count| lmcache_metrics.set_cached_engines(Webhook::Lmcache, count),
        stop.clone(),
    ));

    let (serving, certificates) = match (files, self_managed) {
        (Some((files, serving)), _) => {
            let follow = serving
                .clone()
                .follow_files(files, tls::DEFAULT_CHECK_INTERVAL, stop.clone());
            let export = export_serving_expiry(serving.clone(), metrics.clone(), stop.clone());
            let task = tokio::spawn(async move {
                tokio::join!(follow, export);
            });
            (Some(serving), task)
        }
        (None, Some(settings)) => {
            tracing::info!(
                namespace = %settings.namespace,
                secret = %settings.secret_name,
                configuration = %settings.webhook_configuration,
                names = ?settings.names,
                "self-managed TLS"
            );
            let manager = SelfManaged::new(client, settings, metrics.clone());
            match manager.first(&stop).await {
                Some(contents) => {
                    let serving = Arc::new(
                        ServingCert::from_pem(contents.tls_crt.as_bytes(), contents.tls_key.as_bytes())
                            .context("loading the serving certificate from the Secret")?,
                    );
                    (
                        Some(serving.clone()),
                        tokio::spawn(manager.run(serving, stop.clone())),
                    )
                }
                None => (None, tokio::spawn(async {})),
            }
        }
        (None, None) => (None, tokio::spawn(async {})),
    };

    if let Some(serving) = serving {
        certificate_gate.set(true);
        let address = SocketAddr::new(args.bind_address, args.port);
        let server = WebhookServer::bind(
            address,
            serving.server_config()?,
            Admitter::new(cacheblend, lmcache, args.cluster_domain.clone()),
            metrics,
        )
        .await?;
        tracing::info!(
            %address,
            paths = ?[lmcache_webhook::MUTATE_PATH, lmcache_webhook::MUTATE_LMCACHE_PATH],
            cluster_domain = %args.cluster_domain,
            "serving"
        );
        server.serve(stop).await;
    } else {
        tracing::info!("stopped before a serving certificate was available");
    }
    let _ = admin.await;
    let _ = cacheblend_watch.await;
    let _ = lmcache_watch.await;
    let _ = certificates.await;
    tracing::info!("stopped");
    Ok(())
}

/// Keeps `lmcache_webhook_certificate_expiry_timestamp_seconds{certificate="serving"}` on the
/// leaf being served (files modes; the self-managed loop sets it itself).
async fn export_serving_expiry(serving: Arc<ServingCert>, metrics: Metrics, stop: Shutdown) {
    loop {
        if let Some(leaf) = serving.current().cert.first() {
            metrics.observe_serving_leaf(leaf);
        }
        tokio::select! {
            () = stop.requested() => return,
            () = tokio::time::sleep(tls::DEFAULT_CHECK_INTERVAL) => {}
        }
    }
}
