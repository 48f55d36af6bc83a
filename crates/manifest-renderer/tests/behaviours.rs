//! Render-level acceptance behaviours (behaviours.md §B 23–57, §E 77–80, §G 107–110) and the
//! spec's exact shapes (engine.md §3.7, §5, §6, §7; coordinator.md §2–§5).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, Probe, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use lmcache_api::v1alpha1::{CacheBlendEngine, LMCacheCoordinator, LMCacheEngine};
use lmcache_manifest_renderer::{
    CoordinatorChildren, EngineChildren, RenderContext, RenderError, blend_kv_transfer_config,
    coordinator_url, render_blend_engine, render_coordinator, render_engine,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const UID: &str = "0b6f1c2a-1111-4000-8000-000000000001";

fn cr<T: serde::de::DeserializeOwned>(kind: &str, name: &str, namespace: &str, spec: &str) -> T {
    let spec: Value = serde_saphyr::from_str(spec).unwrap();
    serde_json::from_value(json!({
        "apiVersion": "lmcache.lmcache.ai/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "uid": UID},
        "spec": spec,
    }))
    .unwrap()
}

fn engine(spec: &str) -> EngineChildren {
    let e: LMCacheEngine = cr("LMCacheEngine", "my-cache", "default", spec);
    render_engine(&e, &RenderContext::new(common::DOMAIN)).unwrap()
}

fn minimal() -> EngineChildren {
    engine("l1: {sizeGB: 60}")
}

const BLEND_MINIMAL: &str = "l1: {sizeGB: 60}\ninjection: {payloadImage: {repository: registry.example.com/cacheblend-plugin, tag: v1}}";

fn blend(spec: &str) -> EngineChildren {
    let e: CacheBlendEngine = cr("CacheBlendEngine", "my-cacheblend", "default", spec);
    render_blend_engine(&e, &RenderContext::new(common::DOMAIN)).unwrap()
}

fn coordinator(spec: &str) -> CoordinatorChildren {
    let c: LMCacheCoordinator = cr("LMCacheCoordinator", "my-coordinator", "default", spec);
    render_coordinator(&c, &RenderContext::new(common::DOMAIN)).unwrap()
}

fn pod(c: &EngineChildren) -> &PodSpec {
    c.daemon_set
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
}

fn container(c: &EngineChildren) -> &Container {
    let pod = pod(c);
    assert_eq!(pod.containers.len(), 1);
    &pod.containers[0]
}

fn args(c: &EngineChildren) -> Vec<String> {
    container(c).args.clone().unwrap()
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn env_pairs(env: &[EnvVar]) -> Vec<(String, String)> {
    env.iter()
        .map(|e| {
            (
                e.name.clone(),
                e.value.clone().unwrap_or_else(|| "<valueFrom>".into()),
            )
        })
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn map(items: &[(&str, &str)]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn to_value<T: serde::Serialize>(x: &T) -> Value {
    serde_json::to_value(x).unwrap()
}

fn yaml(s: &str) -> Value {
    serde_saphyr::from_str(s).unwrap()
}

fn all_meta(c: &EngineChildren) -> Vec<&ObjectMeta> {
    let mut out = vec![
        &c.daemon_set.metadata,
        &c.service.metadata,
        &c.metrics_service.metadata,
        &c.config_map.metadata,
    ];
    out.extend(c.service_monitor.as_ref().map(|s| &s.metadata));
    out
}

fn standard_engine_labels(instance: &str) -> BTreeMap<String, String> {
    map(&[
        ("app.kubernetes.io/name", "lmcache"),
        ("app.kubernetes.io/instance", instance),
        ("app.kubernetes.io/managed-by", "lmcache-operator"),
        ("app.kubernetes.io/component", "cache-engine"),
    ])
}

fn selector_engine_labels(instance: &str) -> BTreeMap<String, String> {
    let mut l = standard_engine_labels(instance);
    l.remove("app.kubernetes.io/component");
    l
}

// ---------------------------------------------------------------------------------------------
// Acceptance: the spec's minimal engine.

/// engine.md §3.7, verbatim.
const SECTION_3_7: &str = r#"
selector:
  matchLabels:
    app.kubernetes.io/name: lmcache
    app.kubernetes.io/instance: my-cache
    app.kubernetes.io/managed-by: lmcache-operator
template:
  metadata:
    labels:
      app.kubernetes.io/name: lmcache
      app.kubernetes.io/instance: my-cache
      app.kubernetes.io/managed-by: lmcache-operator
      app.kubernetes.io/component: cache-engine
  spec:
    automountServiceAccountToken: false
    hostIPC: true
    runtimeClassName: nvidia
    nodeSelector:
      nvidia.com/gpu.present: "true"
    containers:
      - name: lmcache
        image: lmcache/vllm-openai:latest
        imagePullPolicy: IfNotPresent
        command: ["/opt/venv/bin/lmcache", "server"]
        args: ["--host", "0.0.0.0", "--port", "5555", "--http-host", "0.0.0.0",
               "--http-port", "8080", "--l1-size-gb", "60",
               "--chunk-size", "256", "--max-workers", "1",
               "--hash-algorithm", "blake3", "--eviction-policy", "LRU",
               "--eviction-trigger-watermark", "0.8", "--eviction-ratio", "0.2",
               "--prometheus-port", "9090"]
        env:
          - {name: LMCACHE_LOG_LEVEL, value: INFO}
          - {name: NVIDIA_VISIBLE_DEVICES, value: all}
          - {name: PYTHONHASHSEED, value: "0"}
        ports:
          - {name: server, containerPort: 5555, protocol: TCP}
          - {name: http, containerPort: 8080, protocol: TCP}
        resources:
          requests: {cpu: "4", memory: 65Gi}
          limits: {memory: 98Gi}
        securityContext:
          privileged: true
        startupProbe:
          tcpSocket: {port: 5555}
          initialDelaySeconds: 5
          periodSeconds: 5
          failureThreshold: 30
        livenessProbe:
          tcpSocket: {port: 5555}
          periodSeconds: 10
        readinessProbe:
          tcpSocket: {port: 5555}
          periodSeconds: 5
"#;

fn owner_refs(kind: &str, name: &str) -> Value {
    json!([{"apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": kind, "name": name, "uid": UID,
            "controller": true, "blockOwnerDeletion": true}])
}

#[test]
fn minimal_engine_renders_exactly_the_spec_objects() {
    let c = minimal();
    let labels = json!(standard_engine_labels("my-cache"));
    let meta = |name: &str| {
        json!({"name": name, "namespace": "default", "labels": labels,
               "ownerReferences": owner_refs("LMCacheEngine", "my-cache")})
    };
    // engine.md §3.7's DaemonSet spec, plus the update strategy of rollouts.md §2 (L1).
    let mut spec = yaml(SECTION_3_7);
    spec["updateStrategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}});
    assert_eq!(
        to_value(&c.daemon_set),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta("my-cache"),
               "spec": spec})
    );
    let selector = json!(selector_engine_labels("my-cache"));
    assert_eq!(
        to_value(&c.service),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("my-cache"),
               "spec": {"type": "ClusterIP", "internalTrafficPolicy": "Local", "selector": selector,
                        "ports": [{"name": "server", "port": 5555, "targetPort": 5555, "protocol": "TCP"}]}})
    );
    assert_eq!(
        to_value(&c.metrics_service),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("my-cache-metrics"),
               "spec": {"clusterIP": "None", "selector": selector,
                        "ports": [{"name": "metrics", "port": 8080, "targetPort": "http", "protocol": "TCP"}]}})
    );
    let json = "{\n  \"kv_connector\": \"LMCacheMPConnector\",\n  \"kv_role\": \"kv_both\",\n  \"kv_connector_extra_config\": {\n    \"lmcache.mp.host\": \"tcp://my-cache.default.svc.cluster.local\",\n    \"lmcache.mp.port\": \"5555\"\n  }\n}";
    assert_eq!(
        to_value(&c.config_map),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("my-cache-connection"),
               "data": {"kv-transfer-config.json": json}})
    );
    assert!(c.service_monitor.is_none());
}

