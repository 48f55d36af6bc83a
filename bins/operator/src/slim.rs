//! What the watch caches keep of custom resources and children: not `managedFields` (but the
//! operator's own entry of a child, which the convergence check walks) and not
//! `last-applied-configuration`, so memory follows the fleet's size, not the size of
//! `managedFields` (1000 engines once took 224 MiB, two thirds of it `managedFields`). Children
//! are then packed as text (`packed`); pods are cut down to a `CachedPod`.

use crate::children::FIELD_MANAGER;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

/// `kubectl apply`'s copy of the whole object, never read here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A custom resource: its identity, generation, timestamps and deletion state — no labels,
/// annotations, owners, finalizers or `managedFields` (nothing renders or checks them; a
/// reconcile that must see the whole object reads it from the API server).
pub fn primary<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        resource_version: meta.resource_version.take(),
        generation: meta.generation,
        creation_timestamp: meta.creation_timestamp.take(),
        deletion_timestamp: meta.deletion_timestamp.take(),
        ..ObjectMeta::default()
    };
}

/// A child: only the operator's own `managedFields` entry (the convergence check walks it) and
/// no `last-applied-configuration`.
pub fn child<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    if let Some(fields) = meta.managed_fields.as_mut() {
        fields.retain(|entry| {
            entry.manager.as_deref() == Some(FIELD_MANAGER)
                && entry.operation.as_deref() == Some("Apply")
                && entry.subresource.as_deref().is_none_or(str::is_empty)
        });
    }
    drop_last_applied(meta);
}

fn drop_last_applied(meta: &mut ObjectMeta) {
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSet;
    use serde_json::json;

    #[test]
    fn children_keep_only_our_managed_fields_entry() {
        let mut ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {
                "name": "x",
                "annotations": {LAST_APPLIED: "{...}", "keep": "1"},
                "managedFields": [
                    {"manager": "lmcache-operator", "operation": "Apply", "fieldsV1": {"f:spec": {}}},
                    {"manager": "lmcache-operator", "operation": "Apply", "subresource": "status"},
                    {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status"},
                    {"manager": "kubectl", "operation": "Update"}
                ]
            }
        }))
        .unwrap();
        child(&mut ds);
        let v = serde_json::to_value(&ds).unwrap();
        assert_eq!(v["metadata"]["managedFields"].as_array().unwrap().len(), 1);
        assert_eq!(
            v["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:spec": {}})
        );
        assert_eq!(v["metadata"]["annotations"], json!({"keep": "1"}));
    }
}
