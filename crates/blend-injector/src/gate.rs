//! The admission decision (cacheblend.md §5 steps 3–11, §6).

use crate::args::has_flag;
use crate::mutate::{apply_injection, set_annotation};
use crate::outcome::{Outcome, SkipReason};
use k8s_openapi::api::core::v1::{Container, Pod};
use lmcache_api::constants::{annotations, labels};
use lmcache_api::v1alpha1::CacheBlendEngine;

/// The engine name the pod binds to: the trimmed `lmcache.ai/cacheblend-engine` annotation,
/// or `None` when it is absent or blank. The caller looks it up in the admission request's
/// namespace (never another one) and passes the result to [`inject`].
pub fn requested_engine(pod: &Pod) -> Option<&str> {
    annotation(pod, annotations::CACHEBLEND_ENGINE)
}

/// Decides and applies the webhook's mutation for `pod`, admitted in `namespace`.
///
/// `engine` is the CacheBlendEngine found under `namespace`/[`requested_engine`], or `None`.
/// An engine with another name or namespace, or one being deleted, counts as not found.
/// `cluster_domain` must equal the operator's, so the injected `--kv-transfer-config` equals
/// the engine's connection ConfigMap byte for byte.
pub fn inject(
    pod: &Pod,
    namespace: &str,
    engine: Option<&CacheBlendEngine>,
    cluster_domain: &str,
) -> Outcome {
    let opted_in = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::CACHEBLEND_INJECT))
        .is_some_and(|v| v == "true");
    if !opted_in {
        return Outcome::NotOptedIn;
    }
    if annotation(pod, annotations::CACHEBLEND_INJECTED) == Some("true") {
        return Outcome::AlreadyInjected;
    }
    let Some(name) = requested_engine(pod) else {
        return Outcome::NotOptedIn;
    };
    match decide(pod, name, namespace, engine) {
        Err(reason) => {
            let mut pod = pod.clone();
            set_annotation(&mut pod, annotations::CACHEBLEND_SKIP_REASON, reason.as_str());
            Outcome::Skipped { reason, pod }
        }
        Ok((engine, target)) => {
            let mut pod = pod.clone();
            apply_injection(&mut pod, target, engine, namespace, cluster_domain);
            Outcome::Injected(pod)
        }
    }
}

/// Steps 6–10: the engine and the index of the target container, or the first skip reason.
fn decide<'e>(
    pod: &Pod,
    name: &str,
    namespace: &str,
    engine: Option<&'e CacheBlendEngine>,
) -> Result<(&'e CacheBlendEngine, usize), SkipReason> {
    let engine = engine
        .filter(|e| e.metadata.name.as_deref() == Some(name))
        .filter(|e| e.metadata.namespace.as_deref().is_none_or(|ns| ns == namespace))
        .filter(|e| e.metadata.deletion_timestamp.is_none())
        .ok_or(SkipReason::EngineNotFound)?;
    if engine.spec.payload_image().is_none() {
        return Err(SkipReason::PayloadImageUnset);
    }
    let target = target_container(pod, engine).ok_or(SkipReason::TargetContainerNotFound)?;
    let container = &containers(pod)[target];
    if container.command.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(SkipReason::CommandOverride);
    }
    if has_flag(
        container.args.as_deref().unwrap_or_default(),
        "--kv-transfer-config",
    ) {
        return Err(SkipReason::KvTransferConfigPresent);
    }
    Ok((engine, target))
}

/// The annotation, else the engine's `targetContainer`, else the first container.
fn target_container(pod: &Pod, engine: &CacheBlendEngine) -> Option<usize> {
    let containers = containers(pod);
    let named = annotation(pod, annotations::CACHEBLEND_CONTAINER).or_else(|| {
        engine
            .spec
            .injection
            .as_ref()
            .and_then(|i| i.target_container.as_deref())
            .map(str::trim)
            .filter(|n| !n.is_empty())
    });
    match named {
        Some(name) => containers.iter().position(|c| c.name == name),
        None if containers.is_empty() => None,
        None => Some(0),
    }
}

fn containers(pod: &Pod) -> &[Container] {
    pod.spec.as_ref().map_or(&[], |s| s.containers.as_slice())
}

/// A trimmed, non-blank annotation value.
fn annotation<'p>(pod: &'p Pod, key: &str) -> Option<&'p str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
}
