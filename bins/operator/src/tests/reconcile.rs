use super::fake_api::{child_writes, writes};
use super::harness::Harness;
use crate::keys::Kind;
use crate::metrics::ReconcileResult;
use crate::reconcile::{CONFLICT_RETRY, RESYNC};
use kube::runtime::controller::Action;
use lmcache_api::v1alpha1::{CacheBlendEngine, LMCacheCoordinator, LMCacheEngine};
use serde_json::{Value, json};

const ENGINES: &str = "lmcacheengines";
const BLEND: &str = "cacheblendengines";
const COORDINATORS: &str = "lmcachecoordinators";

fn minimal() -> Value {
    json!({"l1": {"sizeGB": 60}})
}

fn blend_spec() -> Value {
    json!({"l1": {"sizeGB": 60}, "injection": {"payloadImage": {"repository": "reg/cb", "tag": "1"}}})
}

fn args(h: &Harness, ns: &str, name: &str) -> Vec<String> {
    let ds = h.fake.get("daemonsets", ns, name).expect("DaemonSet exists");
    serde_json::from_value(
        ds.pointer("/spec/template/spec/containers/0/args")
            .cloned()
            .unwrap(),
    )
    .unwrap()
}

fn event_reasons(h: &Harness) -> Vec<String> {
    h.fake
        .take_events()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap_or(""),
                e["reason"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// Creates `default/my-cache` and converges it.
async fn converged_engine() -> Harness {
    let mut h = Harness::new(true);
    h.create(ENGINES, "LMCacheEngine", "default", "my-cache", minimal());
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    h.fake.take_requests();
    h.fake.take_events();
    h
}

#[tokio::test]
async fn create_applies_children_in_order_then_status() {
    let mut h = Harness::new(true);
    h.create(ENGINES, "LMCacheEngine", "default", "my-cache", minimal());
    let action = h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert_eq!(action, Action::requeue(RESYNC));
    let requests = h.fake.take_requests();
    // The Event goes out beside the reconcile (checked below), in no fixed order.
    assert_eq!(
        child_writes(&requests),
        [
            "PATCH /apis/apps/v1/namespaces/default/daemonsets/my-cache",
            "PATCH /api/v1/namespaces/default/services/my-cache",
            "PATCH /api/v1/namespaces/default/services/my-cache-metrics",
            "PATCH /api/v1/namespaces/default/configmaps/my-cache-connection",
            "PATCH /apis/lmcache.lmcache.ai/v1alpha1/namespaces/default/lmcacheengines/my-cache/status",
        ]
    );
    // No ServiceMonitor wanted and none exists: nothing deleted.
    assert!(h.fake.get("servicemonitors", "default", "my-cache").is_none());
    let ds = h.fake.get("daemonsets", "default", "my-cache").unwrap();
    assert_eq!(
        ds["metadata"]["ownerReferences"][0]["uid"],
        "uid-default-my-cache-LMCacheEngine"
    );
    assert_eq!(ds["metadata"]["managedFields"][0]["manager"], "lmcache-operator");
    let cm = h
        .fake
        .get("configmaps", "default", "my-cache-connection")
        .unwrap();
    assert!(
        cm["data"]["kv-transfer-config.json"]
            .as_str()
            .unwrap()
            .contains("tcp://my-cache.default.svc.cluster.local")
    );
    let status = h.status(ENGINES, "default", "my-cache");
    assert_eq!(status["phase"], "Pending");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["desiredInstances"], 0);
    let valid = h.condition(ENGINES, "default", "my-cache", "ConfigValid");
    assert_eq!(
        (valid["status"].as_str(), valid["reason"].as_str()),
        (Some("True"), Some("Valid"))
    );
    assert_eq!(valid["observedGeneration"], 1);
    let events = h.fake.take_events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], "Created");
    assert_eq!(h.metrics.writes("PATCH", "daemonsets"), 1);
    assert_eq!(h.metrics.writes("PATCH", "lmcacheengines/status"), 1);
    assert_eq!(h.metrics.reconciles(Kind::Engine, ReconcileResult::Success), 1);
}

#[tokio::test]
async fn second_reconcile_of_a_converged_engine_sends_nothing() {
    let h = converged_engine().await;
    let before = h.metrics.writes("PATCH", "daemonsets");
    h.reconcile::<LMCacheEngine>("default", "my-cache").await.unwrap();
    h.reconcile::<LMCacheEngine>("default", "my-cache").await.unwrap();
    let requests = h.fake.take_requests();
    assert!(requests.is_empty(), "converged reconcile sent {requests:?}");
    assert_eq!(h.metrics.writes("PATCH", "daemonsets"), before);
}

#[tokio::test]
async fn drift_is_repaired_and_foreign_additions_are_left_alone() {
    let mut h = converged_engine().await;

    // Someone else's label, and `kubectl rollout restart`'s annotation: not drift.
    h.fake.edit("services", "default", "my-cache", |s| {
        s["metadata"]["labels"]["x"] = json!("y");
    });
    h.fake.edit("daemonsets", "default", "my-cache", |d| {
        d["spec"]["template"]["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"});
        d["status"] = json!({"desiredNumberScheduled": 0, "numberReady": 0});
    });
    h.sync();
    h.reconcile::<LMCacheEngine>("default", "my-cache").await.unwrap();
    assert!(writes(&h.fake.take_requests()).is_empty());

    // hostIPC flipped and the lookup Service's traffic policy changed: both restored.
    h.fake.edit("daemonsets", "default", "my-cache", |d| {
        d["spec"]["template"]["spec"]["hostIPC"] = json!(false);
    });
    h.fake.edit("services", "default", "my-cache", |s| {
        s["spec"]["internalTrafficPolicy"] = json!("Cluster");
    });
    h.sync();
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert_eq!(
        child_writes(&h.fake.take_requests()),
        [
            "PATCH /apis/apps/v1/namespaces/default/daemonsets/my-cache",
            "PATCH /api/v1/namespaces/default/services/my-cache",
        ]
    );
    // Restoring the pod template rolls the engine pods (as the edit did).
    assert_eq!(event_reasons(&h), ["Normal Updated", "Normal RolloutStarted"]);
    let ds = h.fake.get("daemonsets", "default", "my-cache").unwrap();
    assert_eq!(ds["spec"]["template"]["spec"]["hostIPC"], true);

    // A deleted ConfigMap is recreated.
    h.fake.remove("configmaps", "default", "my-cache-connection");
    h.sync();
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    let requests = h.fake.take_requests();
    assert!(requests.contains(&"GET /api/v1/namespaces/default/configmaps/my-cache-connection".to_string()));
    assert_eq!(
        child_writes(&requests),
        ["PATCH /api/v1/namespaces/default/configmaps/my-cache-connection"]
    );
    // Converged again.
    h.reconcile::<LMCacheEngine>("default", "my-cache").await.unwrap();
    assert!(h.fake.take_requests().is_empty());
}

