//! An engine's rollout (rollouts.md §3): which engine pods run the DaemonSet's current pod
//! template, the `UpToDate` condition, and the `RolloutStarted` Event's wording.
//!
//! The API server counts a DaemonSet's template changes in the annotation
//! `deprecated.daemonset.template.generation` (it moves only when the pod template changes, by
//! its own semantic comparison), and the DaemonSet controller labels each pod with the template
//! generation it was created from (`pod-template-generation`) and the ControllerRevision hash of
//! its template (`controller-revision-hash`). A pod runs the current template when its
//! generation label is the current one, or when its hash is the hash of a pod that has it (a
//! template changed back to an earlier one reuses that revision, and the DaemonSet controller
//! then counts the older pods as updated too). When the DaemonSet controller reports every
//! desired pod updated for the current generation, every pod is.

use crate::cached_pod::CachedPod;
use lmcache_api::constants::reasons;
use serde_json::Value;
use std::sync::Arc;

/// Annotation the API server keeps on a DaemonSet: its pod-template generation.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// Annotation the operator renders on an engine's DaemonSet: the engine's `metadata.generation`
/// it was last applied for, so a template change can be told apart as a spec change or an
/// operator upgrade (a different template for the same generation).
pub const ENGINE_GENERATION_ANNOTATION: &str = "lmcache.ai/engine-generation";
/// Outdated nodes named in the `UpToDate` message.
pub const NAMED_NODES: usize = 5;

/// What a live DaemonSet says about its rollout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DaemonSetRollout {
    /// `deprecated.daemonset.template.generation`.
    pub template_generation: Option<String>,
    /// `status.updatedNumberScheduled`.
    pub updated: i32,
    /// `status.observedGeneration` has reached `metadata.generation`: the counts are about the
    /// current template.
    pub observed: bool,
    /// `spec.updateStrategy.type` is `OnDelete`.
    pub on_delete: bool,
}

fn int(ds: &Value, pointer: &str) -> Option<i64> {
    ds.pointer(pointer).and_then(Value::as_i64)
}

impl DaemonSetRollout {
    /// Read from a live DaemonSet.
    pub fn of(ds: &Value) -> Self {
        let generation = int(ds, "/metadata/generation");
        let observed = int(ds, "/status/observedGeneration");
        Self {
            template_generation: annotation(ds, TEMPLATE_GENERATION_ANNOTATION).map(str::to_string),
            updated: int(ds, "/status/updatedNumberScheduled")
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(0),
            observed: matches!((generation, observed), (Some(g), Some(o)) if o >= g),
            on_delete: ds.pointer("/spec/updateStrategy/type").and_then(Value::as_str) == Some("OnDelete"),
        }
    }

    /// Every desired pod runs the current template (nothing desired counts as done).
    pub fn complete(&self, desired: i32) -> bool {
        desired == 0 || (self.observed && self.updated >= desired)
    }
}

/// `metadata.annotations[key]` of a live object.
pub fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// For each pod (in order), whether it runs the DaemonSet's current template.
pub fn up_to_date(pods: &[Arc<CachedPod>], ds: &DaemonSetRollout, desired: i32) -> Vec<bool> {
    if ds.complete(desired) && !pods.is_empty() && ds.updated as usize >= pods.len() {
        return vec![true; pods.len()];
    }
    let current = ds.template_generation.as_deref();
    let of_current = |pod: &CachedPod| current.is_some() && pod.template_generation.as_deref() == current;
    let current_hash = pods
        .iter()
        .find(|pod| of_current(pod))
        .and_then(|pod| pod.revision_hash.as_deref());
    pods.iter()
        .map(|pod| {
            of_current(pod) || (current_hash.is_some() && pod.revision_hash.as_deref() == current_hash)
        })
        .collect()
}

