//! Staging a Python payload into the pod (cacheblend.md §7 I2–I6, connection-webhook.md §4 L4),
//! the same for both webhooks apart from the names.

use crate::webhook::Webhook;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, LocalObjectReference, PodSpec, ResourceRequirements, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// Requests and limits of the stage init container: small and explicit, so pods in namespaces
/// whose ResourceQuota or LimitRange demands requests are still admitted (a copy needs little).
pub fn stage_resources() -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| -> BTreeMap<String, Quantity> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect()
    };
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", "10m"), ("memory", "32Mi")])),
        limits: Some(quantities(&[("memory", "256Mi")])),
        ..ResourceRequirements::default()
    }
}

/// Adds the payload volume, its stage init container (`image`, `pull_policy`), the read-only
/// mount on container `target`, the `PYTHONPATH` entry and `pull_secrets`. Each step is skipped
/// when already present, so applying it twice changes nothing.
pub(crate) fn stage_payload(
    spec: &mut PodSpec,
    target: usize,
    webhook: Webhook,
    (image, pull_policy): (String, &str),
    pull_secrets: &[LocalObjectReference],
) {
    let (volume, path) = webhook.payload_volume();
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if !volumes.iter().any(|v| v.name == volume) {
        volumes.push(Volume {
            name: volume.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
    }
    let init = spec.init_containers.get_or_insert_with(Vec::new);
    if !init.iter().any(|c| c.name == webhook.stage_container()) {
        init.push(Container {
            name: webhook.stage_container().into(),
            image: Some(image),
            image_pull_policy: Some(pull_policy.into()),
            env: Some(vec![EnvVar {
                name: "SHARED_DIR".into(),
                value: Some(path.into()),
                value_from: None,
            }]),
            volume_mounts: Some(vec![VolumeMount {
                name: volume.into(),
                mount_path: path.into(),
                ..VolumeMount::default()
            }]),
            resources: Some(stage_resources()),
            ..Container::default()
        });
    }
    for secret in pull_secrets.iter().filter(|s| !s.name.is_empty()) {
        let secrets = spec.image_pull_secrets.get_or_insert_with(Vec::new);
        if !secrets.iter().any(|s| s.name == secret.name) {
            secrets.push(LocalObjectReference {
                name: secret.name.clone(),
            });
        }
    }
    if let Some(container) = spec.containers.get_mut(target) {
        let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
        if !mounts.iter().any(|m| m.name == volume) {
            mounts.push(VolumeMount {
                name: volume.into(),
                mount_path: path.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        }
        prepend_python_path(container.env.get_or_insert_with(Vec::new), path);
    }
}

/// Prepends `path` to the last `PYTHONPATH` entry (a `valueFrom` or empty one is replaced), or
/// adds one.
fn prepend_python_path(env: &mut Vec<EnvVar>, path: &str) {
    match env.iter_mut().rev().find(|e| e.name == "PYTHONPATH") {
        Some(entry) => {
            let value = match (&entry.value_from, entry.value.as_deref()) {
                (None, Some(old)) if !old.is_empty() => format!("{path}:{old}"),
                _ => path.to_string(),
            };
            entry.value = Some(value);
            entry.value_from = None;
        }
        None => env.push(EnvVar {
            name: "PYTHONPATH".into(),
            value: Some(path.into()),
            value_from: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    #[test]
    fn python_path_is_prepended_to_the_last_entry() {
        let cases: [(&[&str], &[&str]); 4] = [
            (&[], &["/p"]),
            (&["/a:/b"], &["/p:/a:/b"]),
            (&[""], &["/p"]),
            (&["/x", "/y"], &["/x", "/p:/y"]),
        ];
        for (input, want) in cases {
            let mut list: Vec<EnvVar> = input.iter().map(|v| env("PYTHONPATH", v)).collect();
            prepend_python_path(&mut list, "/p");
            let got: Vec<&str> = list.iter().filter_map(|e| e.value.as_deref()).collect();
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn stage_container_has_small_explicit_resources() {
        let r = serde_json::to_value(stage_resources()).unwrap();
        assert_eq!(
            r,
            serde_json::json!({"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}})
        );
    }
}
