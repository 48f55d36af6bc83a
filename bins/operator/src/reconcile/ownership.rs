//! Ownership check (engine.md §8 step 5, MT-4): before anything is written, every child name the
//! custom resource needs must be free or controlled by this custom resource's UID.

use crate::children::controller_uid;
use crate::context::Context;
use crate::error::Error;
use crate::keys::Kind;
use crate::primary::LiveChildren;
use crate::reconcile::plan::Plan;
use kube::api::{Api, GetParams};
use kube::core::DynamicObject;
use serde_json::Value;

/// The live children (by kind and name) when every name is free or ours; otherwise one
/// `NameConflict` line per foreign object.
pub async fn check_ownership(
    ctx: &Context,
    namespace: &str,
    owner_uid: &str,
    owner_kind: Kind,
    plan: &Plan,
) -> Result<Result<LiveChildren, Vec<String>>, Error> {
    // The caches only hold labelled objects (MT-11); a user's object of the same name has no
    // label, so a cache miss is confirmed with a GET (a read, never a write) — all of them at
    // once, metadata only, served from the API server's watch cache (`resourceVersion=0`: no
    // etcd read). That answer may lag by the watch-cache delay, as any answer lags by a round
    // trip: the check protects objects that exist, it cannot order a concurrent create.
    let cached: Vec<Option<Value>> = plan
        .apply
        .iter()
        .map(|child| ctx.stores.child(child.kind, namespace, &child.name))
        .collect();
    let confirmed = futures::future::try_join_all(plan.apply.iter().zip(&cached).map(|(child, hit)| {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), namespace, &child.kind.api_resource());
        async move {
            if hit.is_some() {
                return Ok(None);
            }
            match api.get_metadata_opt_with(&child.name, &GetParams::any()).await? {
                Some(meta) => Ok::<_, Error>(Some(serde_json::to_value(&meta)?)),
                None => Ok(None),
            }
        }
    }))
    .await?;
    let mut live = LiveChildren::new();
    let mut conflicts = Vec::new();
    for ((child, hit), got) in plan.apply.iter().zip(cached).zip(confirmed) {
        // A child found only by the GET is ours without our labels (someone removed them):
        // its metadata is never "converged", so it is re-applied.
        let Some(found) = hit.or(got) else { continue };
        if controller_uid(&found) == Some(owner_uid) {
            live.insert((child.kind, child.name.clone()), found);
        } else {
            conflicts.push(format!(
                "{} {namespace}/{} already exists and is not controlled by this {owner_kind}",
                child.kind, child.name
            ));
        }
    }
    Ok(if conflicts.is_empty() {
        Ok(live)
    } else {
        Err(conflicts)
    })
}