/// The `UpToDate` condition: status, reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpToDate {
    /// Every desired instance runs the current template.
    pub status: bool,
    /// `Current`, `RollingOut` or `RolloutPending`.
    pub reason: &'static str,
    /// `<updated>/<desired> instances run the current template[; outdated: a, b, ...]`.
    pub message: String,
}

/// `UpToDate` from the DaemonSet and the nodes of the pods that are not up to date (sorted).
pub fn condition(ds: &DaemonSetRollout, desired: i32, outdated_nodes: &[String]) -> UpToDate {
    let counts = format!(
        "{}/{desired} instances run the current template",
        ds.updated.min(desired.max(0))
    );
    if ds.complete(desired) {
        return UpToDate {
            status: true,
            reason: reasons::CURRENT,
            message: counts,
        };
    }
    let reason = if ds.on_delete {
        reasons::ROLLOUT_PENDING
    } else {
        reasons::ROLLING_OUT
    };
    let mut message = counts;
    if !outdated_nodes.is_empty() {
        let mut named: Vec<&str> = outdated_nodes
            .iter()
            .take(NAMED_NODES)
            .map(String::as_str)
            .collect();
        if outdated_nodes.len() > NAMED_NODES {
            named.push("...");
        }
        message = format!("{message}; outdated: {}", named.join(", "));
    }
    UpToDate {
        status: false,
        reason,
        message,
    }
}

