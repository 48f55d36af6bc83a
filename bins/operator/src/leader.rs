//! Leader election on the Lease `lmcache-operator-controller-leader` in the operator's own
//! namespace (operations.md §6, lifecycle.md §4, MT-9: the namespace is never hard-coded).
//!
//! The client-go algorithm with its standard timings: a lease of 15 s, renewed every 2 s, and a
//! **renew deadline** of 10 s — a leader that has not renewed for 10 s stops leading (the
//! process then exits) before its lease can expire for the others, so two leaders never act at
//! once. Candidates judge expiry by when *they* last saw the Lease change, not by the holder's
//! clock. Writes are optimistic (`resourceVersion`), so two candidates cannot both win.

use anyhow::{Context as _, bail};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, Error as KubeError};
use std::path::Path;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Name of the Lease.
pub const LEASE_NAME: &str = "lmcache-operator-controller-leader";
pub use lmcache_runtime::SERVICE_ACCOUNT_NAMESPACE_FILE;

/// Timings of the election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// How long a lease is valid after its last renewal.
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long gives up (< `lease_duration`).
    pub renew_deadline: Duration,
    /// Pause between two attempts to acquire or renew.
    pub retry_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The operator's namespace: `POD_NAMESPACE`, else the service-account namespace file.
pub fn operator_namespace(pod_namespace: Option<String>, sa_file: &Path) -> anyhow::Result<String> {
    match lmcache_runtime::own_namespace(pod_namespace, sa_file) {
        Some(ns) => Ok(ns),
        None => bail!(
            "cannot determine the operator namespace for the leader-election Lease: set POD_NAMESPACE \
             (Downward API metadata.namespace) or run with a service account ({} missing)",
            sa_file.display()
        ),
    }
}

/// A unique identity for this replica: the pod name (`HOSTNAME`) plus the process id.
pub fn identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "lmcache-operator".to_string());
    format!("{host}_{}", std::process::id())
}

/// What a candidate does after reading the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// Write the Lease with us as holder; `new_term` when taking it over (or creating it).
    Claim { new_term: bool },
    /// Someone else holds a lease that has not expired (as we have observed it).
    Wait,
}

/// The decision on the record read: ours is renewed; an empty holder or a record unchanged for
/// a whole lease duration (by our clock) is taken over; anything else is respected.
fn decide(spec: Option<&LeaseSpec>, me: &str, unchanged_for: Duration, timings: &Timings) -> Step {
    let holder = spec
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty());
    match holder {
        Some(holder) if holder == me => Step::Claim { new_term: false },
        Some(_) => {
            let duration = spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map_or(timings.lease_duration, Duration::from_secs);
            if unchanged_for >= duration {
                Step::Claim { new_term: true }
            } else {
                Step::Wait
            }
        }
        None => Step::Claim { new_term: true },
    }
}

/// One candidate's view of the Lease.
struct Elector {
    api: Api<Lease>,
    me: String,
    timings: Timings,
    /// The last record seen and when it was first seen (by our clock).
    observed: Option<(String, Instant)>,
}

impl Elector {
    /// One acquire-or-renew attempt: `Ok(true)` when we hold the lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, KubeError> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(LEASE_NAME).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.to_string()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.record(None, true, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(KubeError::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let seen_at = match &self.observed {
            Some((seen, at)) if *seen == version => *at,
            _ => Instant::now(),
        };
        self.observed = Some((version, seen_at));
        match decide(lease.spec.as_ref(), &self.me, seen_at.elapsed(), &self.timings) {
            Step::Wait => Ok(false),
            Step::Claim { new_term } => {
                lease.spec = Some(self.record(lease.spec.as_ref(), new_term, now));
                match self.api.replace(LEASE_NAME, &PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    // Someone else wrote first: re-read next time.
                    Err(KubeError::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    fn record(&self, old: Option<&LeaseSpec>, new_term: bool, now: Timestamp) -> LeaseSpec {
        let seconds = i32::try_from(self.timings.lease_duration.as_secs()).unwrap_or(15);
        let transitions = old.and_then(|s| s.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.me.clone()),
            lease_duration_seconds: Some(seconds),
            acquire_time: if new_term {
                Some(MicroTime(now))
            } else {
                old.and_then(|s| s.acquire_time.clone())
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if new_term && old.is_some() {
                transitions + 1
            } else {
                transitions
            }),
            ..LeaseSpec::default()
        }
    }

    /// Gives the lease up (on shutdown), so a standby takes over at once.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(LEASE_NAME).await else {
            return;
        };
        let ours = lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(self.me.as_str());
        if !ours {
            return;
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = Some(String::new());
            spec.lease_duration_seconds = Some(1);
        }
        if let Err(error) = self.api.replace(LEASE_NAME, &PostParams::default(), &lease).await {
            tracing::warn!(%error, "cannot release the leader Lease");
        }
    }
}

