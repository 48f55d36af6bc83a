//! How the watch caches hold children (DaemonSets, Deployments, Services, ConfigMaps,
//! ServiceMonitors): the identity the watch hooks read, and the whole trimmed object as
//! deflated compact JSON, inflated and parsed again only when a reconcile checks that child.
//!
//! A decoded child is a tree of small allocations: at 1000 engines the decoded DaemonSets,
//! Services and ConfigMaps were 37 MiB of a 46 MiB live heap (heaptrack). As JSON text a
//! DaemonSet is one allocation of ≈ 4.5 KiB (8.6 MiB for the 4000 children of 1000 engines);
//! deflated at level 1 it is ≈ 1.6 KiB (a Service 0.7, a ConfigMap 0.6 KiB), and inflating it
//! again costs microseconds per reconcile. Every reader goes through [`Packed::to_json`] (the
//! convergence check and status read JSON anyway), so nothing else changes.

use crate::slim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::marker::PhantomData;

/// The fastest level: the JSON of children is repetitive enough that higher levels gain
/// little (a DaemonSet: 1638 bytes at level 1, 1500 at level 6).
const DEFLATE_LEVEL: u8 = 1;

/// A cached child of kind `K`.
#[derive(Debug)]
pub struct Packed<K> {
    /// Name, namespace, uid, resourceVersion (the watcher resumes from it) and owner
    /// references (which custom resource an event concerns).
    metadata: ObjectMeta,
    /// The object after [`slim::child`], as compact JSON, deflated.
    deflated: Box<[u8]>,
    kind: PhantomData<fn() -> K>,
}

// Manual: a derive would require `K: Clone`, which the text does not need.
impl<K> Clone for Packed<K> {
    fn clone(&self) -> Self {
        Self {
            metadata: self.metadata.clone(),
            deflated: self.deflated.clone(),
            kind: PhantomData,
        }
    }
}

impl<K: Resource + Serialize> Packed<K> {
    /// Trims `obj` ([`slim::child`]) and packs it.
    pub fn pack(mut obj: K) -> Result<Self, serde_json::Error> {
        slim::child(&mut obj);
        let json = serde_json::to_vec(&obj)?;
        let deflated = miniz_oxide::deflate::compress_to_vec(&json, DEFLATE_LEVEL).into_boxed_slice();
        let meta = obj.meta_mut();
        let metadata = ObjectMeta {
            name: meta.name.take(),
            namespace: meta.namespace.take(),
            uid: meta.uid.take(),
            resource_version: meta.resource_version.take(),
            owner_references: meta.owner_references.take(),
            ..ObjectMeta::default()
        };
        Ok(Self {
            metadata,
            deflated,
            kind: PhantomData,
        })
    }
}

impl<K> Packed<K> {
    /// The cached object as JSON (`None` only if it no longer inflates or parses, which
    /// packing rules out).
    pub fn to_json(&self) -> Option<Value> {
        let json = miniz_oxide::inflate::decompress_to_vec(&self.deflated).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// Decodes a `K` and packs it, so a watch of `Packed<K>` never keeps the decoded object.
impl<'de, K: Resource + Serialize + DeserializeOwned> Deserialize<'de> for Packed<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::pack(K::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

/// `K`'s resource (API path, kind), with the packed identity as its metadata.
impl<K: Resource> Resource for Packed<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn api_version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::api_version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSet;
    use kube::core::{ApiResource, DynamicObject};
    use serde_json::json;

    fn daemon_set() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {
                "name": "cache", "namespace": "team-a", "uid": "u1", "resourceVersion": "7",
                "labels": {"app.kubernetes.io/managed-by": "lmcache-operator"},
                "ownerReferences": [{"apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": "LMCacheEngine",
                                     "name": "cache", "uid": "e1", "controller": true}],
                "managedFields": [
                    {"manager": "lmcache-operator", "operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {}}}},
                    {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
                     "fieldsV1": {"f:status": {}}}
                ]
            },
            "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
            "status": {"currentNumberScheduled": 0, "desiredNumberScheduled": 0, "numberMisscheduled": 0,
                       "numberReady": 2}
        })
    }

    #[test]
    fn a_packed_child_reads_back_as_the_trimmed_object_and_keeps_its_identity() {
        let packed: Packed<DaemonSet> = serde_json::from_value(daemon_set()).unwrap();
        let mut expected = daemon_set();
        expected["metadata"]["managedFields"]
            .as_array_mut()
            .unwrap()
            .truncate(1);
        assert_eq!(packed.to_json().unwrap(), expected);
        let meta = packed.meta();
        assert_eq!(meta.name.as_deref(), Some("cache"));
        assert_eq!(meta.namespace.as_deref(), Some("team-a"));
        assert_eq!(meta.resource_version.as_deref(), Some("7"));
        assert_eq!(meta.owner_references.as_ref().unwrap()[0].name, "cache");
        assert!(meta.labels.is_none() && meta.managed_fields.is_none());
    }

    #[test]
    fn a_packed_dynamic_object_keeps_its_type() {
        let mut sm = daemon_set();
        sm["apiVersion"] = json!("monitoring.coreos.com/v1");
        sm["kind"] = json!("ServiceMonitor");
        let packed: Packed<DynamicObject> = serde_json::from_value(sm).unwrap();
        let json = packed.to_json().unwrap();
        assert_eq!(json["kind"], "ServiceMonitor");
        assert_eq!(json["spec"]["template"]["spec"]["containers"][0]["name"], "c");
        let resource = ApiResource {
            group: "monitoring.coreos.com".into(),
            version: "v1".into(),
            api_version: "monitoring.coreos.com/v1".into(),
            kind: "ServiceMonitor".into(),
            plural: "servicemonitors".into(),
        };
        assert_eq!(
            <Packed<DynamicObject> as Resource>::url_path(&resource, Some("n")),
            "/apis/monitoring.coreos.com/v1/namespaces/n/servicemonitors"
        );
    }
}