// ---------------------------------------------------------------------------------------------
// §B LMCacheEngine children.

#[test]
fn b23_children_names_and_no_service_monitor_by_default() {
    let c = minimal();
    let names: Vec<_> = all_meta(&c).iter().map(|m| m.name.clone().unwrap()).collect();
    assert_eq!(
        names,
        ["my-cache", "my-cache", "my-cache-metrics", "my-cache-connection"]
    );
    assert!(
        all_meta(&c)
            .iter()
            .all(|m| m.namespace.as_deref() == Some("default"))
    );
    assert!(c.service_monitor.is_none());
}

#[test]
fn b24_every_child_has_the_standard_labels_and_one_controller_reference() {
    let c = engine("l1: {sizeGB: 60}\nprometheus: {serviceMonitor: {enabled: true}}");
    assert_eq!(all_meta(&c).len(), 5);
    for meta in all_meta(&c) {
        assert_eq!(meta.labels.as_ref().unwrap(), &standard_engine_labels("my-cache"));
        assert_eq!(
            to_value(meta.owner_references.as_ref().unwrap()),
            owner_refs("LMCacheEngine", "my-cache")
        );
        // Nothing else in metadata: no annotations, no generateName, no finalizers.
        let mut m = (*meta).clone();
        (m.name, m.namespace, m.labels, m.owner_references) = (None, None, None, None);
        assert_eq!(m, ObjectMeta::default());
    }
}

#[test]
fn no_uid_means_no_owner_references_and_missing_metadata_is_an_error() {
    let mut e: LMCacheEngine = cr("LMCacheEngine", "my-cache", "default", "l1: {sizeGB: 60}");
    e.metadata.uid = None;
    let ctx = RenderContext::new(common::DOMAIN);
    let c = render_engine(&e, &ctx).unwrap();
    assert!(all_meta(&c).iter().all(|m| m.owner_references.is_none()));

    e.metadata.namespace = None;
    assert_eq!(render_engine(&e, &ctx), Err(RenderError::MissingNamespace));
    e.metadata.name = None;
    assert_eq!(render_engine(&e, &ctx), Err(RenderError::MissingName));
}

#[test]
fn b25_selector_is_three_labels_and_template_labels_are_the_four() {
    let c = minimal();
    let spec = c.daemon_set.spec.as_ref().unwrap();
    assert_eq!(
        spec.selector.match_labels.as_ref().unwrap(),
        &selector_engine_labels("my-cache")
    );
    assert!(spec.selector.match_expressions.is_none());
    let template = spec.template.metadata.as_ref().unwrap();
    assert_eq!(
        template.labels.as_ref().unwrap(),
        &standard_engine_labels("my-cache")
    );
    assert!(template.annotations.is_none());
    // L1: one pod at a time, never a surge pod; no minReadySeconds or revisionHistoryLimit.
    let strategy = spec.update_strategy.as_ref().unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = strategy.rolling_update.as_ref().unwrap();
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(rolling.max_surge, Some(IntOrString::Int(0)));
    assert!(spec.min_ready_seconds.is_none());
    assert!(spec.revision_history_limit.is_none());
}

#[test]
fn b26_pod_has_the_gpu_model_and_nothing_else() {
    let c = minimal();
    let p = pod(&c);
    assert_eq!(p.host_ipc, Some(true));
    assert_eq!(p.runtime_class_name.as_deref(), Some("nvidia"));
    assert_eq!(p.node_selector, Some(map(&[("nvidia.com/gpu.present", "true")])));
    assert!(
        p.volumes.is_none() && container(&c).volume_mounts.is_none(),
        "no /dev/shm"
    );
    // Lifecycle §6: the server never calls the API, so it gets no token.
    assert_eq!(p.automount_service_account_token, Some(false));
    let mut rest = p.clone();
    rest.host_ipc = None;
    rest.runtime_class_name = None;
    rest.node_selector = None;
    rest.automount_service_account_token = None;
    rest.containers = vec![];
    assert_eq!(
        rest,
        PodSpec::default(),
        "hostNetwork, hostPID, dnsPolicy, ... not set"
    );
}