#[tokio::test]
async fn spec_change_reapplies_and_removed_fields_are_dropped() {
    let mut h = Harness::new(true);
    h.create(
        ENGINES,
        "LMCacheEngine",
        "default",
        "my-cache",
        json!({"l1": {"sizeGB": 60}, "podAnnotations": {"a": "1"}}),
    );
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    h.fake.take_requests();
    h.update_spec(
        ENGINES,
        "default",
        "my-cache",
        json!({"l1": {"sizeGB": 60}, "server": {"port": 6555}}),
    );
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    let requests = h.fake.take_requests();
    let written = writes(&requests);
    assert!(written.contains(&"PATCH /apis/apps/v1/namespaces/default/daemonsets/my-cache"));
    assert!(written.contains(&"PATCH /api/v1/namespaces/default/configmaps/my-cache-connection"));
    let a = args(&h, "default", "my-cache");
    assert_eq!(a[2..4], ["--port", "6555"]);
    let ds = h.fake.get("daemonsets", "default", "my-cache").unwrap();
    assert!(ds.pointer("/spec/template/metadata/annotations/a").is_none());
    assert_eq!(h.status(ENGINES, "default", "my-cache")["observedGeneration"], 2);
    assert_eq!(
        h.condition(ENGINES, "default", "my-cache", "Available")["observedGeneration"],
        2
    );
}

#[tokio::test]
async fn undecodable_spec_reports_validation_failed_and_touches_no_child() {
    let mut h = Harness::new(true);
    h.create(
        ENGINES,
        "LMCacheEngine",
        "default",
        "bad",
        json!({"l1": {"sizeGB": "lots"}}),
    );
    let action = h.reconcile_and_sync::<LMCacheEngine>("default", "bad").await;
    assert_eq!(action, Action::await_change());
    let requests = h.fake.take_requests();
    assert_eq!(
        child_writes(&requests),
        ["PATCH /apis/lmcache.lmcache.ai/v1alpha1/namespaces/default/lmcacheengines/bad/status"]
    );
    let status = h.status(ENGINES, "default", "bad");
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["observedGeneration"], 1);
    let valid = h.condition(ENGINES, "default", "bad", "ConfigValid");
    assert_eq!(
        (valid["status"].as_str(), valid["reason"].as_str()),
        (Some("False"), Some("ValidationFailed"))
    );
    assert!(
        valid["message"].as_str().unwrap().contains("spec.l1.sizeGB"),
        "{valid}"
    );
    assert_eq!(event_reasons(&h), ["Warning ValidationFailed"]);
    assert!(h.fake.get("daemonsets", "default", "bad").is_none());
    assert_eq!(h.metrics.reconciles(Kind::Engine, ReconcileResult::Invalid), 1);

    // Again: same generation, same message: no event, no status write.
    h.reconcile::<LMCacheEngine>("default", "bad").await.unwrap();
    assert!(writes(&h.fake.take_requests()).is_empty());
}

#[tokio::test]
async fn invalid_spec_keeps_existing_children_and_recovers_when_fixed() {
    let mut h = converged_engine().await;
    let rv = h
        .fake
        .get("configmaps", "default", "my-cache-connection")
        .unwrap()["metadata"]["resourceVersion"]
        .clone();
    // Two rules broken (behaviour 19).
    h.update_spec(
        ENGINES,
        "default",
        "my-cache",
        json!({"l1": {"sizeGB": 0}, "eviction": {"triggerWatermark": 1.5}}),
    );
    let action = h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert_eq!(action, Action::await_change());
    let valid = h.condition(ENGINES, "default", "my-cache", "ConfigValid");
    assert_eq!(valid["reason"], "ValidationFailed");
    assert_eq!(
        valid["message"],
        "spec.l1.sizeGB: must be greater than 0; spec.eviction.triggerWatermark: must be in (0.0, 1.0]"
    );
    assert_eq!(h.status(ENGINES, "default", "my-cache")["phase"], "Failed");
    assert_eq!(h.status(ENGINES, "default", "my-cache")["observedGeneration"], 2);
    let requests = h.fake.take_requests();
    assert!(
        writes(&requests)
            .iter()
            .all(|w| w.contains("/events") || w.ends_with("/status")),
        "{requests:?}"
    );
    let cm = h
        .fake
        .get("configmaps", "default", "my-cache-connection")
        .unwrap();
    assert_eq!(cm["metadata"]["resourceVersion"], rv);

    h.update_spec(ENGINES, "default", "my-cache", json!({"l1": {"sizeGB": 70}}));
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    let valid = h.condition(ENGINES, "default", "my-cache", "ConfigValid");
    assert_eq!(
        (valid["status"].as_str(), valid["message"].as_str()),
        (Some("True"), Some("Spec validation passed"))
    );
    assert_ne!(h.status(ENGINES, "default", "my-cache")["phase"], "Failed");
}

