//! ServiceMonitors on the real control plane (B56-B59, B61, B64, G110, MTT-14): first without
//! the monitoring API (the other children converge, Warning `ServiceMonitorUnavailable`), then
//! with a minimal ServiceMonitor CRD installed mid-test, which the operator must notice without
//! a restart (`cargo xtask e2e` runs it with `--servicemonitor-recheck=3s`).
//!
//! This is the only test that installs the `monitoring.coreos.com` CRD, and it is alone in its
//! file (test binaries run one after another), so no other test sees the API appear or vanish.
//! A guard deletes the CRD again, also when the test fails.

use lmcache_e2e::crd::Kind;
use lmcache_e2e::json::assert_contains;
use lmcache_e2e::objects::{
    Res, Scope, assert_controlled_by, borrowed, condition, engine_children, labels, selector_labels,
    standard_labels, string_map, uid,
};
use lmcache_e2e::{Cluster, TempNamespace, settings, wait};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::Duration;

const CRD_NAME: &str = "servicemonitors.monitoring.coreos.com";
const UNAVAILABLE: &str = "ServiceMonitor API monitoring.coreos.com/v1 is not available; skipping";
/// B59 allows 5 minutes for the operator to notice the API; with the e2e recheck interval of
/// 3 s it takes seconds, but an operator started with the default (5m) still passes.
const API_APPEARS: Duration = Duration::from_secs(330);

/// A minimal, permissive ServiceMonitor CRD (the real one's schema is irrelevant here).
fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": "monitoring.coreos.com",
            "names": {
                "kind": "ServiceMonitor",
                "listKind": "ServiceMonitorList",
                "plural": "servicemonitors",
                "singular": "servicemonitor"
            },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}
            }]
        }
    })
}

/// Deletes the ServiceMonitor CRD (and with it every ServiceMonitor) when dropped.
struct CrdGuard;