#[test]
fn b27_container_basics_and_no_gpu_resources() {
    let c = minimal();
    let k = container(&c);
    assert_eq!(k.name, "lmcache");
    assert_eq!(to_value(&k.security_context), json!({"privileged": true}));
    assert_eq!(k.image.as_deref(), Some("lmcache/vllm-openai:latest"));
    assert_eq!(k.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(k.command, Some(words("/opt/venv/bin/lmcache server")));
    let r = to_value(&k.resources);
    assert!(!r.to_string().contains("nvidia.com/gpu"));
}

#[test]
fn b28_image_override() {
    let c =
        engine("l1: {sizeGB: 60}\nimage: {repository: lmcache/standalone, tag: v0.1.0, pullPolicy: Always}");
    assert_eq!(container(&c).image.as_deref(), Some("lmcache/standalone:v0.1.0"));
    assert_eq!(container(&c).image_pull_policy.as_deref(), Some("Always"));
}

#[test]
fn b29_minimal_args_exactly() {
    let want: Vec<String> = serde_json::from_str(r#"["--host","0.0.0.0","--port","5555","--http-host","0.0.0.0","--http-port","8080","--l1-size-gb","60","--chunk-size","256","--max-workers","1","--hash-algorithm","blake3","--eviction-policy","LRU","--eviction-trigger-watermark","0.8","--eviction-ratio","0.2","--prometheus-port","9090"]"#).unwrap();
    assert_eq!(args(&minimal()), want);
}

#[test]
fn b30_floats_use_fmt() {
    let a = args(&engine(
        "l1: {sizeGB: 1.25}\neviction: {triggerWatermark: 0.75, evictionRatio: 0.5}",
    ));
    let joined = a.join(" ");
    assert!(joined.contains("--l1-size-gb 1.25 "));
    assert!(joined.contains("--eviction-trigger-watermark 0.75 "));
    assert!(joined.contains("--eviction-ratio 0.5 "));
}

#[test]
fn b31_j1_prometheus_disabled() {
    let c = engine("l1: {sizeGB: 60}\nprometheus: {enabled: false}");
    let a = args(&c);
    // J1: the released parser's flag; `--disable-prometheus` makes `lmcache server` exit 2.
    assert_eq!(a.last().map(String::as_str), Some("--disable-metrics"));
    assert!(
        !a.iter()
            .any(|t| t == "--prometheus-port" || t == "--disable-prometheus")
    );
    // The HTTP frontend (and its container port) stays: it also serves the coordinator.
    let ports = container(&c).ports.clone().unwrap();
    let names: Vec<_> = ports.iter().map(|p| p.name.as_deref().unwrap()).collect();
    assert_eq!(names, ["server", "http"]);
    assert_eq!(
        c.metrics_service.metadata.name.as_deref(),
        Some("my-cache-metrics")
    );
}

#[test]
fn b32_b33_adapters_in_order_after_the_prometheus_flag() {
    let c = engine(
        r#"
l1: {sizeGB: 60}
l2Backends:
  - {type: fs, config: {base_path: /data/lmcache, max_capacity_gb: 100}}
  - {type: resp, config: {host: redis.cache.svc, port: 6379, num_workers: 8}}
  - {type: x, config: {type: y, opts: {b: 1, a: 0.5}}}
  - {type: mock}
"#,
    );
    let a = args(&c);
    let tail = &a[a.iter().position(|s| s == "9090").unwrap() + 1..];
    assert_eq!(
        tail,
        [
            "--l2-adapter",
            r#"{"base_path":"/data/lmcache","max_capacity_gb":100,"type":"fs"}"#,
            "--l2-adapter",
            r#"{"host":"redis.cache.svc","num_workers":8,"port":6379,"type":"resp"}"#,
            "--l2-adapter",
            r#"{"opts":{"a":0.5,"b":1},"type":"x"}"#,
            "--l2-adapter",
            r#"{"type":"mock"}"#,
        ]
    );
}

#[test]
fn b34_extra_args_are_last() {
    let a = args(&engine(
        "l1: {sizeGB: 60}\nextraArgs: [--max-workers, '8']\ncoordinator: {url: 'http://c:1'}",
    ));
    assert_eq!(&a[a.len() - 2..], ["--max-workers", "8"]);
}

#[test]
fn full_example_args_of_engine_md_section_4() {
    let a = args(&engine(
        r#"
l1: {sizeGB: 1.25}
eviction: {triggerWatermark: 0.75}
prometheus: {enabled: false}
l2Backends: [{type: fs, config: {base_path: /data/lmcache, max_capacity_gb: 100}}]
coordinator: {url: "http://coord:9300", l2EventReporting: true}
extraArgs: ["--max-workers", "8"]
"#,
    ));
    let want = words(
        r#"--host 0.0.0.0 --port 5555 --http-host 0.0.0.0 --http-port 8080 --l1-size-gb 1.25
        --chunk-size 256 --max-workers 1
        --hash-algorithm blake3 --eviction-policy LRU --eviction-trigger-watermark 0.75
        --eviction-ratio 0.2 --disable-metrics
        --l2-adapter {"base_path":"/data/lmcache","max_capacity_gb":100,"type":"fs"}
        --coordinator-url http://coord:9300 --coordinator-heartbeat-interval 5
        --coordinator-event-reporting --max-workers 8"#,
    );
    assert_eq!(a, want);
}

#[test]
fn b35_coordinator_url_flags_and_advertise_ip() {
    let c = engine("l1: {sizeGB: 60}\nl2Backends: [{type: mock}]\ncoordinator: {url: 'http://coord:9300'}");
    let a = args(&c);
    assert_eq!(
        &a[a.len() - 6..],
        words(
            r#"--l2-adapter {"type":"mock"} --coordinator-url http://coord:9300 --coordinator-heartbeat-interval 5"#
        )
    );
    assert!(!a.contains(&"--coordinator-event-reporting".to_string()));
    let env = container(&c).env.clone().unwrap();
    assert_eq!(
        to_value(&env[3]),
        json!({"name": "LMCACHE_COORDINATOR_ADVERTISE_IP",
               "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}})
    );
}

#[test]
fn b36_j4_heartbeat_and_event_reporting() {
    let a = args(&engine(
        "l1: {sizeGB: 60}\ncoordinator: {url: 'http://coord:9300', heartbeatInterval: 2.5, l2EventReporting: true}",
    ));
    assert_eq!(
        &a[a.len() - 3..],
        words("--coordinator-heartbeat-interval 2.5 --coordinator-event-reporting")
    );
    // The deprecated hidden alias is never rendered.
    assert!(!a.contains(&"--coordinator-l2-event-reporting".to_string()));
}

#[test]
fn b37_no_coordinator_no_flags_no_env() {
    let c = minimal();
    assert!(!args(&c).iter().any(|a| a.starts_with("--coordinator")));
    let env = container(&c).env.clone().unwrap();
    assert!(!env.iter().any(|e| e.name == "LMCACHE_COORDINATOR_ADVERTISE_IP"));
}

#[test]
fn b38_coordinator_ref_uses_the_resolved_url() {
    let e: LMCacheEngine = cr(
        "LMCacheEngine",
        "my-cache",
        "default",
        "l1: {sizeGB: 60}\ncoordinator: {ref: {name: my-coordinator}}",
    );
    let url = coordinator_url("my-coordinator", "default", 9300);
    assert_eq!(url, "http://my-coordinator.default.svc:9300");
    let ctx = RenderContext::new(common::DOMAIN).with_coordinator_url(&url);
    let a = args(&render_engine(&e, &ctx).unwrap());
    assert_eq!(
        &a[a.len() - 4..],
        words("--coordinator-url http://my-coordinator.default.svc:9300 --coordinator-heartbeat-interval 5")
    );
    // Unresolved: an error, never a silently missing flag.
    assert_eq!(
        render_engine(&e, &RenderContext::new(common::DOMAIN)),
        Err(RenderError::UnresolvedCoordinator)
    );
}

#[test]
fn explicit_url_ignores_a_resolved_ref_url() {
    let e: LMCacheEngine = cr(
        "LMCacheEngine",
        "my-cache",
        "default",
        "l1: {sizeGB: 60}\ncoordinator: {url: 'http://explicit:1'}",
    );
    let ctx = RenderContext::new(common::DOMAIN).with_coordinator_url("http://other:2");
    assert!(args(&render_engine(&e, &ctx).unwrap()).contains(&"http://explicit:1".to_string()));
}

#[test]
fn b41_env_order() {
    assert_eq!(
        env_pairs(&container(&minimal()).env.clone().unwrap()),
        pairs(&[
            ("LMCACHE_LOG_LEVEL", "INFO"),
            ("NVIDIA_VISIBLE_DEVICES", "all"),
            ("PYTHONHASHSEED", "0")
        ])
    );
    let c = engine("l1: {sizeGB: 60}\nlogLevel: DEBUG\nenv: [{name: FOO, value: bar}]");
    assert_eq!(
        env_pairs(&container(&c).env.clone().unwrap()),
        pairs(&[
            ("LMCACHE_LOG_LEVEL", "DEBUG"),
            ("NVIDIA_VISIBLE_DEVICES", "all"),
            ("PYTHONHASHSEED", "0"),
            ("FOO", "bar")
        ])
    );
}

#[test]
fn b42_env_de_duplication() {
    let c = engine(
        "l1: {sizeGB: 60}\nenv: [{name: LMCACHE_LOG_LEVEL, value: WARNING}, {name: FOO, value: '1'}, {name: FOO, value: '2'}, {name: PYTHONHASHSEED, value: '7'}]",
    );
    // J5: a user PYTHONHASHSEED wins in place (then vLLM must use the same seed).
    assert_eq!(
        env_pairs(&container(&c).env.clone().unwrap()),
        pairs(&[
            ("LMCACHE_LOG_LEVEL", "WARNING"),
            ("NVIDIA_VISIBLE_DEVICES", "all"),
            ("PYTHONHASHSEED", "7"),
            ("FOO", "2")
        ])
    );
    // A user entry replaces the operator's advertise IP in place, too.
    let c = engine(
        "l1: {sizeGB: 60}\ncoordinator: {url: 'http://c:1'}\nenv: [{name: A, value: a}, {name: LMCACHE_COORDINATOR_ADVERTISE_IP, value: 10.0.0.1}]",
    );
    assert_eq!(
        env_pairs(&container(&c).env.clone().unwrap()),
        pairs(&[
            ("LMCACHE_LOG_LEVEL", "INFO"),
            ("NVIDIA_VISIBLE_DEVICES", "all"),
            ("PYTHONHASHSEED", "0"),
            ("LMCACHE_COORDINATOR_ADVERTISE_IP", "10.0.0.1"),
            ("A", "a"),
        ])
    );
}

#[test]
fn b43_container_ports() {
    assert_eq!(
        to_value(&container(&minimal()).ports),
        json!([{"name": "server", "containerPort": 5555, "protocol": "TCP"},
               {"name": "http", "containerPort": 8080, "protocol": "TCP"}])
    );
    let c = engine("l1: {sizeGB: 60}\nserver: {port: 6000, httpPort: 6001}");
    assert_eq!(
        to_value(&container(&c).ports),
        json!([{"name": "server", "containerPort": 6000, "protocol": "TCP"},
               {"name": "http", "containerPort": 6001, "protocol": "TCP"}])
    );
    let a = args(&c).join(" ");
    assert!(
        a.contains("--port 6000 --http-host 0.0.0.0 --http-port 6001 "),
        "{a}"
    );
    assert_eq!(
        to_value(&c.metrics_service.spec.as_ref().unwrap().ports),
        json!([{"name": "metrics", "port": 6001, "targetPort": "http", "protocol": "TCP"}])
    );
}

#[test]
fn b44_probes_exactly() {
    let k = container(&minimal()).clone();
    let probe = |v: Value| -> Option<Probe> { Some(serde_json::from_value(v).unwrap()) };
    assert_eq!(
        k.startup_probe,
        probe(
            json!({"tcpSocket": {"port": 5555}, "initialDelaySeconds": 5, "periodSeconds": 5, "failureThreshold": 30})
        )
    );
    assert_eq!(
        k.liveness_probe,
        probe(json!({"tcpSocket": {"port": 5555}, "periodSeconds": 10}))
    );
    assert_eq!(
        k.readiness_probe,
        probe(json!({"tcpSocket": {"port": 5555}, "periodSeconds": 5}))
    );
}

#[test]
fn b45_b46_computed_resources() {
    for (size, request, limit) in [
        ("60", "65Gi", "98Gi"),
        ("0.5", "6Gi", "9Gi"),
        ("10.2", "16Gi", "24Gi"),
        ("100", "105Gi", "158Gi"),
    ] {
        let c = engine(&format!("l1: {{sizeGB: {size}}}"));
        assert_eq!(
            to_value(&container(&c).resources),
            json!({"requests": {"cpu": "4", "memory": request}, "limits": {"memory": limit}}),
            "sizeGB {size}"
        );
    }
}

#[test]
fn b47_resource_overrides_verbatim() {
    let c = engine(
        "l1: {sizeGB: 60}\nresourceOverrides: {requests: {memory: 70Gi, cpu: '8'}, limits: {memory: 100Gi}}",
    );
    assert_eq!(
        to_value(&container(&c).resources),
        json!({"requests": {"cpu": "8", "memory": "70Gi"}, "limits": {"memory": "100Gi"}})
    );
}

#[test]
fn b48_node_selector_custom_and_empty() {
    let c = engine("l1: {sizeGB: 60}\nnodeSelector: {pool: a}");
    assert_eq!(pod(&c).node_selector, Some(map(&[("pool", "a")])));
    let c = engine("l1: {sizeGB: 60}\nnodeSelector: {}");
    assert_eq!(pod(&c).node_selector, None);
}

#[test]
fn b49_scheduling_fields_and_pull_secret_de_duplication() {
    let c = engine(
        r#"
l1: {sizeGB: 60}
affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: kubernetes.io/hostname}]}}
tolerations: [{key: k, operator: Exists}]
priorityClassName: system-node-critical
serviceAccountName: sa1
imagePullSecrets: [{name: r}, {name: r}, {name: ""}, {name: s}, {name: r}]
"#,
    );
    let p = pod(&c);
    assert_eq!(
        to_value(&p.affinity),
        json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname"}]}})
    );
    assert_eq!(
        to_value(&p.tolerations),
        json!([{"key": "k", "operator": "Exists"}])
    );
    assert_eq!(p.priority_class_name.as_deref(), Some("system-node-critical"));
    assert_eq!(p.service_account_name.as_deref(), Some("sa1"));
    assert_eq!(
        to_value(&p.image_pull_secrets),
        json!([{"name": "r"}, {"name": "s"}])
    );

    let c = engine("l1: {sizeGB: 60}\nimagePullSecrets: [{name: ''}]");
    assert!(pod(&c).image_pull_secrets.is_none());
}

