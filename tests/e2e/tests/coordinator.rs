//! behaviours.md §G (the coordinator's Deployment, Service, status and `kubectl get lmcc`) and
//! the engine side of coordinator references (B38-B40) on the real control plane.

use lmcache_e2e::crd::Kind;
use lmcache_e2e::json::assert_contains;
use lmcache_e2e::objects::{
    Res, Scope, args, assert_controlled_by, condition, container, labels, owned, standard_labels,
};
use lmcache_e2e::{Cluster, TempNamespace, settings};
use serde_json::json;

async fn scope(prefix: &str) -> anyhow::Result<(Scope, TempNamespace)> {
    settings::operator_health()?;
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, prefix).await?;
    Ok((Scope::new(&cluster, &namespace), namespace))
}

/// The DaemonSet's `--coordinator-url` value, if any.
async fn coordinator_url(s: &Scope, engine: &str) -> anyhow::Result<Option<String>> {
    let Some(ds) = s.get(Res::DaemonSet, engine).await? else {
        return Ok(None);
    };
    let args = args(&ds);
    Ok(args
        .iter()
        .position(|a| a == "--coordinator-url")
        .and_then(|i| args.get(i + 1).cloned()))
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn g107_g108_g111_coordinator_deployment_service_status_and_columns() -> anyhow::Result<()> {
    let (s, _ns) = scope("g107-coord").await?;
    let name = "my-coordinator";
    s.apply_cr(Kind::Coordinator, name, &json!({"port": 9300}))
        .await?;
    let found = s
        .wait_exist(&[(Res::Deployment, name), (Res::Service, name)])
        .await?;
    let coordinator = s.must_get(Res::Cr(Kind::Coordinator), name).await?;
    for child in &found {
        assert_controlled_by(child, Kind::Coordinator, &coordinator)?;
        assert_eq!(labels(child), standard_labels(Kind::Coordinator, name));
    }
    let (deploy, svc) = (&found[0], &found[1]);

    // G107.
    assert_eq!(deploy["spec"]["replicas"], 1);
    let c = container(deploy);
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(c["name"], "coordinator");
    assert_eq!(c["image"], "lmcache/vllm-openai:latest");
    assert_eq!(c["command"], json!(["/opt/venv/bin/lmcache", "coordinator"]));
    assert_eq!(
        args(deploy),
        owned(&[
            "--host",
            "0.0.0.0",
            "--port",
            "9300",
            "--instance-timeout",
            "30",
            "--health-check-interval",
            "10",
            "--eviction-check-interval",
            "5",
            "--eviction-ratio",
            "0.2",
            "--trigger-watermark",
            "1",
            "--hash-algorithm",
            "blake3",
        ])
    );
    assert_contains(
        svc,
        &json!({"spec": {
            "type": "ClusterIP",
            "ports": [{"name": "http", "port": 9300, "targetPort": 9300, "protocol": "TCP"}]
        }}),
    )?;
    assert!(s.get(Res::Service, &format!("{name}-metrics")).await?.is_none());

    // G108: ports, env, httpGet probes, no resources, not privileged, no GPU pod settings.
    assert_eq!(
        c["ports"],
        json!([
            {"name": "http", "containerPort": 9300, "protocol": "TCP"}
        ])
    );
    assert_eq!(c["env"], json!([{"name": "LMCACHE_LOG_LEVEL", "value": "INFO"}]));
    let probe = json!({"path": "/healthz", "port": 9300, "scheme": "HTTP"});
    assert_contains(
        c,
        &json!({
            "startupProbe": {"httpGet": probe, "initialDelaySeconds": 5, "periodSeconds": 5, "failureThreshold": 30},
            "livenessProbe": {"httpGet": probe, "periodSeconds": 10, "failureThreshold": 3},
            "readinessProbe": {"httpGet": probe, "periodSeconds": 5, "failureThreshold": 3}
        }),
    )?;
    assert!(
        c["resources"].as_object().is_none_or(|r| r.is_empty()),
        "resources {}",
        c["resources"]
    );
    assert!(c["securityContext"].is_null(), "{}", c["securityContext"]);
    let pod = &deploy["spec"]["template"]["spec"];
    for field in ["hostIPC", "runtimeClassName", "nodeSelector"] {
        assert!(pod[field].is_null(), "{field}: {}", pod[field]);
    }

    // G111: Running 1/1 with the endpoint.
    let coordinator = s.wait_running(Kind::Coordinator, name, 1).await?;
    let status = &coordinator["status"];
    assert_eq!(
        status["endpoint"],
        format!("http://{name}.{}.svc:9300", s.ns).as_str()
    );
    assert_contains(
        &condition(status, "Available"),
        &json!({"status": "True", "reason": "AtLeastOneReady", "message": "1/1 replicas ready"}),
    )?;
    let table = s.kubectl(&["get", "lmcc"]).await?;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "PHASE", "READY", "REPLICAS", "ENDPOINT", "AGE"]);
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.first(), Some(&name));
    assert_eq!(row.get(1), Some(&"Running"));
    assert_eq!(
        row.get(4).copied(),
        Some(format!("http://{name}.{}.svc:9300", s.ns).as_str())
    );

    // G111: replicas 0 is Pending with NoReadyReplicas.
    s.apply_cr(Kind::Coordinator, name, &json!({"port": 9300, "replicas": 0}))
        .await?;
    let coordinator = s
        .wait_status(Kind::Coordinator, name, "Pending with 0 ready replicas", |st| {
            // readyReplicas drops only once the old pod is gone: wait for it, not just the spec.
            st["phase"] == "Pending"
                && st["replicas"] == 0
                && st["readyReplicas"] == 0
                && st["observedGeneration"] == 2
        })
        .await?;
    assert_contains(
        &condition(&coordinator["status"], "Available"),
        &json!({"status": "False", "reason": "NoReadyReplicas"}),
    )?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn b38_b40_engine_coordinator_ref_resolves_and_follows_a_port_change() -> anyhow::Result<()> {
    let (s, _ns) = scope("b38-coordref").await?;
    s.apply_cr(Kind::Coordinator, "my-coordinator", &json!({"port": 9300}))
        .await?;
    let mut spec = Kind::Engine.minimal_spec();
    spec["coordinator"] = json!({"ref": {"name": "my-coordinator"}});
    s.apply_cr(Kind::Engine, "my-cache", &spec).await?;
    let url = |port: u16| format!("http://my-coordinator.{}.svc:{port}", s.ns);
    let first = url(9300);
    s.wait("--coordinator-url on 9300", || async {
        Ok((coordinator_url(&s, "my-cache").await?.as_deref() == Some(first.as_str())).then_some(()))
    })
    .await?;
    let ds = s.must_get(Res::DaemonSet, "my-cache").await?;
    let env = &container(&ds)["env"];
    assert!(
        env.as_array().is_some_and(|e| e.iter().any(|e| e
            == &json!({"name": "LMCACHE_COORDINATOR_ADVERTISE_IP",
                       "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}))),
        "env {env}"
    );

    // B40: only the coordinator changes; the engine follows.
    s.apply_cr(Kind::Coordinator, "my-coordinator", &json!({"port": 9400}))
        .await?;
    let second = url(9400);
    s.wait("--coordinator-url on 9400", || async {
        Ok((coordinator_url(&s, "my-cache").await?.as_deref() == Some(second.as_str())).then_some(()))
    })
    .await?;
    let engine = s.must_get(Res::Cr(Kind::Engine), "my-cache").await?;
    assert_eq!(engine["metadata"]["generation"], 1);
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn b39_missing_coordinator_is_reported_then_used_once_created() -> anyhow::Result<()> {
    let (s, _ns) = scope("b39-nocoord").await?;
    let mut spec = Kind::Engine.minimal_spec();
    spec["coordinator"] = json!({"ref": {"name": "c"}});
    s.apply_cr(Kind::Engine, "my-cache", &spec).await?;
    let message = format!(
        "spec.coordinator.ref.name: LMCacheCoordinator \"c\" not found in namespace \"{}\"",
        s.ns
    );
    let engine = s
        .wait_status(Kind::Engine, "my-cache", "CoordinatorNotFound", |st| {
            condition(st, "ConfigValid")["reason"] == "CoordinatorNotFound"
        })
        .await?;
    let status = &engine["status"];
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["observedGeneration"], 1);
    assert_contains(
        &condition(status, "ConfigValid"),
        &json!({"status": "False", "message": message}),
    )?;
    s.wait_event("my-cache", "Warning", "CoordinatorNotFound", &message)
        .await?;
    for (res, name) in [
        (Res::DaemonSet, "my-cache"),
        (Res::Service, "my-cache"),
        (Res::Service, "my-cache-metrics"),
        (Res::ConfigMap, "my-cache-connection"),
    ] {
        assert!(s.get(res, name).await?.is_none(), "{} {name} exists", res.kind());
    }

    // Creating the coordinator is enough: the engine itself is not touched.
    s.apply_cr(Kind::Coordinator, "c", &json!({"port": 9300})).await?;
    let expected = format!("http://c.{}.svc:9300", s.ns);
    s.wait("DaemonSet with --coordinator-url of c", || async {
        Ok((coordinator_url(&s, "my-cache").await?.as_deref() == Some(expected.as_str())).then_some(()))
    })
    .await?;
    let engine = s
        .wait_status(Kind::Engine, "my-cache", "ConfigValid=True", |st| {
            condition(st, "ConfigValid")["status"] == "True"
        })
        .await?;
    assert_eq!(engine["metadata"]["generation"], 1);
    s.wait_exist(&[
        (Res::Service, "my-cache"),
        (Res::Service, "my-cache-metrics"),
        (Res::ConfigMap, "my-cache-connection"),
    ])
    .await?;
    Ok(())
}
