//! Hands the objects an e2e test produced to the conformance suite.
//!
//! With `LMCACHE_CONFORMANCE_CAPTURE=<dir>` set (as `cargo xtask ci` does), a test namespace
//! writes, just before it is deleted, one conformance case file `<dir>/e2e-<namespace>.json`
//! with every object the operator created in it and every pod (or workload) one of the webhooks
//! injected. The suite then runs those objects through the released `lmcache`/`vllm` parsers,
//! so what reached the API server is checked too, not only the renderer fixtures.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The environment variable naming the capture directory.
pub const CAPTURE_ENV: &str = "LMCACHE_CONFORMANCE_CAPTURE";

/// Kinds the operator creates (ServiceMonitors only exist once their CRD is installed).
const OPERATOR_KINDS: &str = "daemonsets,deployments,services,configmaps";
const INJECTED_ANNOTATIONS: [&str; 2] = ["lmcache.ai/cacheblend-injected", "lmcache.ai/lmcache-injected"];

/// The capture directory, when capturing is on.
pub fn capture_dir() -> Option<PathBuf> {
    std::env::var_os(CAPTURE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Writes the case file for `namespace` (blocking: called from `Drop`). Best effort: a test
/// that created nothing writes nothing, and a failure is reported on stderr only.
pub(crate) fn capture_namespace(kubectl: &Path, kubeconfig: &Path, namespace: &str, dir: &Path) {
    let get = |what: &str, selector: Option<&str>| -> Vec<Value> {
        let mut cmd = Command::new(kubectl);
        cmd.arg("--kubeconfig").arg(kubeconfig);
        cmd.args(["get", what, "-n", namespace, "-o", "json"]);
        if let Some(selector) = selector {
            cmd.args(["-l", selector]);
        }
        let out = cmd.stdin(Stdio::null()).stderr(Stdio::null()).output();
        out.ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .and_then(|v| v.get("items").and_then(Value::as_array).cloned())
            .unwrap_or_default()
    };
    let managed = Some("app.kubernetes.io/managed-by=lmcache-operator");
    let mut objects = get(OPERATOR_KINDS, managed);
    objects.extend(get("servicemonitors.monitoring.coreos.com", managed));
    objects.extend(
        get("pods,deployments,statefulsets", None)
            .into_iter()
            .filter(is_injected),
    );
    if objects.is_empty() {
        return;
    }
    let case = json!({"name": format!("e2e/{namespace}"), "expect": "pass", "objects": objects});
    let path = dir.join(format!("e2e-{namespace}.json"));
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&path, serde_json::to_vec_pretty(&case).unwrap_or_default()));
    if let Err(e) = written {
        eprintln!("conformance capture: writing {}: {e}", path.display());
    }
}

/// A pod, or a workload whose pod template, carries a webhook's `*-injected: "true"`.
fn is_injected(object: &Value) -> bool {
    let pointer = match object.get("kind").and_then(Value::as_str) {
        Some("Pod") => "/metadata/annotations",
        _ => "/spec/template/metadata/annotations",
    };
    object.pointer(pointer).is_some_and(|a| {
        INJECTED_ANNOTATIONS
            .iter()
            .any(|k| a.get(k).and_then(Value::as_str) == Some("true"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_pods_and_templates_are_recognised() {
        let pod =
            json!({"kind": "Pod", "metadata": {"annotations": {"lmcache.ai/lmcache-injected": "true"}}});
        let skipped =
            json!({"kind": "Pod", "metadata": {"annotations": {"lmcache.ai/lmcache-skip-reason": "x"}}});
        let deployment = json!({"kind": "Deployment", "spec": {"template": {"metadata": {
            "annotations": {"lmcache.ai/cacheblend-injected": "true"}}}}});
        // A Deployment's own annotations never count: only what its pods get.
        let annotated_deployment = json!({"kind": "Deployment", "metadata": {"annotations": {
            "lmcache.ai/cacheblend-injected": "true"}}, "spec": {"template": {"metadata": {}}}});
        assert!(is_injected(&pod));
        assert!(!is_injected(&skipped));
        assert!(is_injected(&deployment));
        assert!(!is_injected(&annotated_deployment));
    }
}