#[test]
fn b50_volumes_and_mounts_verbatim() {
    let c = engine(
        "l1: {sizeGB: 60}\nvolumes: [{name: cfg, configMap: {name: x}}]\nvolumeMounts: [{name: cfg, mountPath: /etc/x}]",
    );
    assert_eq!(
        to_value(&pod(&c).volumes),
        json!([{"name": "cfg", "configMap": {"name": "x"}}])
    );
    assert_eq!(
        to_value(&container(&c).volume_mounts),
        json!([{"name": "cfg", "mountPath": "/etc/x"}])
    );
}

#[test]
fn b51_pod_annotations_and_label_overlay() {
    let c = engine(
        r#"
l1: {sizeGB: 60}
podAnnotations: {prometheus.io/scrape: "true"}
podLabels: {team: a, app.kubernetes.io/instance: evil, app.kubernetes.io/component: custom,
            app.kubernetes.io/name: evil, app.kubernetes.io/managed-by: evil}
"#,
    );
    let template = c
        .daemon_set
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .clone()
        .unwrap();
    assert_eq!(
        template.annotations,
        Some(map(&[("prometheus.io/scrape", "true")]))
    );
    assert_eq!(
        template.labels.unwrap(),
        map(&[
            ("app.kubernetes.io/name", "lmcache"),
            ("app.kubernetes.io/instance", "my-cache"),
            ("app.kubernetes.io/managed-by", "lmcache-operator"),
            ("app.kubernetes.io/component", "custom"),
            ("team", "a"),
        ])
    );
    // Selector and object labels are untouched by podLabels.
    assert_eq!(
        c.daemon_set.metadata.labels,
        Some(standard_engine_labels("my-cache"))
    );

    let c = engine("l1: {sizeGB: 60}\npodAnnotations: {}");
    let template = c
        .daemon_set
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .clone()
        .unwrap();
    assert!(template.annotations.is_none(), "omitted when empty");
}