#[tokio::test]
async fn status_follows_the_daemon_set_and_its_pods() {
    let mut h = converged_engine().await;
    let ds_uid = h.fake.get("daemonsets", "default", "my-cache").unwrap()["metadata"]["uid"].clone();
    let pod = |name: &str, node: &str, ready: bool, owner: &Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("pod-{name}"),
                "labels": {"app.kubernetes.io/name": "lmcache", "app.kubernetes.io/instance": "my-cache",
                           "app.kubernetes.io/managed-by": "lmcache-operator"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "my-cache",
                                     "uid": owner, "controller": true}]},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": "Running", "hostIP": format!("10.0.0.{}", &node[1..]),
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    };
    h.fake.put("pods", pod("my-cache-b", "n2", false, &ds_uid));
    h.fake.put("pods", pod("my-cache-a", "n1", true, &ds_uid));
    h.fake
        .put("pods", pod("stray", "n0", true, &json!("someone-else")));
    h.fake.edit("daemonsets", "default", "my-cache", |d| {
        d["status"] = json!({"desiredNumberScheduled": 2, "numberReady": 1});
    });
    h.sync();
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    let status = h.status(ENGINES, "default", "my-cache");
    assert_eq!(status["phase"], "Degraded");
    assert_eq!(
        (
            status["desiredInstances"].as_i64(),
            status["readyInstances"].as_i64()
        ),
        (Some(2), Some(1))
    );
    let names: Vec<&str> = status["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["podName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["my-cache-a", "my-cache-b"]);
    assert_eq!(status["endpoints"][0]["hostIP"], "10.0.0.1");
    assert_eq!(status["endpoints"][0]["port"], 5555);
    assert_eq!(status["endpoints"][1]["ready"], false);
    let available = h.condition(ENGINES, "default", "my-cache", "Available");
    assert_eq!(available["message"], "1/2 instances ready");
    let since = available["lastTransitionTime"].clone();
    assert_eq!(
        h.condition(ENGINES, "default", "my-cache", "AllInstancesReady")["reason"],
        "NotAllReady"
    );
    h.fake.take_requests();

    // All ready: Running; Available did not flip, so its transition time stays.
    h.fake.edit("daemonsets", "default", "my-cache", |d| {
        d["status"] = json!({"desiredNumberScheduled": 2, "numberReady": 2});
    });
    h.fake.edit("pods", "default", "my-cache-b", |p| {
        p["status"]["conditions"][0]["status"] = json!("True");
    });
    h.sync();
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert_eq!(
        writes(&h.fake.take_requests()),
        ["PATCH /apis/lmcache.lmcache.ai/v1alpha1/namespaces/default/lmcacheengines/my-cache/status"]
    );
    let status = h.status(ENGINES, "default", "my-cache");
    assert_eq!(status["phase"], "Running");
    assert_eq!(status["endpoints"][1]["ready"], true);
    assert_eq!(
        h.condition(ENGINES, "default", "my-cache", "Available")["lastTransitionTime"],
        since
    );
    assert_eq!(
        h.condition(ENGINES, "default", "my-cache", "AllInstancesReady")["reason"],
        "AllReady"
    );

    // Nothing changed: no write.
    h.reconcile::<LMCacheEngine>("default", "my-cache").await.unwrap();
    assert!(h.fake.take_requests().is_empty());
}

#[tokio::test]
async fn coordinator_reference_waits_for_the_coordinator_and_follows_its_port() {
    let mut h = Harness::new(true);
    h.create(
        ENGINES,
        "LMCacheEngine",
        "default",
        "my-cache",
        json!({"l1": {"sizeGB": 60}, "coordinator": {"ref": {"name": "c"}}}),
    );
    h.take_triggers();
    let action = h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert_eq!(action, Action::await_change());
    let valid = h.condition(ENGINES, "default", "my-cache", "ConfigValid");
    assert_eq!(valid["reason"], "CoordinatorNotFound");
    assert_eq!(
        valid["message"],
        "spec.coordinator.ref.name: LMCacheCoordinator \"c\" not found in namespace \"default\""
    );
    assert_eq!(h.status(ENGINES, "default", "my-cache")["phase"], "Failed");
    assert!(h.fake.get("daemonsets", "default", "my-cache").is_none());
    assert_eq!(event_reasons(&h), ["Warning CoordinatorNotFound"]);

    // Creating the coordinator triggers the engine (through the index) and wires it.
    h.take_triggers();
    h.create(
        COORDINATORS,
        "LMCacheCoordinator",
        "default",
        "c",
        json!({"port": 9300}),
    );
    assert!(
        h.take_triggers()
            .contains(&"LMCacheEngine default/my-cache".to_string())
    );
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    let a = args(&h, "default", "my-cache");
    let at = a.iter().position(|x| x == "--coordinator-url").unwrap();
    assert_eq!(a[at + 1], "http://c.default.svc:9300");

    // A port change re-renders the engine.
    h.fake.take_requests();
    h.update_spec(COORDINATORS, "default", "c", json!({"port": 9400}));
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert!(
        writes(&h.fake.take_requests())
            .contains(&"PATCH /apis/apps/v1/namespaces/default/daemonsets/my-cache")
    );
    let a = args(&h, "default", "my-cache");
    assert_eq!(a[at + 1], "http://c.default.svc:9400");
}

#[tokio::test]
async fn coordinators_resolve_per_namespace() {
    let mut h = Harness::new(true);
    for (ns, port) in [("team-a", 9300), ("team-b", 9400)] {
        h.create(
            COORDINATORS,
            "LMCacheCoordinator",
            ns,
            "coord",
            json!({"port": port}),
        );
        h.create(
            ENGINES,
            "LMCacheEngine",
            ns,
            "cache",
            json!({"l1": {"sizeGB": 60}, "coordinator": {"ref": {"name": "coord"}}}),
        );
    }
    h.take_triggers();
    for ns in ["team-a", "team-b"] {
        h.reconcile_and_sync::<LMCacheEngine>(ns, "cache").await;
    }
    assert!(args(&h, "team-a", "cache").contains(&"http://coord.team-a.svc:9300".to_string()));
    assert!(args(&h, "team-b", "cache").contains(&"http://coord.team-b.svc:9400".to_string()));

    // Changing team-b's coordinator triggers only team-b's engine.
    h.update_spec(COORDINATORS, "team-b", "coord", json!({"port": 9500}));
    let triggered: Vec<String> = h
        .take_triggers()
        .into_iter()
        .filter(|t| t.starts_with("LMCacheEngine"))
        .collect();
    // A relist re-triggers everything; the index itself maps per namespace:
    let engines = crate::mapping::engines_of_coordinator(
        &h.ctx.coordinator_index,
        &kube::core::ObjectMeta {
            namespace: Some("team-b".into()),
            name: Some("coord".into()),
            ..Default::default()
        },
    );
    assert_eq!(
        engines,
        [crate::keys::ObjectKey::new(Kind::Engine, "team-b", "cache")]
    );
    assert!(triggered.contains(&"LMCacheEngine team-b/cache".to_string()));
    h.reconcile_and_sync::<LMCacheEngine>("team-b", "cache").await;
    h.reconcile_and_sync::<LMCacheEngine>("team-a", "cache").await;
    assert!(args(&h, "team-b", "cache").contains(&"http://coord.team-b.svc:9500".to_string()));
    assert!(args(&h, "team-a", "cache").contains(&"http://coord.team-a.svc:9300".to_string()));

    // Deleting team-a's coordinator: only team-a's engine reports CoordinatorNotFound.
    h.fake.remove(COORDINATORS, "team-a", "coord");
    h.sync();
    h.reconcile_and_sync::<LMCacheEngine>("team-a", "cache").await;
    h.reconcile_and_sync::<LMCacheEngine>("team-b", "cache").await;
    assert_eq!(
        h.condition(ENGINES, "team-a", "cache", "ConfigValid")["reason"],
        "CoordinatorNotFound"
    );
    assert_eq!(
        h.condition(ENGINES, "team-b", "cache", "ConfigValid")["reason"],
        "Valid"
    );
}

