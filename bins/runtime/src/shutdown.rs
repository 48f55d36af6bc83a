//! Shutdown: the first SIGTERM/SIGINT asks every component to drain, a second one aborts.

use crate::Error;
use std::sync::Arc;
use tokio::sync::watch;

/// Resolves once shutdown was requested. Cheap to clone; every component gets its own.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Requests shutdown (signals do this; tests and fatal errors may too).
#[derive(Clone, Debug)]
pub struct ShutdownTrigger {
    tx: Arc<watch::Sender<bool>>,
}

/// A trigger and the [`Shutdown`] it resolves.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx: Arc::new(tx) }, Shutdown { rx })
}

impl ShutdownTrigger {
    /// Requests shutdown; later calls do nothing more.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

impl Shutdown {
    /// A [`Shutdown`] driven by SIGTERM and SIGINT. The first signal requests shutdown, a second
    /// one exits the process at once with status 130. Must be called inside a Tokio runtime.
    pub fn on_signals() -> Result<(ShutdownTrigger, Self), Error> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(Error::Signal)?;
        let mut int = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
        let (trigger, shutdown) = channel();
        let first = trigger.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested, draining"),
                _ = int.recv() => tracing::info!(signal = "SIGINT", "shutdown requested, draining"),
            }
            first.trigger();
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!("second signal, aborting");
            std::process::exit(130);
        });
        Ok((trigger, shutdown))
    }

    /// Resolves when shutdown is requested. Never resolves if every trigger is dropped first.
    pub async fn requested(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|requested| *requested).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn trigger_resolves_every_clone() {
        let (trigger, shutdown) = channel();
        let other = shutdown.clone();
        assert!(!*shutdown.rx.borrow());
        let waiter = tokio::spawn(async move { other.requested().await });
        trigger.trigger();
        waiter.await.unwrap();
        assert!(*shutdown.rx.borrow());
        shutdown.requested().await;
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_trigger_never_resolves() {
        let (trigger, shutdown) = channel();
        drop(trigger);
        let waited = tokio::time::timeout(Duration::from_secs(3600), shutdown.requested()).await;
        assert!(waited.is_err());
    }
}
