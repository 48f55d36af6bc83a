//! The reconcile pipeline, one module per step:
//! [`dereference`] → validate → resolve the coordinator → [`plan`] (render) → [`ownership`] →
//! [`apply`] → [`restart`] (engines asking for client restarts) → [`status`]. Only
//! dereference, ownership, apply, restart and status talk to the API.

pub mod apply;
pub mod converged;
pub mod dereference;
pub mod ownership;
pub mod plan;
pub mod restart;
pub mod status;

use crate::context::Context;
use crate::error::Error;
use crate::keys::{ObjectKey, Uid};
use crate::metrics::ReconcileResult;
use crate::primary::{Primary, resolve_coordinator};
use crate::state::StatusWrite;
use dereference::Dereferenced;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::core::{ApiResource, DeserializeGuard};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use lmcache_api::constants::reasons;
use lmcache_manifest_renderer::RenderContext;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Periodic resync of every object.
pub const RESYNC: Duration = Duration::from_secs(600);
/// Retry delay while a child name is taken.
pub const CONFLICT_RETRY: Duration = Duration::from_secs(30);

/// How a reconcile ended (errors aside).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Children converged, status current.
    Converged,
    /// Validation failed or the coordinator is missing: wait for a change.
    Invalid,
    /// A child name is taken: retry in 30 s.
    Conflict,
    /// The object is gone.
    Gone,
    /// The object or its namespace is being deleted: nothing is written (lifecycle.md §1).
    Deleting,
    /// Children converged; a changed status waits to settle: reconcile again after this.
    StatusPending(Duration),
}

impl Outcome {
    /// The controller action.
    pub fn action(self) -> Action {
        match self {
            Self::Converged => Action::requeue(RESYNC),
            Self::Conflict => Action::requeue(CONFLICT_RETRY),
            Self::Invalid | Self::Gone | Self::Deleting => Action::await_change(),
            Self::StatusPending(after) => Action::requeue(after),
        }
    }

    fn metric(self) -> ReconcileResult {
        match self {
            Self::Converged | Self::Gone | Self::Deleting | Self::StatusPending(_) => {
                ReconcileResult::Success
            }
            Self::Invalid => ReconcileResult::Invalid,
            Self::Conflict => ReconcileResult::Conflict,
        }
    }
}

/// The reconciler passed to `Controller::run`.
pub async fn reconcile<K: Primary>(
    guard: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let meta = guard.meta();
    let span = tracing::info_span!(
        "reconcile",
        kind = %K::KIND,
        namespace = meta.namespace.as_deref().unwrap_or_default(),
        name = meta.name.as_deref().unwrap_or_default(),
    );
    let outcome = tracing::Instrument::instrument(run::<K>(&guard, &ctx), span.clone())
        .await
        .or_else(|error| match error {
            // Creating in a terminating namespace fails for good: no retry, no status.
            Error::NamespaceTerminating => Ok(Outcome::Deleting),
            error => Err(error),
        });
    let _entered = span.enter();
    if let (Some(namespace), Some(name)) = (&meta.namespace, &meta.name) {
        ctx.resyncs
            .done(&ObjectKey::new(K::KIND, namespace.clone(), name.clone()));
    }
    let result = outcome.as_ref().map_or(ReconcileResult::Error, |o| o.metric());
    ctx.metrics
        .reconciled(K::KIND, result, started.elapsed().as_secs_f64());
    match outcome {
        Ok(outcome) => {
            if let Some(uid) = &meta.uid {
                ctx.backoff.reset(&Uid(uid.clone()));
            }
            tracing::debug!(?outcome, "reconciled");
            Ok(outcome.action())
        }
        Err(error) => Err(error),
    }
}

/// The error policy passed to `Controller::run`: per-object exponential backoff.
pub fn error_policy<K: Primary>(guard: Arc<DeserializeGuard<K>>, error: &Error, ctx: Arc<Context>) -> Action {
    let meta = guard.meta();
    let delay = ctx.backoff.next_delay(&Uid(meta.uid.clone().unwrap_or_default()));
    tracing::warn!(
        kind = %K::KIND,
        namespace = meta.namespace.as_deref().unwrap_or_default(),
        name = meta.name.as_deref().unwrap_or_default(),
        error = %error,
        error_kind = error.label(),
        retry_in_seconds = delay.as_secs(),
        "reconcile failed"
    );
    Action::requeue(delay)
}

