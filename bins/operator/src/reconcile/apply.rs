//! Apply step: server-side apply of every child that is not already converged, then deletion of
//! unwanted children this custom resource controls (engine.md §2.3, §7.2). A child the API
//! server rejects does not stop the others (lifecycle.md §2).

use crate::children::{ChildKind, FIELD_MANAGER, controller_uid};
use crate::context::Context;
use crate::error::Error;
use crate::primary::LiveChildren;
use crate::reconcile::converged::is_converged;
use crate::reconcile::plan::Plan;
use crate::reconcile::status::rollout;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::DynamicObject;
use serde_json::Value;

/// What the apply step wrote, as `Kind namespace/name` strings.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Children that did not exist.
    pub created: Vec<String>,
    /// Existing children that were re-applied (spec change or drift).
    pub updated: Vec<String>,
    /// Unwanted children that were deleted.
    pub deleted: Vec<String>,
    /// Children the API server rejected.
    pub rejected: Vec<Rejected>,
    /// `RolloutStarted` messages: applying the DaemonSet changed its pod template.
    pub rollouts: Vec<String>,
}

/// A child the API server refused to apply: a 4xx that retrying the same body cannot fix
/// (`400 BadRequest`, `403 Forbidden` from RBAC or an admission policy, `422 Invalid`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Kind of the child.
    pub kind: ChildKind,
    /// `<Kind> <namespace>/<name>: <API message>`.
    pub message: String,
}

/// How the API server answered an apply.
enum Refusal {
    /// Rejected for good: report it and go on with the other children.
    Rejected(String),
    /// The namespace is being deleted: stop, nothing can be created there any more.
    NamespaceTerminating,
}

fn refusal(error: &kube::Error) -> Option<Refusal> {
    let kube::Error::Api(status) = error else {
        return None;
    };
    match status.code {
        403 if status.message.contains("because it is being terminated") => {
            Some(Refusal::NamespaceTerminating)
        }
        400 | 403 | 422 => Some(Refusal::Rejected(status.message.clone())),
        _ => None,
    }
}

/// Applies `plan`. `live` holds the current children (ours, from the ownership check) and is
/// updated with the apply responses so the status step sees fresh objects.
pub async fn apply_children(
    ctx: &Context,
    namespace: &str,
    owner_uid: &str,
    generation: i64,
    plan: &Plan,
    live: &mut LiveChildren,
) -> Result<Applied, Error> {
    let mut applied = Applied::default();
    // Every child that needs it is applied at once: a reconcile holds its worker for one
    // round trip, not one per child (they do not depend on each other; a pod that starts
    // before its ConfigMap exists waits for the volume).
    let stale: Vec<_> = plan
        .apply
        .iter()
        .filter(|child| {
            live.get(&(child.kind, child.name.clone()))
                .is_none_or(|current| !is_converged(&child.body, current, FIELD_MANAGER))
        })
        .collect();
    let responses = futures::future::join_all(stale.iter().map(|child| {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), namespace, &child.kind.api_resource());
        async move {
            api.patch(
                &child.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&child.body),
            )
            .await
        }
    }))
    .await;
    for (child, response) in stale.into_iter().zip(responses) {
        let key = (child.kind, child.name.clone());
        let label = format!("{} {namespace}/{}", child.kind, child.name);
        let response = match response {
            Ok(response) => response,
            Err(error) => match refusal(&error) {
                Some(Refusal::Rejected(message)) => {
                    applied.rejected.push(Rejected {
                        kind: child.kind,
                        message: format!("{label}: {message}"),
                    });
                    continue;
                }
                Some(Refusal::NamespaceTerminating) => return Err(Error::NamespaceTerminating),
                None => return Err(error.into()),
            },
        };
        let json = serde_json::to_value(&response)?;
        // Until the watch delivers this version, the next reconcile reads it from here, not
        // from a cache that may still lack the child (`crate::applied`).
        ctx.stores
            .applied
            .record(child.kind, namespace, &child.name, response);
        let response = json;
        match live.get(&key) {
            Some(before) => {
                if child.kind == ChildKind::DaemonSet
                    && let Some(message) = rollout::started_message(before, &response, generation)
                {
                    applied.rollouts.push(message);
                }
                applied.updated.push(label);
            }
            None => applied.created.push(label),
        }
        live.insert(key, response);
    }
    for (kind, name) in &plan.delete_if_owned {
        let Some(found) = ctx.stores.child(*kind, namespace, name) else {
            continue;
        };
        if controller_uid(&found) != Some(owner_uid) {
            continue;
        }
        let uid = found
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), namespace, &kind.api_resource());
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid,
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => applied.deleted.push(format!("{kind} {namespace}/{name}")),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(applied)
}