fn service_spec(s: &Service) -> Value {
    to_value(&s.spec)
}

#[test]
fn b52_j2_services() {
    let c = minimal();
    let selector = json!(selector_engine_labels("my-cache"));
    assert_eq!(
        service_spec(&c.service),
        json!({"type": "ClusterIP", "internalTrafficPolicy": "Local", "selector": selector,
               "ports": [{"name": "server", "port": 5555, "targetPort": 5555, "protocol": "TCP"}]})
    );
    // J2: `/metrics` is served by the HTTP frontend; nothing listens on prometheus.port.
    assert_eq!(
        service_spec(&c.metrics_service),
        json!({"clusterIP": "None", "selector": selector,
               "ports": [{"name": "metrics", "port": 8080, "targetPort": "http", "protocol": "TCP"}]})
    );
}

#[test]
fn b53_b54_b55_connection_config_map() {
    let c = minimal();
    let data = c.config_map.data.as_ref().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(
        data["kv-transfer-config.json"],
        "{\n  \"kv_connector\": \"LMCacheMPConnector\",\n  \"kv_role\": \"kv_both\",\n  \"kv_connector_extra_config\": {\n    \"lmcache.mp.host\": \"tcp://my-cache.default.svc.cluster.local\",\n    \"lmcache.mp.port\": \"5555\"\n  }\n}"
    );
    assert!(c.config_map.binary_data.is_none() && c.config_map.immutable.is_none());

    let input = common::fixture("production.yaml");
    let prod: LMCacheEngine = serde_json::from_value(common::docs(&input).remove(0)).unwrap();
    let c = render_engine(&prod, &RenderContext::new(common::DOMAIN)).unwrap();
    let json: Value = serde_json::from_str(&c.config_map.data.unwrap()["kv-transfer-config.json"]).unwrap();
    let extra = &json["kv_connector_extra_config"];
    assert_eq!(
        extra["lmcache.mp.host"],
        "tcp://production-cache.llm-serving.svc.cluster.local"
    );
    assert_eq!(extra["lmcache.mp.port"], "6555");

    let e: LMCacheEngine = cr("LMCacheEngine", "my-cache", "default", "l1: {sizeGB: 60}");
    let c = render_engine(&e, &RenderContext::new("corp.local")).unwrap();
    assert!(
        c.config_map.data.unwrap()["kv-transfer-config.json"]
            .contains("\"tcp://my-cache.default.svc.corp.local\"")
    );
}