struct Target<'a> {
    namespace: &'a str,
    name: &'a str,
    generation: i64,
    regarding: ObjectReference,
}

async fn run<K: Primary>(guard: &DeserializeGuard<K>, ctx: &Context) -> Result<Outcome, Error> {
    let meta = guard.meta();
    let target = Target {
        namespace: meta
            .namespace
            .as_deref()
            .ok_or(Error::MissingField("metadata.namespace"))?,
        name: meta.name.as_deref().ok_or(Error::MissingField("metadata.name"))?,
        generation: meta.generation.unwrap_or_default(),
        regarding: guard.object_ref(&()),
    };
    let uid = meta.uid.as_deref().ok_or(Error::MissingField("metadata.uid"))?;
    // An object being deleted (foreground cascade, orphan, someone's finalizer) gets no new or
    // updated children and no status: re-creating a child the garbage collector just deleted
    // would keep a foreground deletion waiting forever.
    if meta.deletion_timestamp.is_some() {
        tracing::debug!("being deleted; nothing to do");
        return Ok(Outcome::Deleting);
    }

    // 1. Read.
    let obj = match dereference::dereference(&ctx.client, guard).await? {
        Dereferenced::Usable(obj) => obj,
        Dereferenced::Gone => return Ok(Outcome::Gone),
        Dereferenced::Undecodable { message, old_status } => {
            fail::<K>(
                ctx,
                &target,
                old_status.as_ref(),
                reasons::VALIDATION_FAILED,
                &message,
            )
            .await?;
            return Ok(Outcome::Invalid);
        }
    };

    // 2. Validate.
    if let Err(message) = obj.validate() {
        fail::<K>(ctx, &target, obj.status(), reasons::VALIDATION_FAILED, &message).await?;
        return Ok(Outcome::Invalid);
    }
    for warning in obj.warnings() {
        let event_type = if warning.severe {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.publish(
            &target.regarding,
            target.generation,
            event_type,
            warning.reason,
            &warning.message,
        );
    }

    // 3. Resolve the coordinator in the object's own namespace (MT-5).
    let coordinator_url = match obj.coordinator_ref() {
        None => None,
        Some(coordinator) => match resolve_coordinator(&ctx.stores, target.namespace, coordinator)? {
            Some(url) => Some(url),
            None => {
                let message = format!(
                    "spec.coordinator.ref.name: LMCacheCoordinator \"{coordinator}\" not found in namespace \"{}\"",
                    target.namespace
                );
                fail::<K>(
                    ctx,
                    &target,
                    obj.status(),
                    reasons::COORDINATOR_NOT_FOUND,
                    &message,
                )
                .await?;
                return Ok(Outcome::Invalid);
            }
        },
    };

    // 4. Render.
    let render_ctx = RenderContext {
        cluster_domain: &ctx.cluster_domain,
        coordinator_url: coordinator_url.as_deref(),
    };
    let plan = obj.plan(&render_ctx, ctx.service_monitor_api.is_available())?;

    // 5. Ownership.
    let mut live = match ownership::check_ownership(ctx, target.namespace, uid, K::KIND, &plan).await? {
        Ok(live) => live,
        Err(conflicts) => {
            let message = conflicts.join("; ");
            fail::<K>(ctx, &target, obj.status(), reasons::NAME_CONFLICT, &message).await?;
            return Ok(Outcome::Conflict);
        }
    };

    // 6. Apply.
    if plan.service_monitor_unavailable {
        let message = "ServiceMonitor API monitoring.coreos.com/v1 is not available; skipping";
        tracing::info!("{message}");
        ctx.publish(
            &target.regarding,
            target.generation,
            EventType::Warning,
            reasons::SERVICE_MONITOR_UNAVAILABLE,
            message,
        );
    }
    let applied =
        apply::apply_children(ctx, target.namespace, uid, target.generation, &plan, &mut live).await?;
    // The apply step's Events go out in the background (see `Context::publish`).
    let publish = |type_, reason: &str, message: &str| {
        ctx.publish(&target.regarding, target.generation, type_, reason, message);
    };
    for (reason, list) in [
        ("Created", &applied.created),
        ("Updated", &applied.updated),
        ("Deleted", &applied.deleted),
    ] {
        if !list.is_empty() {
            tracing::info!(children = ?list, "{reason} children");
            publish(
                EventType::Normal,
                reason,
                &format!("{reason} {}", list.join(", ")),
            );
        }
    }
    for message in &applied.rollouts {
        tracing::info!(%message, "rollout started");
        publish(EventType::Normal, reasons::ROLLOUT_STARTED, message);
    }
    let failure = rejection_report(&applied.rejected);
    for rejected in &applied.rejected {
        tracing::warn!(message = %rejected.message, "child rejected by the API server");
        publish(EventType::Warning, reasons::APPLY_FAILED, &rejected.message);
    }

    // 7. Client restarts, for engines asking for them (rollouts.md §4).
    let uid = Uid(uid.to_string());
    let restart_after = if obj.restart_clients() {
        let engine = restart::Engine {
            kind: K::KIND,
            namespace: target.namespace,
            name: target.name,
            uid: &uid,
            generation: target.generation,
            regarding: &target.regarding,
        };
        let pods = obj.engine_pods(&live, &ctx.stores);
        restart::restart_clients(ctx, &engine, &pods, obj.stored_endpoints()).await?
    } else {
        ctx.restarts.forget(&uid);
        None
    };

    // 8. Status (also after a rejection: the user must see it), coalesced while it moves.
    let new_status = obj.ready_status(
        &live,
        &ctx.stores,
        failure.as_ref(),
        target.generation,
        &status::now(),
    );
    let stored = obj.status();
    let completed = K::rollout_completed(stored, &new_status);
    if stored == Some(&new_status) {
        ctx.statuses.forget(&uid);
    } else {
        let urgent = failure.is_some() || status::is_urgent(stored, &new_status);
        let write = ctx
            .statuses
            .decide(&uid, serde_json::to_value(&new_status)?, urgent, Instant::now());
        if let StatusWrite::After(after) = write {
            let after = restart_after.map_or(after, |r| r.min(after));
            return Ok(Outcome::StatusPending(after));
        }
    }
    // Writes nothing when the stored status is already this one.
    let resource = ApiResource::erase::<K>(&());
    let written = status::write_status(
        &ctx.client,
        &resource,
        target.namespace,
        target.name,
        obj.status(),
        &new_status,
    )
    .await?;
    // Announced with the write that shows it (a coalesced status is announced when written).
    if written && let Some(message) = completed {
        tracing::info!(%message, "rollout complete");
        ctx.publish(
            &target.regarding,
            target.generation,
            EventType::Normal,
            reasons::ROLLOUT_COMPLETE,
            &message,
        );
    }
    match (failure, restart_after) {
        // Retried with the per-object backoff: a policy or a quota may change.
        (Some(failure), _) => Err(Error::Rejected(failure.message)),
        // A refused eviction, retried with its own backoff.
        (None, Some(after)) => Ok(Outcome::StatusPending(after)),
        (None, None) => Ok(Outcome::Converged),
    }
}

/// The status' view of the rejected children: one message, and whether the phase fails (any
/// child but a ServiceMonitor).
fn rejection_report(rejected: &[apply::Rejected]) -> Option<status::ApplyFailure> {
    if rejected.is_empty() {
        return None;
    }
    let message = rejected
        .iter()
        .map(|r| r.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    Some(status::ApplyFailure {
        message,
        affects_phase: rejected
            .iter()
            .any(|r| r.kind != crate::children::ChildKind::ServiceMonitor),
    })
}

/// Records an unusable spec: `ConfigValid=False` with `reason`, phase `Failed`, a Warning Event;
/// no child is touched.
async fn fail<K: Primary>(
    ctx: &Context,
    target: &Target<'_>,
    old: Option<&K::Status>,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    tracing::info!(reason, message, "spec not usable");
    ctx.publish(
        &target.regarding,
        target.generation,
        EventType::Warning,
        reason,
        message,
    );
    let new_status: K::Status =
        status::failed_status(old, reason, message, target.generation, &status::now());
    status::write_status(
        &ctx.client,
        &ApiResource::erase::<K>(&()),
        target.namespace,
        target.name,
        old,
        &new_status,
    )
    .await?;
    Ok(())
}
