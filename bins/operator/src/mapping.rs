//! Which custom resources an event on another object concerns (MT-6): a child maps to its
//! controller owner in the child's namespace; an engine pod maps to both engine kinds under the
//! pod's namespace and `app.kubernetes.io/instance`; a coordinator maps to the engines of its
//! namespace that reference it.

use crate::cached_pod::CachedPod;
use crate::coordinator_index::CoordinatorIndex;
use crate::keys::{CoordinatorKey, Kind, ObjectKey};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use lmcache_api::constants::{GROUP, labels};

/// The custom resource controlling a child, through its controller owner reference.
pub fn owner_of(meta: &ObjectMeta) -> Option<ObjectKey> {
    let namespace = meta.namespace.as_deref()?;
    let owner = meta
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))?;
    let group = owner.api_version.split_once('/').map(|(g, _)| g)?;
    if group != GROUP {
        return None;
    }
    Some(ObjectKey::new(
        Kind::from_kind_name(&owner.kind)?,
        namespace,
        owner.name.clone(),
    ))
}

/// The engines an engine pod may belong to. Coordinator pods map to nothing (their status
/// comes from the Deployment).
pub fn engines_of_pod(pod: &CachedPod) -> Vec<ObjectKey> {
    let Some(namespace) = pod.namespace() else {
        return Vec::new();
    };
    if pod.label(labels::NAME) != Some(labels::ENGINE_NAME_VALUE) {
        return Vec::new();
    }
    let Some(instance) = pod.label(labels::INSTANCE) else {
        return Vec::new();
    };
    [Kind::Engine, Kind::BlendEngine]
        .into_iter()
        .map(|kind| ObjectKey::new(kind, namespace, instance))
        .collect()
}

/// The engines that reference the coordinator `meta` describes.
pub fn engines_of_coordinator(index: &CoordinatorIndex, meta: &ObjectMeta) -> Vec<ObjectKey> {
    match (meta.namespace.as_ref(), meta.name.as_ref()) {
        (Some(namespace), Some(name)) => index.engines_for(&CoordinatorKey {
            namespace: namespace.clone(),
            name: name.clone(),
        }),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn meta(ns: &str, owners: Vec<OwnerReference>) -> ObjectMeta {
        ObjectMeta {
            namespace: Some(ns.into()),
            name: Some("child".into()),
            owner_references: Some(owners),
            ..Default::default()
        }
    }

    fn owner(api_version: &str, kind: &str, name: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: "u".into(),
            controller: Some(controller),
            block_owner_deletion: None,
        }
    }

    #[test]
    fn children_map_to_their_controller_in_their_namespace() {
        let m = meta(
            "team-b",
            vec![
                owner("lmcache.lmcache.ai/v1alpha1", "LMCacheEngine", "other", false),
                owner("lmcache.lmcache.ai/v1alpha1", "CacheBlendEngine", "cache", true),
            ],
        );
        assert_eq!(
            owner_of(&m),
            Some(ObjectKey::new(Kind::BlendEngine, "team-b", "cache"))
        );
        let m = meta("a", vec![owner("apps/v1", "DaemonSet", "cache", true)]);
        assert_eq!(owner_of(&m), None);
        let m = meta("a", vec![owner("example.com/v1", "LMCacheEngine", "cache", true)]);
        assert_eq!(owner_of(&m), None);
        let m = meta(
            "a",
            vec![owner("lmcache.lmcache.ai/v1alpha1", "LMCacheEngine", "x", false)],
        );
        assert_eq!(owner_of(&m), None);
    }

    #[test]
    fn pods_map_to_both_engine_kinds() {
        let pod = |name: &str| -> CachedPod {
            serde_json::from_value(
                serde_json::json!({"metadata": {"name": "p", "namespace": "team-a",
                "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": "x"}}}),
            )
            .unwrap()
        };
        assert_eq!(
            engines_of_pod(&pod("lmcache")),
            [
                ObjectKey::new(Kind::Engine, "team-a", "x"),
                ObjectKey::new(Kind::BlendEngine, "team-a", "x")
            ]
        );
        assert!(engines_of_pod(&pod("lmcache-coordinator")).is_empty());
    }

    #[test]
    fn coordinators_map_through_the_index() {
        let index = CoordinatorIndex::default();
        let engine = ObjectKey::new(Kind::Engine, "team-a", "cache");
        index.set(&engine, Some("coord"));
        let mut m = meta("team-a", vec![]);
        m.name = Some("coord".into());
        assert_eq!(engines_of_coordinator(&index, &m), [engine]);
        m.namespace = Some("team-b".into());
        assert!(engines_of_coordinator(&index, &m).is_empty());
    }
}