#[tokio::test]
async fn foreign_config_map_is_a_name_conflict() {
    let mut h = Harness::new(true);
    h.fake.put(
        "configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "my-cache-connection", "namespace": "default", "uid": "user-cm",
                            "resourceVersion": "5"},
               "data": {"mine": "yes"}}),
    );
    h.create(ENGINES, "LMCacheEngine", "default", "my-cache", minimal());
    let action = h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert_eq!(action, Action::requeue(CONFLICT_RETRY));
    let valid = h.condition(ENGINES, "default", "my-cache", "ConfigValid");
    assert_eq!(valid["reason"], "NameConflict");
    assert_eq!(
        valid["message"],
        "ConfigMap default/my-cache-connection already exists and is not controlled by this LMCacheEngine"
    );
    assert_eq!(h.status(ENGINES, "default", "my-cache")["phase"], "Failed");
    let requests = h.fake.take_requests();
    assert!(
        writes(&requests)
            .iter()
            .all(|w| w.contains("/events") || w.ends_with("/status")),
        "{requests:?}"
    );
    assert!(h.fake.get("daemonsets", "default", "my-cache").is_none());
    assert_eq!(
        h.fake
            .get("configmaps", "default", "my-cache-connection")
            .unwrap()["data"]["mine"],
        "yes"
    );
    assert_eq!(event_reasons(&h), ["Warning NameConflict"]);
    assert_eq!(h.metrics.reconciles(Kind::Engine, ReconcileResult::Conflict), 1);

    // Retried while the conflict lasts: no new event, no status write.
    h.reconcile::<LMCacheEngine>("default", "my-cache").await.unwrap();
    assert!(writes(&h.fake.take_requests()).is_empty());

    // Once the user's ConfigMap is gone, everything is created.
    h.fake.remove("configmaps", "default", "my-cache-connection");
    h.sync();
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert!(h.fake.get("daemonsets", "default", "my-cache").is_some());
    assert_eq!(
        h.condition(ENGINES, "default", "my-cache", "ConfigValid")["reason"],
        "Valid"
    );
}

#[tokio::test]
async fn same_named_blend_engine_conflicts_and_never_takes_over() {
    let mut h = converged_engine().await;
    let before: Vec<Value> = ["daemonsets", "services", "configmaps"]
        .iter()
        .flat_map(|p| {
            h.fake
                .objects()
                .into_iter()
                .filter(move |((pl, _, _), _)| pl == p)
        })
        .map(|(_, o)| o)
        .collect();
    h.create(BLEND, "CacheBlendEngine", "default", "my-cache", blend_spec());
    let action = h
        .reconcile_and_sync::<CacheBlendEngine>("default", "my-cache")
        .await;
    assert_eq!(action, Action::requeue(CONFLICT_RETRY));
    let valid = h.condition(BLEND, "default", "my-cache", "ConfigValid");
    assert_eq!(valid["reason"], "NameConflict");
    assert_eq!(
        valid["message"],
        "DaemonSet default/my-cache already exists and is not controlled by this CacheBlendEngine; \
         Service default/my-cache already exists and is not controlled by this CacheBlendEngine; \
         Service default/my-cache-metrics already exists and is not controlled by this CacheBlendEngine; \
         ConfigMap default/my-cache-connection already exists and is not controlled by this CacheBlendEngine"
    );
    let after: Vec<Value> = ["daemonsets", "services", "configmaps"]
        .iter()
        .flat_map(|p| {
            h.fake
                .objects()
                .into_iter()
                .filter(move |((pl, _, _), _)| pl == p)
        })
        .map(|(_, o)| o)
        .collect();
    assert_eq!(before, after, "the LMCacheEngine's children are untouched");
    // The LMCacheEngine itself is unaffected.
    h.fake.take_requests();
    h.reconcile::<LMCacheEngine>("default", "my-cache").await.unwrap();
    assert!(h.fake.take_requests().is_empty());
    assert_eq!(
        h.condition(ENGINES, "default", "my-cache", "ConfigValid")["reason"],
        "Valid"
    );
}

#[tokio::test]
async fn service_monitor_waits_for_its_api_then_follows_the_spec() {
    let mut h = Harness::new(false);
    let spec = json!({"l1": {"sizeGB": 60}, "prometheus": {"serviceMonitor": {"enabled": true}}});
    h.create(ENGINES, "LMCacheEngine", "default", "my-cache", spec);
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert!(
        h.fake
            .get("configmaps", "default", "my-cache-connection")
            .is_some()
    );
    assert!(h.fake.get("servicemonitors", "default", "my-cache").is_none());
    let reasons = event_reasons(&h);
    assert!(
        reasons.contains(&"Warning ServiceMonitorUnavailable".to_string()),
        "{reasons:?}"
    );
    assert_eq!(h.status(ENGINES, "default", "my-cache")["phase"], "Pending");
    h.fake.take_requests();
    // Still unavailable: converged, the warning is not repeated.
    h.reconcile::<LMCacheEngine>("default", "my-cache").await.unwrap();
    assert!(h.fake.take_requests().is_empty());

    // The API appears: the ServiceMonitor is created.
    assert!(h.ctx.service_monitor_api.set(true));
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert_eq!(
        child_writes(&h.fake.take_requests()),
        ["PATCH /apis/monitoring.coreos.com/v1/namespaces/default/servicemonitors/my-cache"]
    );
    let sm = h.fake.get("servicemonitors", "default", "my-cache").unwrap();
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    h.reconcile::<LMCacheEngine>("default", "my-cache").await.unwrap();
    assert!(h.fake.take_requests().is_empty());

    // Disabled: deleted because this engine controls it.
    h.update_spec(ENGINES, "default", "my-cache", minimal());
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert!(
        writes(&h.fake.take_requests())
            .contains(&"DELETE /apis/monitoring.coreos.com/v1/namespaces/default/servicemonitors/my-cache")
    );
    assert!(h.fake.get("servicemonitors", "default", "my-cache").is_none());
}