/// Competes for the Lease. The receiver says whether this replica leads: it turns `true` when
/// the lease is acquired and `false` — for good — when renewal failed for the renew deadline
/// or another holder appeared. Dropping every receiver releases the lease and ends the task.
pub async fn start(
    client: Client,
    namespace: &str,
    timings: Timings,
) -> anyhow::Result<(watch::Receiver<bool>, tokio::task::JoinHandle<()>)> {
    anyhow::ensure!(
        timings.renew_deadline < timings.lease_duration,
        "the renew deadline must be shorter than the lease duration"
    );
    let mut elector = Elector {
        api: Api::namespaced(client, namespace),
        me: identity(),
        timings,
        observed: None,
    };
    let (tx, rx) = watch::channel(false);
    let namespace = namespace.to_string();
    let task = tokio::spawn(async move {
        if acquire(&mut elector, &tx).await {
            tx.send_replace(true);
            tracing::info!(namespace, lease = LEASE_NAME, identity = %elector.me, "leading");
            hold(&mut elector, &tx).await;
        }
        if tx.is_closed() {
            elector.release().await;
        }
    });
    Ok((rx, task))
}

/// Retries every retry period until the lease is ours; `false` when every receiver is gone.
async fn acquire(elector: &mut Elector, tx: &watch::Sender<bool>) -> bool {
    loop {
        match attempt(elector, elector.timings.retry_period).await {
            Ok(true) => return true,
            Ok(false) => {}
            Err(error) => tracing::debug!(%error, "leader election attempt failed"),
        }
        tokio::select! {
            () = tx.closed() => return false,
            () = tokio::time::sleep(elector.timings.retry_period) => {}
        }
    }
}

/// Renews every retry period; returns when leadership ends (lost, or receivers gone).
async fn hold(elector: &mut Elector, tx: &watch::Sender<bool>) {
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(elector.timings.retry_period) => {}
        }
        let started = Instant::now();
        let left = elector.timings.renew_deadline.saturating_sub(renewed.elapsed());
        match attempt(elector, left).await {
            Ok(true) => renewed = started,
            Ok(false) => {
                tracing::error!("the leader Lease has another holder");
                tx.send_replace(false);
                return;
            }
            Err(error) => tracing::warn!(%error, "cannot renew the leader Lease"),
        }
        if renewed.elapsed() >= elector.timings.renew_deadline {
            tracing::error!(
                deadline_seconds = elector.timings.renew_deadline.as_secs(),
                "the leader Lease was not renewed within the renew deadline"
            );
            tx.send_replace(false);
            return;
        }
    }
}

/// One attempt bounded by `limit` (an unreachable API server must not outlast the deadline).
async fn attempt(elector: &mut Elector, limit: Duration) -> anyhow::Result<bool> {
    tokio::time::timeout(limit, elector.try_acquire_or_renew())
        .await
        .context("timed out")?
        .context("API request failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_from_env_then_file_else_error() {
        let dir = std::env::temp_dir().join(format!("lmcache-operator-ns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("namespace");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(operator_namespace(Some("ops".into()), &file).unwrap(), "ops");
        assert_eq!(operator_namespace(Some(" ".into()), &file).unwrap(), "from-file");
        assert_eq!(operator_namespace(None, &file).unwrap(), "from-file");
        let missing = dir.join("missing");
        let err = operator_namespace(None, &missing).unwrap_err().to_string();
        assert!(err.contains("POD_NAMESPACE"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn spec(holder: &str, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(seconds),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let t = Timings::default();
        let s = Duration::from_secs;
        let cases = [
            (None, s(0), Step::Claim { new_term: true }),
            (Some(spec("", 15)), s(0), Step::Claim { new_term: true }),
            (Some(spec("me", 15)), s(100), Step::Claim { new_term: false }),
            (Some(spec("other", 15)), s(14), Step::Wait),
            (Some(spec("other", 15)), s(15), Step::Claim { new_term: true }),
            // A released lease (duration 1 s) is taken after 1 s unchanged.
            (Some(spec("other", 1)), s(1), Step::Claim { new_term: true }),
        ];
        for (record, unchanged, want) in cases {
            assert_eq!(
                decide(record.as_ref(), "me", unchanged, &t),
                want,
                "{record:?} {unchanged:?}"
            );
        }
        assert!(t.renew_deadline < t.lease_duration);
    }
}