impl CrdGuard {
    fn delete_blocking() {
        let (Ok(kubectl), Ok(kubeconfig)) = (settings::kubectl(), settings::kubeconfig()) else {
            return;
        };
        let _ = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["delete", "crd", CRD_NAME, "--ignore-not-found", "--timeout=60s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for CrdGuard {
    fn drop(&mut self) {
        Self::delete_blocking();
    }
}

fn engine_spec(service_monitor: bool) -> Value {
    let mut spec = json!({"l1": {"sizeGB": 60}});
    if service_monitor {
        spec["prometheus"] =
            json!({"serviceMonitor": {"enabled": true, "labels": {"release": "kube-prometheus-stack"}}});
    }
    spec
}

fn coordinator_spec(service_monitor: bool) -> Value {
    json!({"port": 9300, "prometheus": {"serviceMonitor": {"enabled": service_monitor}}})
}

/// B56 / MTT-14: the engine's ServiceMonitor.
fn check_engine_service_monitor(sm: &Value, engine: &Value, name: &str) -> anyhow::Result<()> {
    let mut expected = standard_labels(Kind::Engine, name);
    expected.insert("release".into(), "kube-prometheus-stack".into());
    assert_eq!(labels(sm), expected);
    assert_eq!(
        string_map(&sm["spec"]["selector"]["matchLabels"]),
        selector_labels("lmcache", name)
    );
    assert_eq!(
        sm["spec"]["endpoints"],
        json!([{"port": "metrics", "path": "/metrics", "interval": "30s"}])
    );
    assert!(sm["spec"]["namespaceSelector"].is_null(), "{}", sm["spec"]);
    assert_controlled_by(sm, Kind::Engine, engine)
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn b56_to_b59_g110_service_monitors_without_and_then_with_the_monitoring_api() -> anyhow::Result<()> {
    settings::operator_health()?;
    let cluster = Cluster::connect().await?;
    // A leftover of an interrupted run would make the first half meaningless.
    CrdGuard::delete_blocking();
    let namespace = TempNamespace::create(&cluster, "sm-a").await?;
    let other_namespace = TempNamespace::create(&cluster, "sm-b").await?;
    let s = Scope::new(&cluster, &namespace);
    let other = Scope::new(&cluster, &other_namespace);

    // B59, first half: no monitoring API.
    s.apply_cr(Kind::Engine, "my-cache", &engine_spec(true)).await?;
    s.apply_cr(Kind::Coordinator, "my-coordinator", &coordinator_spec(true))
        .await?;
    s.wait_exist(&borrowed(&engine_children("my-cache"))).await?;
    let engine = s.wait_running(Kind::Engine, "my-cache", 3).await?;
    assert_eq!(condition(&engine["status"], "ConfigValid")["status"], "True");
    s.wait_event("my-cache", "Warning", "ServiceMonitorUnavailable", UNAVAILABLE)
        .await?;
    // G110: the coordinator's metrics Service does not need the API.
    s.wait_exist(&[
        (Res::Deployment, "my-coordinator"),
        (Res::Service, "my-coordinator"),
        (Res::Service, "my-coordinator-metrics"),
    ])
    .await?;
    s.wait_running(Kind::Coordinator, "my-coordinator", 1).await?;
    s.wait_event(
        "my-coordinator",
        "Warning",
        "ServiceMonitorUnavailable",
        UNAVAILABLE,
    )
    .await?;

    // B59, second half: the API appears; no operator restart.
    let _crd = CrdGuard;
    s.apply_manifest(&crd()).await?;
    lmcache_e2e::crd::wait_established(&cluster, &[CRD_NAME]).await?;
    let sm = wait::until("ServiceMonitor my-cache", API_APPEARS, || async {
        s.get(Res::ServiceMonitor, "my-cache").await
    })
    .await?;
    // B56.
    check_engine_service_monitor(&sm, &engine, "my-cache")?;
    // G110: the coordinator's ServiceMonitor (standard coordinator labels, no user labels).
    let coordinator = s.must_get(Res::Cr(Kind::Coordinator), "my-coordinator").await?;
    let coordinator_sm = s
        .wait_exist(&[(Res::ServiceMonitor, "my-coordinator")])
        .await?
        .remove(0);
    assert_eq!(
        labels(&coordinator_sm),
        standard_labels(Kind::Coordinator, "my-coordinator")
    );
    assert_eq!(
        string_map(&coordinator_sm["spec"]["selector"]["matchLabels"]),
        selector_labels("lmcache-coordinator", "my-coordinator")
    );
    assert_eq!(
        coordinator_sm["spec"]["endpoints"],
        json!([{"port": "metrics", "path": "/metrics", "interval": "30s"}])
    );
    assert_controlled_by(&coordinator_sm, Kind::Coordinator, &coordinator)?;
    let metrics = s.must_get(Res::Service, "my-coordinator-metrics").await?;
    assert_contains(
        &metrics,
        &json!({"spec": {"clusterIP": "None", "ports": [{"name": "metrics", "port": 9300, "targetPort": "http", "protocol": "TCP"}]}}),
    )?;

    // MTT-14: the same name in another namespace gets its own, namespace-local ServiceMonitor.
    other
        .apply_cr(Kind::Engine, "my-cache", &engine_spec(true))
        .await?;
    let other_sm = other
        .wait_exist(&[(Res::ServiceMonitor, "my-cache")])
        .await?
        .remove(0);
    let other_engine = other.must_get(Res::Cr(Kind::Engine), "my-cache").await?;
    check_engine_service_monitor(&other_sm, &other_engine, "my-cache")?;

    // B64: a deleted ServiceMonitor is recreated.
    s.delete(Res::ServiceMonitor, "my-cache").await?;
    let old_uid = uid(&sm);
    s.wait("ServiceMonitor my-cache recreated", || async {
        Ok(s.get(Res::ServiceMonitor, "my-cache")
            .await?
            .filter(|sm| uid(sm) != old_uid))
    })
    .await?;

    // B57: no ServiceMonitor while Prometheus is disabled.
    let mut no_prometheus = engine_spec(true);
    no_prometheus["prometheus"]["enabled"] = json!(false);
    s.apply_cr(Kind::Engine, "no-prom", &no_prometheus).await?;
    s.wait_running(Kind::Engine, "no-prom", 3).await?;
    s.wait_exist(&borrowed(&engine_children("no-prom"))).await?;
    assert!(s.get(Res::ServiceMonitor, "no-prom").await?.is_none());

    // B61: garbage collection includes the ServiceMonitor.
    s.apply_cr(Kind::Engine, "gc-cache", &engine_spec(true)).await?;
    let mut gc_children: Vec<(Res, String)> = engine_children("gc-cache").into();
    gc_children.push((Res::ServiceMonitor, "gc-cache".into()));
    s.wait_exist(&borrowed(&gc_children)).await?;
    s.delete(Res::Cr(Kind::Engine), "gc-cache").await?;
    s.wait_gone(&borrowed(&gc_children)).await?;

    // B58: disabling deletes the operator's ServiceMonitor; G110: for the coordinator also the
    // metrics Service.
    s.apply_cr(Kind::Engine, "my-cache", &engine_spec(false)).await?;
    s.apply_cr(Kind::Coordinator, "my-coordinator", &coordinator_spec(false))
        .await?;
    s.wait_gone(&[
        (Res::ServiceMonitor, "my-cache"),
        (Res::ServiceMonitor, "my-coordinator"),
        (Res::Service, "my-coordinator-metrics"),
    ])
    .await?;
    // The other namespace's ServiceMonitor is not affected.
    assert_eq!(
        uid(&other.must_get(Res::ServiceMonitor, "my-cache").await?),
        uid(&other_sm)
    );

    // B58 [ext]: a ServiceMonitor `my-cache` that the engine does not control is never deleted,
    // also across later reconciles (here: a spec change, generation 3).
    s.apply_manifest(&json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "my-cache", "labels": {"app.kubernetes.io/managed-by": "lmcache-operator"}},
        "spec": {"endpoints": [{"port": "web"}]}
    }))
    .await?;
    let user_sm = s.must_get(Res::ServiceMonitor, "my-cache").await?;
    let mut spec = engine_spec(false);
    spec["logLevel"] = json!("DEBUG");
    s.apply_cr(Kind::Engine, "my-cache", &spec).await?;
    s.wait_status(Kind::Engine, "my-cache", "observedGeneration 3", |st| {
        st["observedGeneration"] == 3
    })
    .await?;
    let still = s.must_get(Res::ServiceMonitor, "my-cache").await?;
    assert_eq!(uid(&still), uid(&user_sm));
    assert_eq!(still["spec"], user_sm["spec"]);

