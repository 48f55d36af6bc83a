//! Ownership check (engine.md §8 step 5, MT-4): before anything is written, every child name the
//! custom resource needs must be free or controlled by this custom resource's UID.

use crate::children::controller_uid;
use crate::context::Context;
use crate::error::Error;
use crate::keys::Kind;
use crate::primary::LiveChildren;
use crate::reconcile::plan::Plan;
use kube::api::Api;
use kube::core::DynamicObject;

/// The live children (by kind and name) when every name is free or ours; otherwise one
/// `NameConflict` line per foreign object.
pub async fn check_ownership(
    ctx: &Context,
    namespace: &str,
    owner_uid: &str,
    owner_kind: Kind,
    plan: &Plan,
) -> Result<Result<LiveChildren, Vec<String>>, Error> {
    let mut live = LiveChildren::new();
    let mut conflicts = Vec::new();
    for child in &plan.apply {
        // The caches only hold labelled objects (MT-11); a user's object of the same name has
        // no label, so a cache miss is confirmed with a GET (a read, never a write).
        let found = match ctx.stores.child(child.kind, namespace, &child.name) {
            Some(found) => Some(found),
            None => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(ctx.client.clone(), namespace, &child.kind.api_resource());
                match api.get_opt(&child.name).await? {
                    Some(obj) => Some(serde_json::to_value(&obj)?),
                    None => None,
                }
            }
        };
        let Some(found) = found else { continue };
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