/// The `RolloutStarted` message when applying the DaemonSet moved its template generation from
/// `before` (the live DaemonSet before the apply) to the applied one: a spec change when the
/// engine's generation differs from the one the DaemonSet was last applied for, otherwise an
/// operator upgrade. `None` when the template did not change (or the DaemonSet is new).
pub fn started_message(before: &Value, applied: &Value, generation: i64) -> Option<String> {
    let old = annotation(before, TEMPLATE_GENERATION_ANNOTATION)?;
    let new = annotation(applied, TEMPLATE_GENERATION_ANNOTATION)?;
    if old == new {
        return None;
    }
    let name = applied
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let cause = match annotation(before, ENGINE_GENERATION_ANNOTATION) {
        Some(last) if last == generation.to_string() => format!(
            "the operator rendered a different pod template for the same generation {generation} (operator upgrade, or an edit of the DaemonSet reverted)"
        ),
        Some(last) => format!("generation {last} -> {generation} changed the pod template"),
        None => format!("the pod template changed at generation {generation}"),
    };
    let how = match applied
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
    {
        Some("OnDelete") => "OnDelete: each engine pod is replaced when it is deleted".to_string(),
        _ => {
            let max = applied
                .pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable")
                .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
                .unwrap_or_else(|| "1".to_string());
            format!("RollingUpdate: at most {max} engine pods unavailable at a time")
        }
    };
    Some(format!("DaemonSet {name}: {cause}; {how}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn pod(node: &str, generation: &str, hash: &str) -> Arc<CachedPod> {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("cache-{node}"), "namespace": "ns",
                "labels": {"pod-template-generation": generation, "controller-revision-hash": hash}},
            "spec": {"nodeName": node, "containers": []},
        }))
        .unwrap();
        Arc::new(CachedPod::from(pod))
    }

    fn ds(template_generation: &str, updated: i32, observed: bool, on_delete: bool) -> DaemonSetRollout {
        DaemonSetRollout {
            template_generation: Some(template_generation.into()),
            updated,
            observed,
            on_delete,
        }
    }

    #[test]
    fn reads_the_live_daemonset() {
        let live = json!({
            "metadata": {"generation": 4, "annotations": {TEMPLATE_GENERATION_ANNOTATION: "3"}},
            "spec": {"updateStrategy": {"type": "OnDelete"}},
            "status": {"observedGeneration": 4, "updatedNumberScheduled": 2},
        });
        assert_eq!(DaemonSetRollout::of(&live), ds("3", 2, true, true));
        let stale = json!({"metadata": {"generation": 5}, "status": {"observedGeneration": 4}});
        assert!(!DaemonSetRollout::of(&stale).observed);
    }

    #[test]
    fn pods_of_the_current_generation_or_its_revision_are_up_to_date() {
        let pods = [pod("a", "2", "h2"), pod("b", "3", "h3"), pod("c", "1", "h3")];
        // Template generation 3 is revision h3: pod c (from generation 1, the same template) too.
        assert_eq!(up_to_date(&pods, &ds("3", 2, true, true), 3), [false, true, true]);
        // No pod of the current generation yet: only the generation label can tell.
        assert_eq!(
            up_to_date(&pods, &ds("4", 0, true, true), 3),
            [false, false, false]
        );
        // The controller says all are updated.
        assert_eq!(up_to_date(&pods, &ds("4", 3, true, false), 3), [true, true, true]);
        // ... but not while it has not seen the current generation.
        assert_eq!(
            up_to_date(&pods, &ds("4", 3, false, false), 3),
            [false, false, false]
        );
    }

    #[test]
    fn condition_names_at_most_five_outdated_nodes() {
        let done = condition(&ds("2", 3, true, false), 3, &[]);
        assert_eq!(
            done,
            UpToDate {
                status: true,
                reason: "Current",
                message: "3/3 instances run the current template".into()
            }
        );
        let nodes: Vec<String> = (0..7).map(|i| format!("gpu-node-{i}")).collect();
        let pending = condition(&ds("2", 0, true, true), 7, &nodes);
        assert_eq!((pending.status, pending.reason), (false, "RolloutPending"));
        assert_eq!(
            pending.message,
            "0/7 instances run the current template; outdated: gpu-node-0, gpu-node-1, gpu-node-2, gpu-node-3, gpu-node-4, ..."
        );
        let rolling = condition(&ds("2", 1, true, false), 3, &nodes[..2]);
        assert_eq!(rolling.reason, "RollingOut");
        assert_eq!(
            rolling.message,
            "1/3 instances run the current template; outdated: gpu-node-0, gpu-node-1"
        );
        // Nothing desired yet (a new DaemonSet): nothing to roll out.
        assert!(condition(&DaemonSetRollout::default(), 0, &[]).status);
    }

    fn applied(template_generation: &str, engine_generation: &str, strategy: Value) -> Value {
        json!({"metadata": {"name": "cache", "annotations": {
            TEMPLATE_GENERATION_ANNOTATION: template_generation,
            ENGINE_GENERATION_ANNOTATION: engine_generation}},
            "spec": {"updateStrategy": strategy}})
    }

    #[test]
    fn a_template_change_is_a_spec_change_or_an_operator_upgrade() {
        let rolling = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}});
        let before = applied("1", "3", rolling.clone());
        // Same template generation: no rollout.
        assert_eq!(
            started_message(&before, &applied("1", "4", rolling.clone()), 4),
            None
        );
        // New DaemonSet (nothing before): no rollout.
        assert_eq!(
            started_message(&json!({}), &applied("1", "4", rolling.clone()), 4),
            None
        );
        assert_eq!(
            started_message(&before, &applied("2", "4", rolling.clone()), 4).unwrap(),
            "DaemonSet cache: generation 3 -> 4 changed the pod template; RollingUpdate: at most 1 engine pods unavailable at a time"
        );
        // L4: the same generation, a different rendered template.
        let on_delete = json!({"type": "OnDelete"});
        assert_eq!(
            started_message(&before, &applied("2", "3", on_delete), 3).unwrap(),
            "DaemonSet cache: the operator rendered a different pod template for the same generation 3 (operator upgrade, or an edit of the DaemonSet reverted); OnDelete: each engine pod is replaced when it is deleted"
        );
        let percent = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%"}});
        assert!(
            started_message(&before, &applied("2", "4", percent), 4)
                .unwrap()
                .ends_with("at most 25% engine pods unavailable at a time")
        );
    }
}
