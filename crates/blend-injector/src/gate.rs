//! The admission decision of either webhook (cacheblend.md §5 steps 3–11, §6;
//! connection-webhook.md §3), then the injection.

use crate::args::has_flag;
use crate::engine::Injectable;
use crate::outcome::{Outcome, SkipReason};
use crate::stage::stage_payload;
use crate::webhook::Webhook;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

/// The engine name the pod binds to for `webhook`: the trimmed engine annotation, or `None`
/// when it is absent or blank. The caller looks it up in the admission request's namespace
/// (never another one) and passes the result to [`inject`].
pub fn requested_engine(pod: &Pod, webhook: Webhook) -> Option<&str> {
    annotation(pod, webhook.engine_annotation())
}

/// Decides and applies `E`'s webhook mutation for `pod`, admitted in `namespace`.
///
/// `engine` is the engine found under `namespace`/[`requested_engine`], or `None`. An engine
/// with another name or namespace, or one being deleted, counts as not found. `cluster_domain`
/// must equal the operator's, so the injected `--kv-transfer-config` equals the engine's
/// connection ConfigMap byte for byte.
pub fn inject<E: Injectable>(
    pod: &Pod,
    namespace: &str,
    engine: Option<&E>,
    cluster_domain: &str,
) -> Outcome {
    let webhook = E::WEBHOOK;
    let opted_in = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(webhook.inject_label()))
        .is_some_and(|v| v == "true");
    if !opted_in {
        return Outcome::NotOptedIn;
    }
    if annotation(pod, webhook.injected_annotation()) == Some("true") {
        return Outcome::AlreadyInjected;
    }
    let Some(name) = requested_engine(pod, webhook) else {
        return Outcome::NotOptedIn;
    };
    let mut pod = pod.clone();
    match decide(&pod, name, namespace, engine) {
        Err(reason) => {
            set_annotation(&mut pod, webhook.skip_annotation(), reason.as_str());
            Outcome::Skipped { reason, pod }
        }
        Ok((engine, target)) => {
            apply(&mut pod, target, engine, namespace, cluster_domain);
            Outcome::Injected(pod)
        }
    }
}

/// The engine and the index of the target container, or the first skip reason.
fn decide<'e, E: Injectable>(
    pod: &Pod,
    name: &str,
    namespace: &str,
    engine: Option<&'e E>,
) -> Result<(&'e E, usize), SkipReason> {
    let engine = engine
        .filter(|e| e.metadata().name.as_deref() == Some(name))
        .filter(|e| e.metadata().namespace.as_deref().is_none_or(|ns| ns == namespace))
        .filter(|e| e.metadata().deletion_timestamp.is_none())
        .ok_or(SkipReason::EngineNotFound)?;
    if E::requires_payload() && engine.injection().payload().is_none() {
        return Err(SkipReason::PayloadImageUnset);
    }
    let target = target_container(pod, E::WEBHOOK, engine.injection().target_container)
        .ok_or(SkipReason::TargetContainerNotFound)?;
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

/// `hostIPC`, the payload (when the engine has one), the target container's flags and env,
/// then the result annotation (I1–I8, L1–L5).
fn apply<E: Injectable>(pod: &mut Pod, target: usize, engine: &E, namespace: &str, cluster_domain: &str) {
    let webhook = E::WEBHOOK;
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    // CUDA IPC with the engine on the same node.
    spec.host_ipc = Some(true);
    let injection = engine.injection();
    if let Some((image, pull_policy)) = injection.payload() {
        stage_payload(
            spec,
            target,
            webhook,
            (image, pull_policy.as_str()),
            injection.image_pull_secrets,
        );
    }
    if let Some(container) = spec.containers.get_mut(target) {
        engine.wire(container, namespace, cluster_domain);
    }
    set_annotation(pod, webhook.injected_annotation(), "true");
    if let Some(annotations) = pod.metadata.annotations.as_mut() {
        annotations.remove(webhook.skip_annotation());
    }
}

/// The annotation, else the engine's `targetContainer`, else the first container.
fn target_container(pod: &Pod, webhook: Webhook, configured: Option<&str>) -> Option<usize> {
    let containers = containers(pod);
    match annotation(pod, webhook.container_annotation()).or(configured) {
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

/// Sets one annotation, creating `metadata.annotations` when needed.
fn set_annotation(pod: &mut Pod, key: &str, value: &str) {
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.to_string(), value.to_string());
}