#[tokio::test]
async fn unowned_service_monitor_is_never_deleted() {
    let mut h = Harness::new(true);
    h.fake.put(
        "servicemonitors",
        json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
               "metadata": {"name": "my-cache", "namespace": "default", "uid": "theirs",
                            "labels": {"app.kubernetes.io/managed-by": "lmcache-operator"}},
               "spec": {"selector": {}, "endpoints": []}}),
    );
    h.create(ENGINES, "LMCacheEngine", "default", "my-cache", minimal());
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert!(
        !writes(&h.fake.take_requests())
            .iter()
            .any(|w| w.starts_with("DELETE"))
    );
    assert!(h.fake.get("servicemonitors", "default", "my-cache").is_some());
}

#[tokio::test]
async fn coordinator_children_and_status() {
    let mut h = Harness::new(true);
    h.create(
        COORDINATORS,
        "LMCacheCoordinator",
        "default",
        "my-coordinator",
        json!({"port": 9300}),
    );
    h.reconcile_and_sync::<LMCacheCoordinator>("default", "my-coordinator")
        .await;
    assert_eq!(
        child_writes(&h.fake.take_requests()),
        [
            "PATCH /apis/apps/v1/namespaces/default/deployments/my-coordinator",
            "PATCH /api/v1/namespaces/default/services/my-coordinator",
            "PATCH /apis/lmcache.lmcache.ai/v1alpha1/namespaces/default/lmcachecoordinators/my-coordinator/status",
        ]
    );
    assert_eq!(event_reasons(&h), ["Normal Created"]);
    let status = h.status(COORDINATORS, "default", "my-coordinator");
    assert_eq!(status["endpoint"], "http://my-coordinator.default.svc:9300");
    assert_eq!(status["replicas"], 1);
    assert_eq!(status["phase"], "Pending");

    h.fake.edit("deployments", "default", "my-coordinator", |d| {
        d["status"] = json!({"readyReplicas": 1});
    });
    h.sync();
    h.reconcile_and_sync::<LMCacheCoordinator>("default", "my-coordinator")
        .await;
    let status = h.status(COORDINATORS, "default", "my-coordinator");
    assert_eq!(status["phase"], "Running");
    assert_eq!(status["readyReplicas"], 1);
    let available = h.condition(COORDINATORS, "default", "my-coordinator", "Available");
    assert_eq!(available["message"], "1/1 replicas ready");
    h.fake.take_requests();
    h.reconcile::<LMCacheCoordinator>("default", "my-coordinator")
        .await
        .unwrap();
    assert!(h.fake.take_requests().is_empty());

    // Metrics on, then off again: metrics Service and ServiceMonitor created, then deleted.
    let on = json!({"port": 9300, "prometheus": {"serviceMonitor": {"enabled": true}}});
    h.update_spec(COORDINATORS, "default", "my-coordinator", on);
    h.reconcile_and_sync::<LMCacheCoordinator>("default", "my-coordinator")
        .await;
    assert!(
        h.fake
            .get("services", "default", "my-coordinator-metrics")
            .is_some()
    );
    assert!(
        h.fake
            .get("servicemonitors", "default", "my-coordinator")
            .is_some()
    );
    h.update_spec(COORDINATORS, "default", "my-coordinator", json!({"port": 9300}));
    h.reconcile_and_sync::<LMCacheCoordinator>("default", "my-coordinator")
        .await;
    assert!(
        h.fake
            .get("services", "default", "my-coordinator-metrics")
            .is_none()
    );
    assert!(
        h.fake
            .get("servicemonitors", "default", "my-coordinator")
            .is_none()
    );
}

#[tokio::test]
async fn same_names_in_two_namespaces_are_independent() {
    let mut h = Harness::new(true);
    h.create(
        ENGINES,
        "LMCacheEngine",
        "team-a",
        "cache",
        json!({"l1": {"sizeGB": 0}}),
    );
    h.create(
        ENGINES,
        "LMCacheEngine",
        "team-b",
        "cache",
        json!({"l1": {"sizeGB": 60}, "server": {"port": 6555}}),
    );
    h.reconcile_and_sync::<LMCacheEngine>("team-a", "cache").await;
    h.reconcile_and_sync::<LMCacheEngine>("team-b", "cache").await;
    assert_eq!(
        h.condition(ENGINES, "team-a", "cache", "ConfigValid")["reason"],
        "ValidationFailed"
    );
    assert_eq!(
        h.condition(ENGINES, "team-b", "cache", "ConfigValid")["reason"],
        "Valid"
    );
    assert!(h.fake.get("configmaps", "team-a", "cache-connection").is_none());
    let cm = h.fake.get("configmaps", "team-b", "cache-connection").unwrap();
    let json = cm["data"]["kv-transfer-config.json"].as_str().unwrap();
    assert!(json.contains("tcp://cache.team-b.svc.cluster.local"), "{json}");
    assert!(json.contains("\"6555\""), "{json}");

    h.update_spec(ENGINES, "team-a", "cache", json!({"l1": {"sizeGB": 60}}));
    h.reconcile_and_sync::<LMCacheEngine>("team-a", "cache").await;
    let cm = h.fake.get("configmaps", "team-a", "cache-connection").unwrap();
    let json = cm["data"]["kv-transfer-config.json"].as_str().unwrap();
    assert!(json.contains("tcp://cache.team-a.svc.cluster.local"), "{json}");
    assert!(json.contains("\"5555\""), "{json}");
}

#[tokio::test]
async fn recreated_engine_never_adopts_old_children() {
    let mut h = converged_engine().await;
    // Deleted and re-created with the same name before garbage collection ran: new UID.
    h.fake.remove(ENGINES, "default", "my-cache");
    h.sync();
    h.fake.put(
        ENGINES,
        json!({"apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": "LMCacheEngine",
               "metadata": {"name": "my-cache", "namespace": "default", "uid": "second-incarnation",
                            "generation": 1},
               "spec": {"l1": {"sizeGB": 70}}}),
    );
    h.sync();
    let action = h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert_eq!(action, Action::requeue(CONFLICT_RETRY));
    assert_eq!(
        h.condition(ENGINES, "default", "my-cache", "ConfigValid")["reason"],
        "NameConflict"
    );
    let ds = h.fake.get("daemonsets", "default", "my-cache").unwrap();
    assert_eq!(
        ds["metadata"]["ownerReferences"][0]["uid"],
        "uid-default-my-cache-LMCacheEngine"
    );
    // The new incarnation got its own NameConflict event (per-UID state).
    assert_eq!(event_reasons(&h), ["Warning NameConflict"]);
}