#[test]
fn b56_service_monitor() {
    let c = engine(
        "l1: {sizeGB: 60}\nprometheus: {serviceMonitor: {enabled: true, labels: {release: kube-prometheus-stack, app.kubernetes.io/component: mine}}}",
    );
    let sm = c.service_monitor.unwrap();
    let mut labels = standard_engine_labels("my-cache");
    labels.insert("release".into(), "kube-prometheus-stack".into());
    labels.insert("app.kubernetes.io/component".into(), "mine".into());
    assert_eq!(
        to_value(&sm),
        json!({
            "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
            "metadata": {"name": "my-cache", "namespace": "default", "labels": labels,
                         "ownerReferences": owner_refs("LMCacheEngine", "my-cache")},
            "spec": {"selector": {"matchLabels": selector_engine_labels("my-cache")},
                     "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}]},
        })
    );
}

/// The operator's caches of its ServiceMonitors select `managed-by`: a user label overriding it
/// (or another selector label) would hide the ServiceMonitor from them and have it re-applied
/// forever. The selector labels win, as over `podLabels`; `component` and other labels pass.
#[test]
fn service_monitor_labels_cannot_override_the_selector_labels() {
    let c = engine(
        "l1: {sizeGB: 60}\nprometheus: {serviceMonitor: {enabled: true, labels: {release: prom, app.kubernetes.io/managed-by: helm, app.kubernetes.io/instance: other, app.kubernetes.io/name: mine, app.kubernetes.io/component: mine}}}",
    );
    let labels = c.service_monitor.unwrap().metadata.labels.unwrap();
    let mut want = standard_engine_labels("my-cache");
    want.insert("release".into(), "prom".into());
    want.insert("app.kubernetes.io/component".into(), "mine".into());
    assert_eq!(to_value(&labels), to_value(&want));
    assert_eq!(labels["app.kubernetes.io/managed-by"], "lmcache-operator");
}

#[test]
fn b57_no_service_monitor_when_prometheus_is_disabled() {
    let c = engine("l1: {sizeGB: 60}\nprometheus: {enabled: false, serviceMonitor: {enabled: true}}");
    assert!(c.service_monitor.is_none());
}

#[test]
fn b60_port_change_reaches_every_place() {
    let c = engine("l1: {sizeGB: 60}\nserver: {port: 6555}");
    let a = args(&c);
    assert_eq!(&a[2..4], ["--port", "6555"]);
    let k = container(&c);
    assert_eq!(k.ports.as_ref().unwrap()[0].container_port, 6555);
    for p in [&k.startup_probe, &k.liveness_probe, &k.readiness_probe] {
        assert_eq!(to_value(p)["tcpSocket"], json!({"port": 6555}));
    }
    assert_eq!(service_spec(&c.service)["ports"][0]["port"], 6555);
    assert_eq!(service_spec(&c.service)["ports"][0]["targetPort"], 6555);
    assert!(c.config_map.data.unwrap()["kv-transfer-config.json"].contains("\"lmcache.mp.port\": \"6555\""));
}

// ---------------------------------------------------------------------------------------------
// §E CacheBlendEngine.

#[test]
fn e77_blend_children_owner_kind_and_gpu_model() {
    let c = blend(BLEND_MINIMAL);
    for meta in all_meta(&c) {
        assert_eq!(
            to_value(meta.owner_references.as_ref().unwrap()),
            owner_refs("CacheBlendEngine", "my-cacheblend")
        );
        assert_eq!(
            meta.labels.as_ref().unwrap(),
            &standard_engine_labels("my-cacheblend")
        );
    }
    assert_eq!(
        c.config_map.metadata.name.as_deref(),
        Some("my-cacheblend-connection")
    );
    let p = pod(&c);
    assert_eq!(p.host_ipc, Some(true));
    assert_eq!(p.runtime_class_name.as_deref(), Some("nvidia"));
    let k = container(&c);
    assert_eq!(k.security_context.as_ref().unwrap().privileged, Some(true));
    assert!(env_pairs(k.env.as_ref().unwrap()).contains(&("NVIDIA_VISIBLE_DEVICES".into(), "all".into())));
    assert!(!to_value(&k.resources).to_string().contains("nvidia.com/gpu"));
}

#[test]
fn e78_blend_args() {
    let want = words(
        "--host 0.0.0.0 --port 5555 --http-host 0.0.0.0 --http-port 8080 --l1-size-gb 60
         --chunk-size 256 --max-workers 1
         --hash-algorithm blake3 --eviction-policy LRU --eviction-trigger-watermark 0.8
         --eviction-ratio 0.2 --prometheus-port 9090 --engine-type blend --l1-align-bytes 16777216",
    );
    assert_eq!(args(&blend(BLEND_MINIMAL)), want);
    let a = args(&blend(&format!(
        "{BLEND_MINIMAL}\nextraArgs: [--foo]\ncoordinator: {{url: 'http://c:1'}}"
    )));
    assert_eq!(
        &a[a.len() - 9..],
        words(
            "--coordinator-url http://c:1 --coordinator-heartbeat-interval 5 --engine-type blend --l1-align-bytes 16777216 --foo"
        )
    );
}

#[test]
fn e79_blend_connection_json_bytes() {
    let c = blend(BLEND_MINIMAL);
    assert_eq!(
        c.config_map.data.unwrap()["kv-transfer-config.json"],
        "{\n  \"kv_connector\": \"CBKVConnector\",\n  \"kv_role\": \"kv_both\",\n  \"kv_connector_extra_config\": {\n    \"lmcache.mp.host\": \"tcp://my-cacheblend.default.svc.cluster.local\",\n    \"lmcache.mp.port\": \"5555\",\n    \"cb.check_layer\": 1,\n    \"cb.recomp_ratio\": 0.15\n  },\n  \"kv_connector_module_path\": \"lmcache_cacheblend.connector\"\n}"
    );
}

#[test]
fn e80_blend_tunables_in_json() {
    let c = blend(&format!(
        "{BLEND_MINIMAL}\nblend: {{checkLayer: 3, recompRatio: 1}}"
    ));
    let json = &c.config_map.data.unwrap()["kv-transfer-config.json"];
    assert!(json.contains("\n    \"cb.check_layer\": 3,\n"));
    assert!(json.contains("\n    \"cb.recomp_ratio\": 1\n"));
}

/// cacheblend.md §3: the webhook's injected value (`blend_kv_transfer_config`) equals the
/// ConfigMap's value byte for byte for any valid engine.
#[test]
fn blend_json_is_identical_for_config_map_and_webhook() {
    let mut checked = 0;
    for (name, namespace) in [("my-cacheblend", "default"), ("cb", "team-a"), ("cb", "team-b")] {
        for port in [1024, 5555, 6555, 65535] {
            for ratio in ["0.15", "1", "0.3333333333333333", "1.0", "0.5"] {
                for check_layer in [0, 1, 3] {
                    for domain in ["cluster.local", "corp.local"] {
                        let spec = format!(
                            "{BLEND_MINIMAL}\nserver: {{port: {port}}}\nblend: {{checkLayer: {check_layer}, recompRatio: {ratio}}}"
                        );
                        let e: CacheBlendEngine = cr("CacheBlendEngine", name, namespace, &spec);
                        let c = render_blend_engine(&e, &RenderContext::new(domain)).unwrap();
                        let cm = &c.config_map.data.unwrap()["kv-transfer-config.json"];
                        let injected = blend_kv_transfer_config(&e.spec, name, namespace, domain);
                        assert_eq!(cm, &injected);
                        let parsed: Value = serde_json::from_str(cm).unwrap();
                        let extra = &parsed["kv_connector_extra_config"];
                        assert_eq!(extra["cb.recomp_ratio"].as_f64(), Some(ratio.parse().unwrap()));
                        assert_eq!(extra["lmcache.mp.port"], port.to_string());
                        assert_eq!(
                            extra["lmcache.mp.host"],
                            format!("tcp://{name}.{namespace}.svc.{domain}")
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 3 * 4 * 5 * 3 * 2);
    let e: CacheBlendEngine = cr(
        "CacheBlendEngine",
        "cb",
        "default",
        &format!("{BLEND_MINIMAL}\nblend: {{recompRatio: 1}}"),
    );
    assert!(
        blend_kv_transfer_config(&e.spec, "cb", "default", "cluster.local")
            .contains("\"cb.recomp_ratio\": 1\n")
    );
}

// ---------------------------------------------------------------------------------------------
// §G LMCacheCoordinator.

fn coordinator_labels(component: bool) -> BTreeMap<String, String> {
    let mut l = map(&[
        ("app.kubernetes.io/name", "lmcache-coordinator"),
        ("app.kubernetes.io/instance", "my-coordinator"),
        ("app.kubernetes.io/managed-by", "lmcache-operator"),
    ]);
    if component {
        l.insert("app.kubernetes.io/component".into(), "coordinator".into());
    }
    l
}

#[test]
fn g107_minimal_coordinator() {
    let c = coordinator("port: 9300");
    let d = c.deployment.spec.as_ref().unwrap();
    assert_eq!(d.replicas, Some(1));
    assert!(d.strategy.is_none());
    assert_eq!(d.selector.match_labels, Some(coordinator_labels(false)));
    let t = d.template.metadata.as_ref().unwrap();
    assert_eq!(t.labels, Some(coordinator_labels(true)));
    assert!(t.annotations.is_none());
    let p = d.template.spec.as_ref().unwrap();
    assert_eq!(p.containers.len(), 1);
    let k = &p.containers[0];
    assert_eq!(k.name, "coordinator");
    assert_eq!(k.image.as_deref(), Some("lmcache/vllm-openai:latest"));
    assert_eq!(k.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(k.command, Some(words("/opt/venv/bin/lmcache coordinator")));
    assert_eq!(
        k.args,
        Some(words(
            "--host 0.0.0.0 --port 9300 --instance-timeout 30 --health-check-interval 10
             --eviction-check-interval 5 --eviction-ratio 0.2 --trigger-watermark 1
             --hash-algorithm blake3"
        ))
    );
    assert_eq!(
        service_spec(&c.service),
        json!({"type": "ClusterIP", "selector": coordinator_labels(false),
               "ports": [{"name": "http", "port": 9300, "targetPort": 9300, "protocol": "TCP"}]})
    );
    assert!(c.metrics_service.is_none() && c.service_monitor.is_none());
    for meta in [&c.deployment.metadata, &c.service.metadata] {
        assert_eq!(meta.labels, Some(coordinator_labels(true)));
        assert_eq!(
            to_value(meta.owner_references.as_ref().unwrap()),
            owner_refs("LMCacheCoordinator", "my-coordinator")
        );
    }
    assert_eq!(
        coordinator_url("my-coordinator", "default", 9300),
        "http://my-coordinator.default.svc:9300"
    );
}

#[test]
fn g108_coordinator_container_and_pod() {
    let c = coordinator("port: 9300");
    let p = c.deployment.spec.as_ref().unwrap().template.spec.clone().unwrap();
    let k = &p.containers[0];
    assert_eq!(
        to_value(&k.ports),
        json!([{"name": "http", "containerPort": 9300, "protocol": "TCP"}])
    );
    assert_eq!(
        env_pairs(k.env.as_ref().unwrap()),
        pairs(&[("LMCACHE_LOG_LEVEL", "INFO")])
    );
    let http = json!({"path": "/healthz", "port": 9300, "scheme": "HTTP"});
    assert_eq!(
        to_value(&k.startup_probe),
        json!({"httpGet": http, "initialDelaySeconds": 5, "periodSeconds": 5, "failureThreshold": 30})
    );
    assert_eq!(
        to_value(&k.liveness_probe),
        json!({"httpGet": http, "periodSeconds": 10, "failureThreshold": 3})
    );
    assert_eq!(
        to_value(&k.readiness_probe),
        json!({"httpGet": http, "periodSeconds": 5, "failureThreshold": 3})
    );
    assert!(k.resources.is_none() && k.security_context.is_none());
    assert_eq!(p.automount_service_account_token, Some(false));
    let mut rest = p.clone();
    rest.containers = vec![];
    rest.automount_service_account_token = None;
    assert_eq!(
        rest,
        PodSpec::default(),
        "no hostIPC, runtimeClassName or nodeSelector"
    );

    // Metrics live on the HTTP port: disabling them is a flag, not a missing port.
    let c = coordinator("prometheus: {enabled: false}");
    let k = &c.deployment.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(k.ports.as_ref().unwrap().len(), 1);
    assert_eq!(
        k.args.as_ref().unwrap().last().map(String::as_str),
        Some("--disable-metrics")
    );
}

#[test]
fn g109_j3_blend_flags_and_extra_args() {
    let c = coordinator(
        "blendChunkSize: 256\nblendProbeStride: 4\nblendLookup: true\nhashAlgorithm: sha256_cbor\ninstanceTimeout: 12.5\nextraArgs: ['--timeout-keep-alive', '30']",
    );
    let k = &c.deployment.spec.unwrap().template.spec.unwrap().containers[0];
    // J3: the released coordinator's spellings (`--blend-chunk-size` makes it exit 2).
    assert_eq!(
        k.args,
        Some(words(
            "--host 0.0.0.0 --port 9300 --instance-timeout 12.5 --health-check-interval 10
             --eviction-check-interval 5 --eviction-ratio 0.2 --trigger-watermark 1
             --hash-algorithm sha256_cbor --chunk-size 256 --blend-probe-stride 4
             --enable-blend-lookup --timeout-keep-alive 30"
        ))
    );
    let c = coordinator("{}");
    let a = c.deployment.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(
        !a.iter()
            .any(|a| a.starts_with("--blend") || a.starts_with("--chunk-size"))
    );
    assert!(!a.contains(&"--enable-blend-lookup".to_string()));
}

#[test]
fn g110_metrics_service_and_service_monitor() {
    let c = coordinator("prometheus: {serviceMonitor: {enabled: true}}");
    let ms = c.metrics_service.unwrap();
    assert_eq!(ms.metadata.name.as_deref(), Some("my-coordinator-metrics"));
    assert_eq!(
        service_spec(&ms),
        json!({"clusterIP": "None", "selector": coordinator_labels(false),
               "ports": [{"name": "metrics", "port": 9300, "targetPort": "http", "protocol": "TCP"}]})
    );
    let sm = c.service_monitor.unwrap();
    assert_eq!(sm.metadata.labels, Some(coordinator_labels(true)));
    assert_eq!(
        to_value(&sm.spec),
        json!({"selector": {"matchLabels": coordinator_labels(false)},
               "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}]})
    );
    let c = coordinator("prometheus: {enabled: false, serviceMonitor: {enabled: true}}");
    assert!(c.metrics_service.is_none() && c.service_monitor.is_none());
}

#[test]
fn coordinator_env_pull_secrets_and_node_selector() {
    let c = coordinator(
        "logLevel: DEBUG\nenv: [{name: LMCACHE_LOG_LEVEL, value: ERROR}, {name: X, value: '1'}]\nimagePullSecrets: [{name: a}, {name: a}]\nnodeSelector: {pool: cpu}\npodLabels: {app.kubernetes.io/instance: evil, team: t}",
    );
    let d = c.deployment.spec.unwrap();
    let p = d.template.spec.unwrap();
    assert_eq!(
        env_pairs(p.containers[0].env.as_ref().unwrap()),
        pairs(&[("LMCACHE_LOG_LEVEL", "ERROR"), ("X", "1")])
    );
    assert_eq!(to_value(&p.image_pull_secrets), json!([{"name": "a"}]));
    assert_eq!(p.node_selector, Some(map(&[("pool", "cpu")])));
    let mut labels = coordinator_labels(true);
    labels.insert("team".into(), "t".into());
    assert_eq!(d.template.metadata.unwrap().labels, Some(labels));
}

// ---------------------------------------------------------------------------------------------
// Determinism and multi-tenancy.

#[test]
fn same_input_same_bytes() {
    for name in [
        "engine-everything.yaml",
        "production.yaml",
        "cacheblend-tuned.yaml",
        "coordinator-service-monitor.yaml",
        "l2-backends.yaml",
    ] {
        let input = common::fixture(name);
        let first = common::render_fixture(&input, common::DOMAIN);
        for _ in 0..5 {
            assert_eq!(common::render_fixture(&input, common::DOMAIN), first, "{name}");
        }
    }
    // Map key order in the input does not matter.
    let a = engine(
        "l1: {sizeGB: 60}\nl2Backends: [{type: fs, config: {b: 1, a: 2, c: {z: 1, y: 2}}}]\npodLabels: {b: '1', a: '2'}",
    );
    let b = engine(
        "podLabels: {a: '2', b: '1'}\nl2Backends: [{config: {c: {y: 2, z: 1}, a: 2, b: 1}, type: fs}]\nl1: {sizeGB: 60}",
    );
    assert_eq!(
        serde_json::to_string(&a.daemon_set).unwrap(),
        serde_json::to_string(&b.daemon_set).unwrap()
    );
}

#[test]
fn mt3_mt7_same_name_in_two_namespaces() {
    let a: LMCacheEngine = cr("LMCacheEngine", "cache", "team-a", "l1: {sizeGB: 60}");
    let b: LMCacheEngine = cr(
        "LMCacheEngine",
        "cache",
        "team-b",
        "l1: {sizeGB: 60}\nserver: {port: 6555}",
    );
    let ctx = RenderContext::new(common::DOMAIN);
    let (ca, cb) = (render_engine(&a, &ctx).unwrap(), render_engine(&b, &ctx).unwrap());
    for (c, ns) in [(&ca, "team-a"), (&cb, "team-b")] {
        assert!(all_meta(c).iter().all(|m| m.namespace.as_deref() == Some(ns)));
    }
    let json = |c: &EngineChildren| c.config_map.data.clone().unwrap()["kv-transfer-config.json"].clone();
    assert!(json(&ca).contains("tcp://cache.team-a.svc.cluster.local") && json(&ca).contains("\"5555\""));
    assert!(json(&cb).contains("tcp://cache.team-b.svc.cluster.local") && json(&cb).contains("\"6555\""));
}

#[test]
fn mt14_service_monitors_have_no_namespace_selector() {
    let c = engine("l1: {sizeGB: 60}\nprometheus: {serviceMonitor: {enabled: true}}");
    let v = to_value(&c.service_monitor.unwrap());
    assert_eq!(
        v["spec"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["endpoints", "selector"]
    );
}

#[test]
fn lifecycle_6_token_only_with_a_user_service_account() {
    for (input, want) in [
        ("l1: {sizeGB: 60}", Some(false)),
        ("l1: {sizeGB: 60}\nserviceAccountName: reader", None),
    ] {
        let c = engine(input);
        assert_eq!(pod(&c).automount_service_account_token, want, "{input}");
    }
    let c = coordinator("serviceAccountName: reader");
    let p = c.deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(p.automount_service_account_token, None);
    assert_eq!(p.service_account_name.as_deref(), Some("reader"));
}
