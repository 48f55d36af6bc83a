//! Small builders shared by the engine and coordinator workloads and Services, and the one
//! place the pod pass-through fields ([`PodConfig`]) reach the rendered pod template.

use crate::env;
use crate::labels::{Component, with_user_labels};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, LocalObjectReference, PodSpec, ServicePort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use lmcache_api::v1alpha1::PodConfig;
use std::collections::{BTreeMap, BTreeSet};

/// The pod template's metadata: the labels of `component` with the user's `podLabels` (which
/// cannot change the selector labels) and the user's `podAnnotations`.
pub(crate) fn template_metadata(component: Component, instance: &str, pod: &PodConfig) -> ObjectMeta {
    ObjectMeta {
        labels: Some(with_user_labels(component, instance, pod.pod_labels.as_ref())),
        annotations: cloned_map(pod.pod_annotations.as_ref()),
        ..Default::default()
    }
}

/// A pod spec holding the user's pod-level fields (ServiceAccount and whether its token is
/// mounted, priority class, affinity, tolerations, pull secrets, volumes); the caller adds its
/// containers and its own fields with struct update syntax.
pub(crate) fn pod_spec(pod: &PodConfig) -> PodSpec {
    PodSpec {
        service_account_name: pod.service_account_name.clone(),
        automount_service_account_token: automount_token(pod.service_account_name.as_deref()),
        priority_class_name: pod.priority_class_name.clone(),
        affinity: pod.affinity.clone(),
        tolerations: cloned_list(pod.tolerations.as_ref()),
        image_pull_secrets: pull_secrets(pod.image_pull_secrets.as_deref()),
        volumes: cloned_list(pod.volumes.as_ref()),
        ..Default::default()
    }
}

/// A container holding the user's container-level fields: `env` merged over the operator's
/// `base` entries, and the volume mounts. `resourceOverrides` is not here: an engine computes
/// its resources from it, a coordinator uses it verbatim.
pub(crate) fn container(pod: &PodConfig, base_env: Vec<EnvVar>) -> Container {
    Container {
        env: Some(env::merge(base_env, pod.env.as_deref())),
        volume_mounts: cloned_list(pod.volume_mounts.as_ref()),
        ..Default::default()
    }
}

/// `imagePullSecrets` de-duplicated by name keeping the first occurrence, empty names dropped;
/// `None` when nothing is left.
pub(crate) fn pull_secrets(secrets: Option<&[LocalObjectReference]>) -> Option<Vec<LocalObjectReference>> {
    let mut seen = BTreeSet::new();
    let out: Vec<LocalObjectReference> = secrets
        .unwrap_or_default()
        .iter()
        .filter(|s| !s.name.is_empty() && seen.insert(s.name.as_str()))
        .cloned()
        .collect();
    non_empty(out)
}

/// `Some(list)` unless empty: an empty list would only make server-side apply own a field the
/// API server stores as absent.
pub(crate) fn non_empty<T>(list: Vec<T>) -> Option<Vec<T>> {
    (!list.is_empty()).then_some(list)
}

/// A cloned list, omitted when absent or empty.
pub(crate) fn cloned_list<T: Clone>(list: Option<&Vec<T>>) -> Option<Vec<T>> {
    list.filter(|l| !l.is_empty()).cloned()
}

/// A cloned map, omitted when absent or empty.
pub(crate) fn cloned_map(map: Option<&BTreeMap<String, String>>) -> Option<BTreeMap<String, String>> {
    map.filter(|m| !m.is_empty()).cloned()
}

/// A named TCP container port.
pub(crate) fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_string()),
        container_port: port,
        protocol: Some("TCP".to_string()),
        ..Default::default()
    }
}

/// A named TCP Service port whose target is a named container port.
pub(crate) fn named_target_port(name: &str, port: i32, target: &str) -> ServicePort {
    ServicePort {
        target_port: Some(IntOrString::String(target.to_string())),
        ..service_port(name, port)
    }
}

/// A named TCP Service port whose target is the same port number.
pub(crate) fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_string()),
        ..Default::default()
    }
}

/// `automountServiceAccountToken`: `false` unless the user names a ServiceAccount. The LMCache
/// processes never call the Kubernetes API, so by default they carry no token (lifecycle.md §6);
/// a user-chosen ServiceAccount keeps the cluster's default (its own setting decides).
pub(crate) fn automount_token(service_account_name: Option<&str>) -> Option<bool> {
    match service_account_name.map(str::trim) {
        Some(name) if !name.is_empty() => None,
        _ => Some(false),
    }
}
