//! The injection steps I1–I8 (cacheblend.md §7–§9).

use crate::args::{PIPELINE_PARALLEL_SIZE, bare_flag, disable_chunked_prefill, set_cudagraph_mode, set_flag};
use crate::{PLUGIN_PATH, PLUGIN_VOLUME, STAGE_CONTAINER};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, LocalObjectReference, Pod, PodSpec, Volume, VolumeMount,
};
use lmcache_api::constants::annotations;
use lmcache_api::v1alpha1::{CacheBlendEngine, CudaGraphMode};
use lmcache_manifest_renderer::blend_kv_transfer_config;

/// Applies I1–I8 to `pod`; `target` indexes `spec.containers` and was checked by the caller.
pub(crate) fn apply_injection(
    pod: &mut Pod,
    target: usize,
    engine: &CacheBlendEngine,
    namespace: &str,
    cluster_domain: &str,
) {
    let injection = engine.spec.injection.as_ref();
    let spec = pod.spec.get_or_insert_with(PodSpec::default);

    // I1
    spec.host_ipc = Some(true);
    // I2
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if !volumes.iter().any(|v| v.name == PLUGIN_VOLUME) {
        volumes.push(Volume {
            name: PLUGIN_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
    }
    // I3
    let init = spec.init_containers.get_or_insert_with(Vec::new);
    if !init.iter().any(|c| c.name == STAGE_CONTAINER)
        && let Some((image, pull_policy)) = engine.spec.payload_image()
    {
        init.push(stage_container(image, pull_policy.as_str()));
    }
    // I6
    let wanted = injection
        .and_then(|i| i.image_pull_secrets.as_deref())
        .unwrap_or_default();
    for secret in wanted.iter().filter(|s| !s.name.is_empty()) {
        let secrets = spec.image_pull_secrets.get_or_insert_with(Vec::new);
        if !secrets.iter().any(|s| s.name == secret.name) {
            secrets.push(LocalObjectReference {
                name: secret.name.clone(),
            });
        }
    }

    if let Some(container) = spec.containers.get_mut(target) {
        // I4
        let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
        if !mounts.iter().any(|m| m.name == PLUGIN_VOLUME) {
            mounts.push(VolumeMount {
                name: PLUGIN_VOLUME.into(),
                mount_path: PLUGIN_PATH.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        }
        // I5
        set_python_path(container.env.get_or_insert_with(Vec::new));
        // I7
        let kv_config = blend_kv_transfer_config(
            &engine.spec,
            engine.metadata.name.as_deref().unwrap_or_default(),
            namespace,
            cluster_domain,
        );
        let cudagraph = injection.map(|i| i.cudagraph).unwrap_or_default();
        apply_flags(container.args.get_or_insert_with(Vec::new), &kv_config, cudagraph);
    }

    // I8
    set_annotation(pod, annotations::CACHEBLEND_INJECTED, "true");
    if let Some(annotations) = pod.metadata.annotations.as_mut() {
        annotations.remove(annotations::CACHEBLEND_SKIP_REASON);
    }
}

fn stage_container(image: String, pull_policy: &str) -> Container {
    Container {
        name: STAGE_CONTAINER.into(),
        image: Some(image),
        image_pull_policy: Some(pull_policy.into()),
        env: Some(vec![EnvVar {
            name: "SHARED_DIR".into(),
            value: Some(PLUGIN_PATH.into()),
            value_from: None,
        }]),
        volume_mounts: Some(vec![VolumeMount {
            name: PLUGIN_VOLUME.into(),
            mount_path: PLUGIN_PATH.into(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    }
}

/// I5: prepend the plugin to the last `PYTHONPATH` entry, or add one.
fn set_python_path(env: &mut Vec<EnvVar>) {
    match env.iter_mut().rev().find(|e| e.name == "PYTHONPATH") {
        Some(entry) => {
            let value = match (&entry.value_from, entry.value.as_deref()) {
                (None, Some(old)) if !old.is_empty() => format!("{PLUGIN_PATH}:{old}"),
                _ => PLUGIN_PATH.to_string(),
            };
            entry.value = Some(value);
            entry.value_from = None;
        }
        None => env.push(EnvVar {
            name: "PYTHONPATH".into(),
            value: Some(PLUGIN_PATH.into()),
            value_from: None,
        }),
    }
}

/// I7: the §8 flags in order, then the §9 CUDA-graph mapping (conformance.md §2.4: vLLM 0.33
/// defaults to `FULL_AND_PIECEWISE`, so `piecewise` must be asked for explicitly).
fn apply_flags(args: &mut Vec<String>, kv_config: &str, cudagraph: CudaGraphMode) {
    set_flag(args, "--attention-backend", "CUSTOM");
    set_flag(args, "--kv-transfer-config", kv_config);
    set_flag(args, "--block-size", "64");
    set_flag(args, PIPELINE_PARALLEL_SIZE, "1");
    disable_chunked_prefill(args);
    bare_flag(args, "--no-async-scheduling");
    match cudagraph {
        CudaGraphMode::Eager => bare_flag(args, "--enforce-eager"),
        CudaGraphMode::Piecewise => set_cudagraph_mode(args, "PIECEWISE"),
        CudaGraphMode::FullDecodeOnly => set_cudagraph_mode(args, "FULL_DECODE_ONLY"),
    }
}

/// Sets one annotation, creating `metadata.annotations` when needed.
pub(crate) fn set_annotation(pod: &mut Pod, key: &str, value: &str) {
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.to_string(), value.to_string());
}
