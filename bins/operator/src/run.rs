//! `lmcache-operator run`: admin endpoints, optional leader election, watches and controllers.

use crate::cli::RunArgs;
use crate::context::{Context, ServiceMonitorApi, Writers};
use crate::controllers::run_controllers;
use crate::leader;
use crate::metrics::Metrics;
use crate::resync_queue::ResyncQueue;
use crate::watches::{
    Triggers, WatchHealth, recheck_service_monitor_api, service_monitor_api_served, spawn_watches,
};
use crate::write_counter::WriteCounterLayer;
use anyhow::{Context as _, bail};
use kube::Client;
use kube::client::ClientBuilder;
use lmcache_runtime::{AdminServer, Liveness, Readiness, ReadyGate, Shutdown, init_tracing};
use prometheus_client::registry::Registry;
use std::path::Path;
use std::sync::Arc;

/// How long running reconciles may take to finish after SIGTERM.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long the Events still queued may take to go out at shutdown.
const EVENTS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// How long releasing the Lease may take at shutdown. Drain, Events and release stay below the
/// controller's `terminationGracePeriodSeconds` (10 s in install.yaml).
const RELEASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs until SIGTERM (exit 0) or a fatal error such as a lost lease (exit non-zero).
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    lmcache_runtime::install_crypto_provider();
    init_tracing(args.log_format, &args.log_level)?;
    let (_trigger, shutdown) = Shutdown::on_signals()?;

    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let readiness = Readiness::new();
    let gate = readiness.gate("controllers");
    let liveness = Liveness::new();
    let admin = AdminServer::bind_with_liveness(
        &[args.metrics_bind_address, args.health_probe_bind_address],
        Arc::new(registry),
        readiness.clone(),
        liveness.clone(),
    )
    .await?;
    let admin = tokio::spawn(admin.serve(shutdown.clone()));

    let clients = build_clients(&metrics).await?;
    let leader = Leader {
        metrics,
        gate,
        liveness,
    };
    let result = if args.leader_elect {
        run_with_lease(clients, &args, leader, shutdown.clone()).await
    } else {
        run_leader(clients, &args, leader, shutdown.clone()).await
    };
    readiness.set_draining();
    if result.is_ok() {
        let _ = admin.await;
    }
    result
}

/// The operator's clients; every write of both is counted.
pub struct Clients {
    /// Everything but evictions: retries 429/503/504 itself (kube's default).
    pub main: Client,
    /// Evictions: a 429 there is a PodDisruptionBudget's answer, for the operator to report
    /// and retry on its own schedule, not a reason to hold a reconcile in the client's retries.
    pub evictions: Client,
}

/// Both clients, from one configuration.
pub async fn build_clients(metrics: &Metrics) -> anyhow::Result<Clients> {
    let config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration (in-cluster or KUBECONFIG)")?;
    let mut no_retry = config.clone();
    no_retry.default_retry = false;
    let build = |config: kube::Config| -> anyhow::Result<Client> {
        Ok(ClientBuilder::try_from(config)?
            .with_layer(&WriteCounterLayer::new(metrics.clone()))
            .build())
    };
    Ok(Clients {
        main: build(config)?,
        evictions: build(no_retry)?,
    })
}

/// What the leader's work reports to: metrics, readiness and liveness.
struct Leader {
    metrics: Metrics,
    gate: ReadyGate,
    liveness: Liveness,
}

