//! Evicting a pod: the only way the operator removes a pod (client restarts, repairs of missed
//! injections). The Eviction API applies the pod's PodDisruptionBudgets; the request goes
//! through the client that does not retry a 429 itself, so a refusal comes back at once for
//! the caller to report and retry on its own schedule.

use crate::context::Context;
use crate::error::Error;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, EvictParams, Preconditions};

/// What evicting one pod did.
#[derive(Debug, PartialEq, Eq)]
pub enum Evicted {
    /// Accepted (or the pod was already gone).
    Done,
    /// Refused with 429 (a PodDisruptionBudget) or 403 (not allowed): the server's message.
    Refused(String),
}

/// Evicts `namespace/name` if it is still the pod with `uid`.
pub async fn evict(ctx: &Context, namespace: &str, name: &str, uid: &str) -> Result<Evicted, Error> {
    let api: Api<Pod> = Api::namespaced(ctx.eviction_client.clone(), namespace);
    // The precondition makes sure the pod evicted is the one that was judged, not a namesake
    // created since (a StatefulSet's pod keeps its name).
    let mut params = EvictParams::default();
    params.delete_options.get_or_insert_default().preconditions = Some(Preconditions {
        uid: Some(uid.to_string()),
        resource_version: None,
    });
    match api.evict(name, &params).await {
        Ok(_) => Ok(Evicted::Done),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Evicted::Done),
        // A uid precondition that no longer holds: the judged pod is gone.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Evicted::Done),
        // 429: a PodDisruptionBudget allows no disruption now. 403: RBAC without
        // `pods/eviction` (or an admission policy); reported the same way, not retried faster.
        Err(kube::Error::Api(status)) if status.code == 429 || status.code == 403 => {
            Ok(Evicted::Refused(status.message))
        }
        Err(error) => Err(error.into()),
    }
}