    // lifecycle.md §2: a ServiceMonitor rejected by an admission policy never blocks the status:
    // the engine runs, Ready stays True (the message names the rejection), an ApplyFailed Event.
    let _policy = PolicyGuard::create(&cluster, &other.ns).await?;
    other.apply_cr(Kind::Engine, "denied", &engine_spec(true)).await?;
    let engine = other
        .wait_status(
            Kind::Engine,
            "denied",
            "Running despite the rejected ServiceMonitor",
            |st| {
                st["phase"] == "Running"
                    && condition(st, "Ready")["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("ServiceMonitor"))
            },
        )
        .await?;
    let ready = condition(&engine["status"], "Ready");
    assert_eq!(ready["status"], "True");
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(message.contains(POLICY_MESSAGE), "{message}");
    assert!(other.get(Res::ServiceMonitor, "denied").await?.is_none());
    let events = other.events("denied", "ApplyFailed").await?;
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "Warning"
                && e["message"].as_str().is_some_and(|n| n.contains(POLICY_MESSAGE))),
        "{events:?}"
    );
    Ok(())
}

const POLICY_MESSAGE: &str = "ServiceMonitors are denied in this namespace";

/// A ValidatingAdmissionPolicy (and binding) denying every ServiceMonitor in one namespace;
/// deleted when dropped.
struct PolicyGuard {
    name: String,
}

impl PolicyGuard {
    async fn create(cluster: &Cluster, namespace: &str) -> anyhow::Result<Self> {
        let name = format!("deny-servicemonitors-{namespace}");
        let policy = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {"failurePolicy": "Fail",
                     "matchConstraints": {"resourceRules": [{"apiGroups": ["monitoring.coreos.com"],
                         "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"], "resources": ["servicemonitors"]}]},
                     "validations": [{"expression": "false", "message": POLICY_MESSAGE}]}
        });
        let binding = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {"policyName": name, "validationActions": ["Deny"],
                     "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}}
        });
        for object in [&policy, &binding] {
            cluster
                .kubectl
                .run_with_stdin(&["apply", "-f", "-"], Some(&object.to_string()))
                .await?
                .ok()?;
        }
        // The policy takes effect through an informer: probe with a dry-run until it denies.
        let probe = json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
                           "metadata": {"name": "policy-probe", "namespace": namespace},
                           "spec": {"endpoints": [{"port": "web"}]}});
        wait::until(
            "the policy denies ServiceMonitors",
            Duration::from_secs(60),
            || async {
                let out = cluster
                    .kubectl
                    .run_with_stdin(
                        &["create", "--dry-run=server", "-f", "-"],
                        Some(&probe.to_string()),
                    )
                    .await?;
                Ok((!out.success && out.stderr.contains(POLICY_MESSAGE)).then_some(()))
            },
        )
        .await?;
        Ok(Self { name })
    }
}

impl Drop for PolicyGuard {
    fn drop(&mut self) {
        let (Ok(kubectl), Ok(kubeconfig)) = (settings::kubectl(), settings::kubeconfig()) else {
            return;
        };
        for kind in ["validatingadmissionpolicybinding", "validatingadmissionpolicy"] {
            let _ = Command::new(&kubectl)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["delete", kind, &self.name, "--ignore-not-found"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