async fn run_with_lease(
    clients: Clients,
    args: &RunArgs,
    leader: Leader,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let namespace = leader::operator_namespace(
        std::env::var("POD_NAMESPACE").ok(),
        Path::new(leader::SERVICE_ACCOUNT_NAMESPACE_FILE),
    )?;
    // A standby is ready: it serves probes and metrics while it waits.
    leader.gate.set(true);
    let (mut leading, lease_task) =
        leader::start(clients.main.clone(), &namespace, leader::Timings::default()).await?;
    tracing::info!(namespace, lease = leader::LEASE_NAME, "waiting for leadership");
    tokio::select! {
        () = shutdown.requested() => return Ok(()),
        changed = leading.wait_for(|l| *l) => { changed.context("leader election stopped")?; }
    }
    tracing::info!("acquired leadership");
    leader.gate.set(false);
    let mut lost = leading.clone();
    let result = tokio::select! {
        result = run_leader(clients, args, leader, shutdown) => result,
        _ = lost.wait_for(|l| !*l) => bail!(
            "lost the leader Lease {namespace}/{} (not renewed within the renew deadline, or taken over); exiting",
            leader::LEASE_NAME
        ),
    };
    // Dropping every receiver makes the elector release the Lease.
    drop(leading);
    drop(lost);
    // Releasing is a courtesy (a standby takes over at once); never worth outliving the grace
    // period for.
    let _ = tokio::time::timeout(RELEASE_TIMEOUT, lease_task).await;
    result
}

async fn run_leader(
    clients: Clients,
    args: &RunArgs,
    leader: Leader,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let Leader {
        metrics,
        gate,
        liveness,
    } = leader;
    let client = clients.main;
    let writers = Writers::default();
    let stores = writers.stores();
    let sm_api = ServiceMonitorApi::new(service_monitor_api_served(&client).await.unwrap_or(false));
    // Resyncs in flight: enough to keep every reconcile slot busy, few enough that a change
    // waits behind at most this many.
    let resyncs = Arc::new(ResyncQueue::new(2 * usize::from(args.max_concurrent_reconciles)));
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            args.cluster_domain.clone(),
            stores.clone(),
            sm_api,
            metrics,
        )
        .with_eviction_client(clients.evictions)
        .with_resyncs(resyncs.clone()),
    );
    let lists = args.list_strategy.resolve(&client).await;
    let (triggers, streams) = Triggers::channel(resyncs);
    tokio::spawn(triggers.clone().feed_resyncs());
    let watchdog_triggers = triggers.clone();
    spawn_watches(
        &client,
        lists,
        writers,
        ctx.clone(),
        triggers.clone(),
        &WatchHealth::new(liveness.clone(), args.liveness_timeout),
    );
    tokio::spawn(recheck_service_monitor_api(
        client,
        ctx.clone(),
        triggers,
        args.servicemonitor_recheck,
    ));

    // Ready once every watch (the ServiceMonitor one aside: the API may be absent) has listed.
    let synced = async {
        stores.engines.wait_until_ready().await?;
        stores.blend_engines.wait_until_ready().await?;
        stores.coordinators.wait_until_ready().await?;
        stores.daemon_sets.wait_until_ready().await?;
        stores.deployments.wait_until_ready().await?;
        stores.services.wait_until_ready().await?;
        stores.config_maps.wait_until_ready().await?;
        stores.pods.wait_until_ready().await
    };
    // Unhealthy if the caches never fill (a missing CRD, a missing RBAC rule): a restart may
    // help, and at least the failure becomes visible.
    let listed = liveness.check("initial list of the watches", args.liveness_timeout);
    listed.failing();
    tokio::select! {
        () = shutdown.requested() => return Ok(()),
        synced = synced => synced.context("a watch stopped before its initial list")?,
    }
    listed.ok();
    tokio::spawn(crate::watchdog::run(
        ctx.clone(),
        stores.opt_in.clone(),
        watchdog_triggers,
        crate::watchdog::Settings {
            grace: args.missed_injection_grace,
            webhook_service: args.webhook_service.clone(),
        },
    ));
    gate.set(true);
    tracing::info!("watch caches synced; controllers running");
    let controllers = run_controllers(
        ctx.clone(),
        streams,
        args.max_concurrent_reconciles,
        shutdown.clone(),
    );
    let drained = async {
        shutdown.requested().await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        () = controllers => {}
        () = drained => tracing::warn!("reconciles still running {DRAIN_TIMEOUT:?} after the shutdown request; stopping"),
    }
    if tokio::time::timeout(EVENTS_TIMEOUT, ctx.events_sent())
        .await
        .is_err()
    {
        tracing::warn!("Events still unsent {EVENTS_TIMEOUT:?} after the reconciles stopped; dropping them");
    }
    Ok(())
}
