//! The three kube-runtime Controllers. Each is driven only by its trigger channel (fed by the
//! watches, see `watches`) and by its own requeues; its cache is the shared watch cache.

use crate::context::Context;
use crate::keys::ObjectKey;
use crate::primary::Primary;
use crate::reconcile::{error_policy, reconcile};
use crate::watches::{TriggerRef, TriggerStreams};
use futures::channel::mpsc::UnboundedReceiver;
use futures::{FutureExt, StreamExt};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Config, Controller};
use kube::runtime::watcher;
use lmcache_api::v1alpha1::{CacheBlendEngine, LMCacheCoordinator, LMCacheEngine};
use lmcache_runtime::Shutdown;
use std::sync::Arc;

/// Runs the three controllers until `shutdown`, then lets running reconciles finish.
pub async fn run_controllers(
    ctx: Arc<Context>,
    streams: TriggerStreams,
    concurrency: u16,
    shutdown: Shutdown,
) {
    futures::join!(
        run_one::<LMCacheEngine>(ctx.clone(), streams.engines, concurrency, shutdown.clone()),
        run_one::<CacheBlendEngine>(ctx.clone(), streams.blend_engines, concurrency, shutdown.clone()),
        run_one::<LMCacheCoordinator>(ctx, streams.coordinators, concurrency, shutdown),
    );
}

async fn run_one<K: Primary>(
    ctx: Arc<Context>,
    triggers: UnboundedReceiver<TriggerRef<K>>,
    concurrency: u16,
    shutdown: Shutdown,
) {
    // `graceful_shutdown_on` needs a `Sync` future: bridge through a oneshot.
    let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
    tokio::spawn(async move {
        shutdown.requested().await;
        let _ = stop_tx.send(());
    });
    let store = K::store(&ctx.stores).clone();
    Controller::for_stream(
        futures::stream::pending::<Result<DeserializeGuard<K>, watcher::Error>>(),
        store,
    )
    .reconcile_on(triggers)
    .with_config(Config::default().concurrency(concurrency))
    .graceful_shutdown_on(stop_rx.map(|_| ()))
    .run(reconcile::<K>, error_policy::<K>, ctx.clone())
    .for_each(|result| {
        let ctx = ctx.clone();
        async move {
            match result {
                Ok(_) => {}
                // Logged with its object by the error policy.
                Err(controller::Error::ReconcilerFailed(..)) => {}
                // A trigger for an object that is gone (or of the other engine kind): nothing to
                // do, and a resync of it is over.
                Err(controller::Error::ObjectNotFound(obj)) => {
                    tracing::trace!(object = %obj, "trigger for an object not in the cache");
                    if let Some(namespace) = &obj.namespace {
                        ctx.resyncs
                            .done(&ObjectKey::new(K::KIND, namespace.clone(), obj.name.clone()));
                    }
                }
                Err(error) => tracing::warn!(%error, kind = %K::KIND, "controller error"),
            }
        }
    })
    .await;
    tracing::info!(kind = %K::KIND, "controller stopped");
}