#[tokio::test]
async fn blend_tunables_without_blend_lookup_are_reported_once() {
    let mut h = Harness::new(true);
    let spec = json!({"blendChunkSize": 256, "blendProbeStride": 4});
    h.create(COORDINATORS, "LMCacheCoordinator", "default", "c", spec);
    h.reconcile_and_sync::<LMCacheCoordinator>("default", "c").await;
    let events = h.fake.take_events();
    let lookup: Vec<&Value> = events
        .iter()
        .filter(|e| e["reason"] == "BlendLookupDisabled")
        .collect();
    assert_eq!(lookup.len(), 1, "{events:?}");
    assert_eq!(lookup[0]["type"], "Normal");
    assert_eq!(
        lookup[0]["note"],
        "spec.blendChunkSize and spec.blendProbeStride have no effect while spec.blendLookup is false"
    );
    // The args are still rendered (they are valid), and a second reconcile says nothing new.
    let d = h.fake.get("deployments", "default", "c").unwrap();
    let args = d["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("\"--chunk-size\",\"256\"") && !args.contains("--enable-blend-lookup"));
    h.reconcile_and_sync::<LMCacheCoordinator>("default", "c").await;
    assert!(h.fake.take_events().is_empty());

    // With the directory on there is nothing to report.
    let on = json!({"blendChunkSize": 256, "blendProbeStride": 4, "blendLookup": true});
    h.update_spec(COORDINATORS, "default", "c", on);
    h.reconcile_and_sync::<LMCacheCoordinator>("default", "c").await;
    let reasons = event_reasons(&h);
    assert!(
        !reasons.iter().any(|r| r.contains("BlendLookupDisabled")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn an_object_being_deleted_gets_no_write_and_no_requeue() {
    let mut h = converged_engine().await;
    // Foreground deletion: the garbage collector removes the children first.
    h.fake.edit(ENGINES, "default", "my-cache", |o| {
        o["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:00:00Z");
        o["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
    });
    h.fake.remove("configmaps", "default", "my-cache-connection");
    h.fake.remove("services", "default", "my-cache");
    h.sync();
    let action = h.reconcile::<LMCacheEngine>("default", "my-cache").await.unwrap();
    assert_eq!(action, Action::await_change());
    assert!(writes(&h.fake.take_requests()).is_empty());
    assert!(
        h.fake
            .get("configmaps", "default", "my-cache-connection")
            .is_none()
    );
}

#[tokio::test]
async fn a_rejected_child_is_reported_and_the_others_still_apply() {
    let mut h = Harness::new(true);
    let message = "DaemonSet.apps \"my-cache\" is invalid: spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"missing\"";
    h.fake.reject("daemonsets", "my-cache", 422, message);
    h.create(ENGINES, "LMCacheEngine", "default", "my-cache", minimal());
    let result = h.reconcile::<LMCacheEngine>("default", "my-cache").await;
    assert!(result.is_err(), "retried with backoff");
    h.sync();
    // The Services and the ConfigMap exist; the status says why the engine is not Running.
    for (plural, name) in [
        ("services", "my-cache"),
        ("services", "my-cache-metrics"),
        ("configmaps", "my-cache-connection"),
    ] {
        assert!(h.fake.get(plural, "default", name).is_some(), "{plural}/{name}");
    }
    let status = h.status(ENGINES, "default", "my-cache");
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["observedGeneration"], 1);
    let ready = h.condition(ENGINES, "default", "my-cache", "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "ApplyFailed");
    assert_eq!(ready["message"], format!("DaemonSet default/my-cache: {message}"));
    assert_eq!(
        h.condition(ENGINES, "default", "my-cache", "ConfigValid")["status"],
        "True"
    );
    let events = h.fake.take_events();
    let failed: Vec<&Value> = events.iter().filter(|e| e["reason"] == "ApplyFailed").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["type"], "Warning");
    assert_eq!(failed[0]["note"], ready["message"]);

    // The same failure again: no second Event, no status write.
    h.fake.take_requests();
    assert!(h.reconcile::<LMCacheEngine>("default", "my-cache").await.is_err());
    let requests = h.fake.take_requests();
    let w = writes(&requests);
    assert!(w.iter().all(|w| w.contains("/daemonsets/")), "{w:?}");
    assert!(h.fake.take_events().is_empty());

    // Fixed (the policy changed): the DaemonSet is created and the phase recovers.
    h.fake.accept("daemonsets", "my-cache");
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert!(h.fake.get("daemonsets", "default", "my-cache").is_some());
    let status = h.status(ENGINES, "default", "my-cache");
    assert_eq!(status["phase"], "Pending");
    assert_eq!(
        h.condition(ENGINES, "default", "my-cache", "Ready")["reason"],
        "Pending"
    );
}

#[tokio::test]
async fn a_rejected_service_monitor_never_blocks_the_status() {
    let mut h = Harness::new(true);
    h.fake
        .reject("servicemonitors", "my-cache", 403, "denied by policy");
    let spec = json!({"l1": {"sizeGB": 60}, "prometheus": {"serviceMonitor": {"enabled": true}}});
    h.create(ENGINES, "LMCacheEngine", "default", "my-cache", spec);
    assert!(h.reconcile::<LMCacheEngine>("default", "my-cache").await.is_err());
    h.sync();
    h.fake.edit("daemonsets", "default", "my-cache", |d| {
        d["status"] = json!({"desiredNumberScheduled": 1, "numberReady": 1});
    });
    h.sync();
    assert!(h.reconcile::<LMCacheEngine>("default", "my-cache").await.is_err());
    h.sync();
    let status = h.status(ENGINES, "default", "my-cache");
    assert_eq!(status["phase"], "Running");
    let ready = h.condition(ENGINES, "default", "my-cache", "Ready");
    assert_eq!(ready["status"], "True");
    assert_eq!(
        ready["message"],
        "1/1 instances ready; ServiceMonitor default/my-cache: denied by policy"
    );
}

#[tokio::test]
async fn a_terminating_namespace_stops_without_status_or_retry() {
    let mut h = Harness::new(true);
    h.fake.reject(
        "daemonsets",
        "my-cache",
        403,
        "daemonsets.apps \"my-cache\" is forbidden: unable to create new content in namespace default because it is being terminated",
    );
    h.create(ENGINES, "LMCacheEngine", "default", "my-cache", minimal());
    let action = h.reconcile::<LMCacheEngine>("default", "my-cache").await.unwrap();
    assert_eq!(action, Action::await_change());
    let requests = h.fake.take_requests();
    let w = writes(&requests);
    // The children are applied together; after the refusal nothing else is written (no
    // status, no Event) and nothing is retried.
    assert_eq!(
        w,
        [
            "PATCH /apis/apps/v1/namespaces/default/daemonsets/my-cache",
            "PATCH /api/v1/namespaces/default/services/my-cache",
            "PATCH /api/v1/namespaces/default/services/my-cache-metrics",
            "PATCH /api/v1/namespaces/default/configmaps/my-cache-connection",
        ]
    );
}

/// A child watch that lists late (the ServiceMonitor one when its API appears) or relists after
/// an error cannot see what was deleted before: every custom resource is reconciled after its
/// list, so a ServiceMonitor deleted in that gap is recreated at once, not at the next resync.
#[tokio::test]
async fn a_child_list_reconciles_every_custom_resource() {
    use crate::watches::child_hook;
    use kube::core::{ApiResource, DynamicObject};
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    let mut h = converged_engine().await;
    h.create(COORDINATORS, "LMCacheCoordinator", "team-a", "c", json!({}));
    h.take_triggers();
    let writer = Writer::<DynamicObject>::new(ApiResource::erase::<LMCacheEngine>(&()));
    let mut hook = child_hook(
        crate::children::ChildKind::ServiceMonitor,
        h.triggers.clone(),
        h.ctx.stores.clone(),
    );
    hook(&Event::Init, &writer.as_reader());
    assert!(h.take_triggers().is_empty());
    hook(&Event::InitDone, &writer.as_reader());
    assert_eq!(
        h.take_triggers(),
        ["LMCacheCoordinator team-a/c", "LMCacheEngine default/my-cache"]
    );
}

/// Fan-out: a coordinator's status write re-reconciles none of its engines; a port change (the
/// URL they render) does.
#[tokio::test]
async fn only_a_coordinator_change_of_its_url_reconciles_its_engines() {
    use crate::watches::primary_hook;
    use kube::core::DeserializeGuard;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    let mut h = Harness::new(true);
    h.create(
        COORDINATORS,
        "LMCacheCoordinator",
        "default",
        "c",
        json!({"port": 9300}),
    );
    let engine = json!({"l1": {"sizeGB": 60}, "coordinator": {"ref": {"name": "c"}}});
    h.create(ENGINES, "LMCacheEngine", "default", "e", engine);
    h.take_triggers();
    let mut hook = primary_hook::<LMCacheCoordinator>(h.ctx.clone(), h.triggers.clone());
    let store = Writer::<DeserializeGuard<LMCacheCoordinator>>::default().as_reader();
    let coordinator = |port: i32, phase: &str| -> DeserializeGuard<LMCacheCoordinator> {
        serde_json::from_value(json!({
            "apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": "LMCacheCoordinator",
            "metadata": {"name": "c", "namespace": "default", "uid": "uid-c"},
            "spec": {"port": port}, "status": {"phase": phase}
        }))
        .unwrap()
    };
    hook(&Event::Apply(coordinator(9300, "Pending")), &store);
    hook(&Event::Apply(coordinator(9300, "Running")), &store);
    assert_eq!(h.take_triggers(), ["LMCacheCoordinator default/c"]);
    hook(&Event::Apply(coordinator(9400, "Running")), &store);
    assert_eq!(
        h.take_triggers(),
        ["LMCacheCoordinator default/c", "LMCacheEngine default/e"]
    );
    hook(&Event::Delete(coordinator(9400, "Running")), &store);
    assert_eq!(h.take_triggers(), ["LMCacheEngine default/e"]);
}

/// Status writes from creation to Running with 3 pods are coalesced: `Running` at once, the
/// first status and the steps after it only once they settle (1 s), so a fast start is one write.
#[tokio::test(start_paused = true)]
async fn status_writes_are_coalesced_while_pods_come_up() {
    use std::time::Duration;
    let mut h = Harness::with_status_coalescing();
    h.create(ENGINES, "LMCacheEngine", "default", "my-cache", minimal());
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    let ds_uid = h.fake.get("daemonsets", "default", "my-cache").unwrap()["metadata"]["uid"].clone();
    let status_writes =
        |requests: &[String]| writes(requests).iter().filter(|w| w.ends_with("/status")).count();
    let mut total = status_writes(&h.fake.take_requests());
    assert_eq!(total, 0, "a new engine's first status waits to settle");
    let pod = |name: &str, node: &str, ready: bool| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("pod-{name}"),
                "labels": {"app.kubernetes.io/name": "lmcache", "app.kubernetes.io/instance": "my-cache",
                           "app.kubernetes.io/managed-by": "lmcache-operator"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "my-cache",
                                     "uid": ds_uid, "controller": true}]},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    };
    // Pods appear and become ready one after another, 200 ms apart.
    for ready in 0..=3 {
        for (i, node) in ["n0", "n1", "n2"].iter().enumerate() {
            h.fake.put("pods", pod(&format!("my-cache-{i}"), node, i < ready));
        }
        h.fake.edit("daemonsets", "default", "my-cache", |d| {
            d["status"] = json!({"desiredNumberScheduled": 3, "numberReady": ready});
        });
        h.sync();
        let action = h.reconcile::<LMCacheEngine>("default", "my-cache").await.unwrap();
        h.sync();
        total += status_writes(&h.fake.take_requests());
        if ready < 3 {
            assert_eq!(
                action,
                Action::requeue(Duration::from_secs(1)),
                "step {ready} waits"
            );
        }
        tokio::time::advance(Duration::from_millis(200)).await;
    }
    assert_eq!(h.status(ENGINES, "default", "my-cache")["phase"], "Running");
    assert_eq!(total, 1, "Running only");

    // A stuck intermediate status is written once it has been unchanged for 1 s.
    h.fake.edit("daemonsets", "default", "my-cache", |d| {
        d["status"] = json!({"desiredNumberScheduled": 3, "numberReady": 2});
    });
    h.fake.put("pods", pod("my-cache-2", "n2", false));
    h.sync();
    let action = h.reconcile::<LMCacheEngine>("default", "my-cache").await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
    assert_eq!(status_writes(&h.fake.take_requests()), 0);
    tokio::time::advance(Duration::from_secs(1)).await;
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert_eq!(status_writes(&h.fake.take_requests()), 1);
    assert_eq!(h.status(ENGINES, "default", "my-cache")["phase"], "Degraded");

    // An engine whose pods do not come: its first status is written once it settled.
    h.create(ENGINES, "LMCacheEngine", "default", "slow", minimal());
    let action = h.reconcile::<LMCacheEngine>("default", "slow").await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
    h.sync();
    assert_eq!(status_writes(&h.fake.take_requests()), 0);
    tokio::time::advance(Duration::from_secs(1)).await;
    h.reconcile_and_sync::<LMCacheEngine>("default", "slow").await;
    assert_eq!(status_writes(&h.fake.take_requests()), 1);
    assert_eq!(h.status(ENGINES, "default", "slow")["phase"], "Pending");
}

