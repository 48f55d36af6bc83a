//! behaviours.md §B on the real control plane: the children of an LMCacheEngine, their labels,
//! owner references and pod template, spec updates (port, image, env, annotations) and garbage
//! collection on delete. The operator runs as a local process started by `cargo xtask e2e`.

use lmcache_e2e::crd::Kind;
use lmcache_e2e::json::assert_contains;
use lmcache_e2e::objects::{
    Res, Scope, args, assert_controlled_by, borrowed, container, engine_children, engine_connection_json,
    labels, minimal_engine_args, selector_labels, standard_labels, string_map,
};
use lmcache_e2e::{Cluster, TempNamespace, settings};
use serde_json::{Value, json};

async fn scope(prefix: &str) -> anyhow::Result<(Scope, TempNamespace)> {
    settings::operator_health()?;
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, prefix).await?;
    Ok((Scope::new(&cluster, &namespace), namespace))
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn b23_to_b27_b29_b41_to_b45_b52_b53_children_labels_owners_and_templates() -> anyhow::Result<()> {
    let (s, _ns) = scope("b23-children").await?;
    let name = "my-cache";
    s.apply_cr(Kind::Engine, name, &Kind::Engine.minimal_spec())
        .await?;
    let children = engine_children(name);
    let found = s.wait_exist(&borrowed(&children)).await?;
    let engine = s.must_get(Res::Cr(Kind::Engine), name).await?;
    assert!(
        engine["metadata"]["finalizers"].is_null(),
        "the engine must never get a finalizer: {}",
        engine["metadata"]
    );

    // B24: four standard labels and exactly one controller owner reference on every child.
    for child in &found {
        assert_eq!(
            labels(child),
            standard_labels(Kind::Engine, name),
            "{}",
            child["metadata"]["name"]
        );
        assert_controlled_by(child, Kind::Engine, &engine)?;
    }
    let [ds, svc, metrics, cm] = [&found[0], &found[1], &found[2], &found[3]];

    // B25: selector = the three selector labels, pod template labels = the four standard ones.
    assert_eq!(
        string_map(&ds["spec"]["selector"]["matchLabels"]),
        selector_labels("lmcache", name)
    );
    assert_eq!(
        ds["spec"]["selector"].as_object().map(|o| o.len()),
        Some(1),
        "selector has only matchLabels: {}",
        ds["spec"]["selector"]
    );
    let template = &ds["spec"]["template"];
    assert_eq!(
        string_map(&template["metadata"]["labels"]),
        standard_labels(Kind::Engine, name)
    );

    // B26: hostIPC, runtime class, default nodeSelector, no /dev/shm volume or mount.
    let pod = &template["spec"];
    assert_eq!(pod["hostIPC"], true);
    assert_eq!(pod["runtimeClassName"], "nvidia");
    assert_eq!(pod["nodeSelector"], json!({"nvidia.com/gpu.present": "true"}));
    assert!(pod["volumes"].is_null(), "no volumes: {}", pod["volumes"]);
    let c = container(ds);
    assert!(c["volumeMounts"].is_null(), "no mounts: {}", c["volumeMounts"]);

    // B27: one privileged container `lmcache`, image, pull policy, command, no GPU resources.
    assert_eq!(pod["containers"].as_array().map(Vec::len), Some(1));
    assert_eq!(c["name"], "lmcache");
    assert_eq!(c["securityContext"], json!({"privileged": true}));
    assert_eq!(c["image"], "lmcache/vllm-openai:latest");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["command"], json!(["/opt/venv/bin/lmcache", "server"]));
    assert!(!c["resources"].to_string().contains("nvidia.com/gpu"));

    // B29, B41, B43, B44, B45: args, env, ports, probes and resources as applied to the cluster.
    assert_eq!(args(ds), minimal_engine_args(5555));
    assert_eq!(
        c["env"],
        json!([
            {"name": "LMCACHE_LOG_LEVEL", "value": "INFO"},
            {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
            {"name": "PYTHONHASHSEED", "value": "0"}
        ])
    );
    assert_eq!(
        c["ports"],
        json!([
            {"name": "server", "containerPort": 5555, "protocol": "TCP"},
            {"name": "http", "containerPort": 8080, "protocol": "TCP"}
        ])
    );
    assert_contains(
        c,
        &json!({
            "startupProbe": {"tcpSocket": {"port": 5555}, "initialDelaySeconds": 5, "periodSeconds": 5, "failureThreshold": 30},
            "livenessProbe": {"tcpSocket": {"port": 5555}, "periodSeconds": 10},
            "readinessProbe": {"tcpSocket": {"port": 5555}, "periodSeconds": 5}
        }),
    )?;
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "4", "memory": "65Gi"}, "limits": {"memory": "98Gi"}})
    );

    // B52: the lookup and the metrics Service.
    assert_contains(
        svc,
        &json!({"spec": {
            "type": "ClusterIP",
            "internalTrafficPolicy": "Local",
            "ports": [{"name": "server", "port": 5555, "targetPort": 5555, "protocol": "TCP"}]
        }}),
    )?;
    assert_eq!(
        string_map(&svc["spec"]["selector"]),
        selector_labels("lmcache", name)
    );
    assert_contains(
        metrics,
        &json!({"spec": {
            "clusterIP": "None",
            "ports": [{"name": "metrics", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
        }}),
    )?;
    assert_eq!(
        string_map(&metrics["spec"]["selector"]),
        selector_labels("lmcache", name)
    );

    // B53: exactly one data key, byte for byte the engine.md §6 JSON.
    let data = cm["data"].as_object().cloned().unwrap_or_default();
    assert_eq!(data.len(), 1, "data keys: {:?}", data.keys());
    assert_eq!(
        data.get("kv-transfer-config.json").and_then(Value::as_str),
        Some(engine_connection_json(name, &s.ns, 5555).as_str())
    );
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn b60_server_port_change_reaches_args_probes_service_configmap_and_endpoints() -> anyhow::Result<()> {
    let (s, _ns) = scope("b60-port").await?;
    let name = "my-cache";
    s.apply_cr(Kind::Engine, name, &Kind::Engine.minimal_spec())
        .await?;
    s.wait_running(Kind::Engine, name, 3).await?;

    s.apply_cr(
        Kind::Engine,
        name,
        &json!({"l1": {"sizeGB": 60}, "server": {"port": 6555}}),
    )
    .await?;
    let ds = s
        .wait("DaemonSet args with --port 6555", || async {
            let ds = s.must_get(Res::DaemonSet, name).await?;
            Ok((args(&ds) == minimal_engine_args(6555)).then_some(ds))
        })
        .await?;
    let c = container(&ds);
    assert_eq!(
        c["ports"][0],
        json!({"name": "server", "containerPort": 6555, "protocol": "TCP"})
    );
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["tcpSocket"], json!({"port": 6555}), "{probe}");
    }
    s.wait("Service and ConfigMap on 6555", || async {
        let svc = s.must_get(Res::Service, name).await?;
        let cm = s.must_get(Res::ConfigMap, &format!("{name}-connection")).await?;
        let svc_ok = svc["spec"]["ports"]
            == json!([{"name": "server", "port": 6555, "targetPort": 6555, "protocol": "TCP"}]);
        let cm_ok = cm["data"]["kv-transfer-config.json"] == engine_connection_json(name, &s.ns, 6555);
        Ok((svc_ok && cm_ok).then_some(()))
    })
    .await?;
    let engine = s
        .wait_status(Kind::Engine, name, "3 endpoints on port 6555", |st| {
            st["observedGeneration"] == 2
                && st["endpoints"]
                    .as_array()
                    .is_some_and(|e| e.len() == 3 && e.iter().all(|e| e["port"] == 6555))
        })
        .await?;
    assert_eq!(engine["metadata"]["generation"], 2);
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn b28_b66_spec_updates_change_the_image_and_remove_env_and_annotations() -> anyhow::Result<()> {
    let (s, _ns) = scope("b66-update").await?;
    let name = "upd";
    let first = json!({
        "l1": {"sizeGB": 60},
        "image": {"repository": "lmcache/standalone", "tag": "v0.1.0", "pullPolicy": "Always"},
        "env": [{"name": "FOO", "value": "bar"}, {"name": "DROP_ME", "value": "1"}],
        "podAnnotations": {"keep": "1", "drop": "2"}
    });
    s.apply_cr(Kind::Engine, name, &first).await?;
    let ds = s.wait_exist(&[(Res::DaemonSet, name)]).await?.remove(0);
    assert_eq!(container(&ds)["image"], "lmcache/standalone:v0.1.0");
    assert_eq!(container(&ds)["imagePullPolicy"], "Always");
    assert_eq!(
        ds["spec"]["template"]["metadata"]["annotations"],
        json!({"keep": "1", "drop": "2"})
    );

    // B66: the second apply drops one env entry and one annotation; B28: a new tag.
    let second = json!({
        "l1": {"sizeGB": 60},
        "image": {"repository": "lmcache/standalone", "tag": "v0.2.0", "pullPolicy": "Always"},
        "env": [{"name": "FOO", "value": "bar"}],
        "podAnnotations": {"keep": "1"}
    });
    s.apply_cr(Kind::Engine, name, &second).await?;
    let expected_env = json!([
        {"name": "LMCACHE_LOG_LEVEL", "value": "INFO"},
        {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
        {"name": "PYTHONHASHSEED", "value": "0"},
        {"name": "FOO", "value": "bar"}
    ]);
    s.wait(
        "image v0.2.0, env without DROP_ME, annotation `drop` removed",
        || async {
            let ds = s.must_get(Res::DaemonSet, name).await?;
            let c = container(&ds);
            let done = c["image"] == "lmcache/standalone:v0.2.0"
                && c["env"] == expected_env
                && ds["spec"]["template"]["metadata"]["annotations"] == json!({"keep": "1"});
            if done {
                Ok(Some(()))
            } else {
                anyhow::bail!(
                    "image {}, env {}, annotations {}",
                    c["image"],
                    c["env"],
                    ds["spec"]["template"]["metadata"]["annotations"]
                )
            }
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn b61_deleting_the_engine_garbage_collects_every_child() -> anyhow::Result<()> {
    let (s, _ns) = scope("b61-gc").await?;
    let name = "gc-cache";
    s.apply_cr(Kind::Engine, name, &Kind::Engine.minimal_spec())
        .await?;
    let children = engine_children(name);
    let found = s.wait_exist(&borrowed(&children)).await?;
    let engine = s.must_get(Res::Cr(Kind::Engine), name).await?;
    for child in &found {
        assert_controlled_by(child, Kind::Engine, &engine)?;
    }
    s.wait_running(Kind::Engine, name, 3).await?;
    let pods = s
        .list(Res::Pod, &format!("app.kubernetes.io/instance={name}"))
        .await?;
    assert_eq!(pods.len(), 3);

    s.delete(Res::Cr(Kind::Engine), name).await?;
    // No finalizer: the engine disappears at once, then the garbage collector removes the
    // children (and the DaemonSet's pods).
    s.wait_gone(&[(Res::Cr(Kind::Engine), name)]).await?;
    s.wait_gone(&borrowed(&children)).await?;
    s.wait("engine pods to be deleted", || async {
        let left = s
            .list(Res::Pod, &format!("app.kubernetes.io/instance={name}"))
            .await?;
        Ok(left
            .iter()
            .all(|p| !p["metadata"]["deletionTimestamp"].is_null())
            .then_some(()))
    })
    .await?;
    Ok(())
}

/// B48/B51 as stored on the cluster: a custom nodeSelector and pod labels that try to change the
/// selector labels (only the component label may change).
#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn b51_pod_labels_cannot_change_the_selector_labels() -> anyhow::Result<()> {
    let (s, _ns) = scope("b51-labels").await?;
    let name = "lbl";
    s.apply_cr(
        Kind::Engine,
        name,
        &json!({
            "l1": {"sizeGB": 60},
            "podAnnotations": {"prometheus.io/scrape": "true"},
            "podLabels": {"team": "a", "app.kubernetes.io/instance": "evil", "app.kubernetes.io/component": "custom"}
        }),
    )
    .await?;
    let ds = s.wait_exist(&[(Res::DaemonSet, name)]).await?.remove(0);
    let template = &ds["spec"]["template"]["metadata"];
    let mut expected = selector_labels("lmcache", name);
    expected.insert("app.kubernetes.io/component".into(), "custom".into());
    expected.insert("team".into(), "a".into());
    assert_eq!(string_map(&template["labels"]), expected);
    assert_eq!(template["annotations"], json!({"prometheus.io/scrape": "true"}));
    // The pods still match the selector: the engine becomes Running.
    s.wait_running(Kind::Engine, name, 3).await?;
    assert_eq!(args(&ds), minimal_engine_args(5555));
    Ok(())
}
