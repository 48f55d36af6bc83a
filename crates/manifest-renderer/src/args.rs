//! Command lines of the engine server and the coordinator, in the spec's exact order.

use crate::json::compact;
use crate::number::fmt_f64;
use lmcache_api::v1alpha1::{CoordinatorSpec, EngineSpec, L2Backend};
use serde_json::Value;

/// `--l1-align-bytes` of the blend engine (16 MiB).
pub const BLEND_L1_ALIGN_BYTES: &str = "16777216";

/// Server arguments of an engine (engine.md §4 as corrected by conformance.md §2.2: the flags
/// the released `lmcache server` parser accepts). `coordinator_url` is the resolved URL, used
/// only when `spec.coordinator` is present; `blend` adds the CacheBlend flags before
/// `extraArgs`.
pub fn engine_args(spec: &EngineSpec, coordinator_url: Option<&str>, blend: bool) -> Vec<String> {
    let mut args: Vec<String> = Vec::with_capacity(32);
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
    push(&["--host", "0.0.0.0"]);
    push(&["--port", &spec.server.port.to_string()]);
    // The HTTP frontend serves `/metrics` and the coordinator's callbacks; LMCache binds it to
    // 127.0.0.1 unless told otherwise, which nothing outside the pod can reach.
    push(&["--http-host", "0.0.0.0"]);
    push(&["--http-port", &spec.server.http_port.to_string()]);
    push(&["--l1-size-gb", &fmt_f64(spec.l1.size_gb)]);
    push(&["--chunk-size", &spec.server.chunk_size.to_string()]);
    push(&["--max-workers", &spec.server.max_workers.to_string()]);
    push(&["--hash-algorithm", spec.server.hash_algorithm.as_str()]);
    push(&["--eviction-policy", spec.eviction.policy.as_str()]);
    push(&[
        "--eviction-trigger-watermark",
        &fmt_f64(spec.eviction.trigger_watermark),
    ]);
    push(&["--eviction-ratio", &fmt_f64(spec.eviction.eviction_ratio)]);
    if spec.prometheus.enabled {
        push(&["--prometheus-port", &spec.prometheus.port.to_string()]);
    } else {
        push(&["--disable-metrics"]);
    }
    for backend in spec.l2_backends.iter().flatten() {
        push(&["--l2-adapter", &adapter_json(backend)]);
    }
    if let Some(coordinator) = &spec.coordinator {
        if let Some(url) = coordinator_url {
            push(&["--coordinator-url", url]);
        }
        push(&[
            "--coordinator-heartbeat-interval",
            &fmt_f64(coordinator.heartbeat_interval),
        ]);
        if coordinator.l2_event_reporting {
            // `--coordinator-l2-event-reporting` is a deprecated hidden alias.
            push(&["--coordinator-event-reporting"]);
        }
    }
    if blend {
        push(&["--engine-type", "blend", "--l1-align-bytes", BLEND_L1_ALIGN_BYTES]);
    }
    args.extend(spec.pod.extra_args.iter().flatten().cloned());
    args
}

/// The `--l2-adapter` value: compact JSON of `config` plus `"type"`, the `type` field winning
/// over a `"type"` key inside `config`.
pub fn adapter_json(backend: &L2Backend) -> String {
    let mut object = backend.config.clone().unwrap_or_default();
    object.insert("type".to_string(), Value::String(backend.type_.clone()));
    compact(&Value::Object(object))
}

/// Coordinator arguments (coordinator.md §3 as corrected by conformance.md §2.3).
pub fn coordinator_args(spec: &CoordinatorSpec) -> Vec<String> {
    let mut args: Vec<String> = Vec::with_capacity(24);
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
    push(&["--host", &spec.host]);
    push(&["--port", &spec.port.to_string()]);
    push(&["--instance-timeout", &fmt_f64(spec.instance_timeout)]);
    push(&["--health-check-interval", &fmt_f64(spec.health_check_interval)]);
    push(&[
        "--eviction-check-interval",
        &fmt_f64(spec.eviction_check_interval),
    ]);
    push(&["--eviction-ratio", &fmt_f64(spec.eviction_ratio)]);
    push(&["--trigger-watermark", &fmt_f64(spec.trigger_watermark)]);
    push(&["--hash-algorithm", spec.hash_algorithm.as_str()]);
    if let Some(size) = spec.blend_chunk_size {
        push(&["--chunk-size", &size.to_string()]);
    }
    if let Some(stride) = spec.blend_probe_stride {
        push(&["--blend-probe-stride", &stride.to_string()]);
    }
    if spec.blend_lookup {
        push(&["--enable-blend-lookup"]);
    }
    if !spec.prometheus.enabled {
        push(&["--disable-metrics"]);
    }
    args.extend(spec.pod.extra_args.iter().flatten().cloned());
    args
}