/// The `RolloutStarted` Events sent since the last take.
fn rollout_messages(h: &Harness) -> Vec<String> {
    h.fake
        .take_events()
        .iter()
        .filter(|e| e["reason"] == "RolloutStarted")
        .map(|e| e["note"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// L4: a template change for the same generation is an operator upgrade; one with a new
/// generation is a spec change. The DaemonSet as an earlier operator version left it stands for
/// that version's renderer output: the same engine generation (its annotation), another template.
#[tokio::test]
async fn l4_rollout_started_tells_an_operator_upgrade_from_a_spec_change() {
    let mut h = converged_engine().await;
    let ds = h.fake.get("daemonsets", "default", "my-cache").unwrap();
    assert_eq!(ds["metadata"]["annotations"]["lmcache.ai/engine-generation"], "1");
    assert_eq!(
        ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"],
        "1"
    );

    // What the previous operator version rendered for generation 1: other args.
    h.fake.edit("daemonsets", "default", "my-cache", |d| {
        d["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["--old-default"]);
    });
    h.sync();
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert_eq!(
        rollout_messages(&h),
        [
            "DaemonSet my-cache: the operator rendered a different pod template for the same generation 1 (operator upgrade, or an edit of the DaemonSet reverted); RollingUpdate: at most 1 engine pods unavailable at a time"
        ]
    );
    // Re-applying the same template is not a rollout.
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert!(rollout_messages(&h).is_empty());

    // A spec change that changes the template names both generations.
    h.update_spec(
        ENGINES,
        "default",
        "my-cache",
        json!({"l1": {"sizeGB": 61}, "updateStrategy": {"type": "OnDelete"}}),
    );
    h.reconcile_and_sync::<LMCacheEngine>("default", "my-cache").await;
    assert_eq!(
        rollout_messages(&h),
        [
            "DaemonSet my-cache: generation 1 -> 2 changed the pod template; OnDelete: each engine pod is replaced when it is deleted"
        ]
    );
    let ds = h.fake.get("daemonsets", "default", "my-cache").unwrap();
    assert_eq!(ds["metadata"]["annotations"]["lmcache.ai/engine-generation"], "2");
}

/// After a relist every custom resource is reconciled, but as a resync: queued behind changes
/// (the controllers get at most a few at a time). A change goes to its controller at once, and
/// so does an engine whose spec changed while nobody watched (its generation is ahead of its
/// `observedGeneration`).
#[tokio::test]
async fn relist_reconciles_are_resyncs_queued_behind_changes() {
    let mut h = converged_engine().await;
    h.create(ENGINES, "LMCacheEngine", "default", "unseen", minimal());
    h.update_spec(ENGINES, "default", "my-cache", json!({"l1": {"sizeGB": 61}}));
    h.create(ENGINES, "LMCacheEngine", "team-a", "steady", minimal());
    h.reconcile_and_sync::<LMCacheEngine>("team-a", "steady").await;
    h.take_triggers();

    // A relist of every watch (the operator restarted).
    h.sync();
    let mut direct = Vec::new();
    while let Ok(r) = h.streams.engines.try_recv() {
        direct.push(format!("{}/{}", r.namespace.unwrap_or_default(), r.name));
    }
    direct.sort();
    direct.dedup();
    assert_eq!(direct, ["default/my-cache", "default/unseen"]);
    let mut queued = Vec::new();
    while let Some(key) = h.ctx.resyncs.try_next() {
        h.ctx.resyncs.done(&key);
        queued.push(key.to_string());
    }
    // The two changed ones may be queued too (a child list asks for everything); the steady
    // engine is only there.
    assert!(
        queued.contains(&"LMCacheEngine team-a/steady".to_string()),
        "{queued:?}"
    );
    assert_eq!(queued.len(), 3, "each key once: {queued:?}");
}

/// The watch lags the apply: a reconcile queued meanwhile (by another child's event) finds the
/// children missing from its caches. It reads the apply's responses instead (no GET), applies
/// nothing again and announces no `Updated` for children it has just created.
#[tokio::test]
async fn a_reconcile_before_the_watch_catches_up_reapplies_nothing() {
    let mut h = Harness::new(true);
    h.create(ENGINES, "LMCacheEngine", "default", "my-cache", minimal());
    h.reconcile::<LMCacheEngine>("default", "my-cache").await.unwrap();
    assert_eq!(event_reasons(&h), ["Normal Created"]);
    assert_eq!(h.ctx.stores.applied.len(), 4);
    h.fake.take_requests();
    // No sync: the child caches are still empty.
    h.reconcile::<LMCacheEngine>("default", "my-cache").await.unwrap();
    let requests = h.fake.take_requests();
    // Only the status again (the engine's own cache has not seen the first write either).
    assert!(
        requests
            .iter()
            .all(|r| r.starts_with("PATCH ") && r.ends_with("/status")),
        "{requests:?}"
    );
    assert!(event_reasons(&h).is_empty());
    h.sync();
    assert_eq!(h.ctx.stores.applied.len(), 0);
    h.reconcile::<LMCacheEngine>("default", "my-cache").await.unwrap();
    assert!(h.fake.take_requests().is_empty());
}
