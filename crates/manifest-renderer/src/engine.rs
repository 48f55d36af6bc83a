//! LMCacheEngine and CacheBlendEngine children (engine.md §1–§7, cacheblend.md §1–§3).

use crate::RenderContext;
use crate::args::engine_args;
use crate::connection::{ConnectionKind, kv_transfer_config};
use crate::env;
use crate::error::RenderError;
use crate::labels::{Component, selector_labels, standard_labels, with_user_labels};
use crate::meta::Owner;
use crate::pod::{self, cloned_map, container_port, service_port};
use crate::service_monitor::{ServiceMonitor, metrics_service, service_monitor};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe,
    SecurityContext, Service, ServiceSpec, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use lmcache_api::constants::{
    CONNECTION_CONFIG_KEY, CONNECTION_SUFFIX, KIND_BLEND_ENGINE, KIND_ENGINE, METRICS_SUFFIX,
};
use lmcache_api::v1alpha1::{CacheBlendEngine, EngineSpec, LMCacheEngine};
use lmcache_resource_calculator::engine_resources;
use std::collections::BTreeMap;

/// Container name of engine pods.
pub const ENGINE_CONTAINER: &str = "lmcache";
/// Command of engine containers.
pub const ENGINE_COMMAND: [&str; 2] = ["/opt/venv/bin/lmcache", "server"];
/// Runtime class of engine pods (CUDA IPC with vLLM on the same GPU).
pub const RUNTIME_CLASS: &str = "nvidia";
/// Name of the container port of the HTTP frontend (`/metrics`, coordinator callbacks).
pub const HTTP_PORT_NAME: &str = "http";
/// Path of the metrics endpoint on the HTTP frontend (engines and coordinators).
pub const METRICS_PATH: &str = "/metrics";
/// Env var carrying the pod IP the engine advertises to the coordinator.
pub const ADVERTISE_IP_ENV: &str = "LMCACHE_COORDINATOR_ADVERTISE_IP";
/// Env var seeding Python's `hash()` on engine pods and injected vLLM pods.
pub const PYTHON_HASH_SEED_ENV: &str = "PYTHONHASHSEED";
/// The seed both sides use.
pub const PYTHON_HASH_SEED: &str = "0";

/// Everything the operator creates for one engine, in apply order.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineChildren {
    /// DaemonSet `N`.
    pub daemon_set: DaemonSet,
    /// Node-local lookup Service `N`.
    pub service: Service,
    /// Headless metrics Service `N-metrics` (always rendered), on the HTTP frontend.
    pub metrics_service: Service,
    /// ConfigMap `N-connection`.
    pub config_map: ConfigMap,
    /// ServiceMonitor `N`, only when `prometheus.enabled` and `serviceMonitor.enabled`.
    pub service_monitor: Option<ServiceMonitor>,
}

/// Renders the children of an LMCacheEngine whose spec has its defaults applied (deserialising
/// through `lmcache-api` does that) and has passed validation.
pub fn render_engine(engine: &LMCacheEngine, ctx: &RenderContext<'_>) -> Result<EngineChildren, RenderError> {
    let owner = Owner::from_meta(KIND_ENGINE, &engine.metadata)?;
    render(&owner, &engine.spec.engine, ConnectionKind::Engine, ctx)
}

/// Renders the children of a CacheBlendEngine: the engine children with the blend flags and the
/// CBKVConnector JSON.
pub fn render_blend_engine(
    engine: &CacheBlendEngine,
    ctx: &RenderContext<'_>,
) -> Result<EngineChildren, RenderError> {
    let owner = Owner::from_meta(KIND_BLEND_ENGINE, &engine.metadata)?;
    render(
        &owner,
        &engine.spec.engine,
        ConnectionKind::Blend(&engine.spec.blend),
        ctx,
    )
}

/// The coordinator URL for `--coordinator-url`: `url` verbatim, otherwise the caller's
/// resolution of `ref`; `None` without a coordinator.
pub fn resolve_coordinator_url(
    spec: &EngineSpec,
    ctx: &RenderContext<'_>,
) -> Result<Option<String>, RenderError> {
    let Some(coordinator) = &spec.coordinator else {
        return Ok(None);
    };
    match (&coordinator.url, &coordinator.ref_) {
        (Some(url), _) => Ok(Some(url.clone())),
        (None, Some(_)) => ctx
            .coordinator_url
            .map(|u| Some(u.to_string()))
            .ok_or(RenderError::UnresolvedCoordinator),
        (None, None) => Err(RenderError::CoordinatorWithoutTarget),
    }
}

fn render(
    owner: &Owner<'_>,
    spec: &EngineSpec,
    kind: ConnectionKind<'_>,
    ctx: &RenderContext<'_>,
) -> Result<EngineChildren, RenderError> {
    let coordinator_url = resolve_coordinator_url(spec, ctx)?;
    let blend = matches!(kind, ConnectionKind::Blend(_));
    let name = owner.name;
    let labels = standard_labels(Component::CacheEngine, name);
    let selector = selector_labels(Component::CacheEngine, name);

    let daemon_set = DaemonSet {
        metadata: owner.child_meta(name.to_string(), labels.clone()),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(pod::template_metadata(Component::CacheEngine, name, &spec.pod)),
                spec: Some(pod_spec(
                    spec,
                    engine_args(spec, coordinator_url.as_deref(), blend),
                )),
            },
            update_strategy: Some(update_strategy(spec)),
            ..Default::default()
        }),
        status: None,
    };

    let service = Service {
        metadata: owner.child_meta(name.to_string(), labels.clone()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            internal_traffic_policy: Some("Local".to_string()),
            selector: Some(selector.clone()),
            ports: Some(vec![service_port("server", spec.server.port)]),
            ..Default::default()
        }),
        status: None,
    };

    let metrics_service = metrics_service(
        owner.child_meta(format!("{name}{METRICS_SUFFIX}"), labels.clone()),
        &selector,
        spec.server.http_port,
    );

    let json = kv_transfer_config(kind, spec, name, owner.namespace, ctx.cluster_domain);
    let config_map = ConfigMap {
        metadata: owner.child_meta(format!("{name}{CONNECTION_SUFFIX}"), labels.clone()),
        data: Some(BTreeMap::from([(CONNECTION_CONFIG_KEY.to_string(), json)])),
        ..Default::default()
    };

    let monitor = &spec.prometheus.service_monitor;
    let service_monitor = (spec.prometheus.enabled && monitor.enabled).then(|| {
        let sm_labels = with_user_labels(Component::CacheEngine, name, monitor.labels.as_ref());
        service_monitor(
            owner.child_meta(name.to_string(), sm_labels),
            selector.clone(),
            &monitor.interval,
        )
    });

    Ok(EngineChildren {
        daemon_set,
        service,
        metrics_service,
        config_map,
        service_monitor,
    })
}

/// `spec.updateStrategy`, always explicit (the default is today's behaviour: one pod at a
/// time). `maxSurge` is 0: a surge pod would be a second engine on the node, both behind the
/// node-local Service.
fn update_strategy(spec: &EngineSpec) -> DaemonSetUpdateStrategy {
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    match strategy.max_unavailable() {
        Some(max_unavailable) => DaemonSetUpdateStrategy {
            type_: Some("RollingUpdate".to_string()),
            rolling_update: Some(RollingUpdateDaemonSet {
                max_unavailable: Some(max_unavailable),
                max_surge: Some(IntOrString::Int(0)),
            }),
        },
        None => DaemonSetUpdateStrategy {
            type_: Some("OnDelete".to_string()),
            rolling_update: None,
        },
    }
}

fn pod_spec(spec: &EngineSpec, args: Vec<String>) -> PodSpec {
    PodSpec {
        host_ipc: Some(true),
        runtime_class_name: Some(RUNTIME_CLASS.to_string()),
        node_selector: cloned_map(Some(&spec.node_selector)),
        containers: vec![container(spec, args)],
        ..pod::pod_spec(&spec.pod)
    }
}

fn container(spec: &EngineSpec, args: Vec<String>) -> Container {
    let port = spec.server.port;
    let ports = vec![
        container_port("server", port),
        container_port(HTTP_PORT_NAME, spec.server.http_port),
    ];
    Container {
        name: ENGINE_CONTAINER.to_string(),
        image: Some(spec.image.reference()),
        image_pull_policy: Some(spec.image.pull_policy.as_str().to_string()),
        command: Some(ENGINE_COMMAND.map(str::to_string).to_vec()),
        args: Some(args),
        ports: Some(ports),
        resources: Some(engine_resources(
            spec.l1.size_gb,
            spec.pod.resource_overrides.as_ref(),
        )),
        security_context: Some(SecurityContext {
            privileged: Some(true),
            ..Default::default()
        }),
        startup_probe: Some(Probe {
            initial_delay_seconds: Some(5),
            period_seconds: Some(5),
            failure_threshold: Some(30),
            ..tcp_probe(port)
        }),
        liveness_probe: Some(Probe {
            period_seconds: Some(10),
            ..tcp_probe(port)
        }),
        readiness_probe: Some(Probe {
            period_seconds: Some(5),
            ..tcp_probe(port)
        }),
        ..pod::container(&spec.pod, engine_env(spec))
    }
}

fn tcp_probe(port: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(port),
            host: None,
        }),
        ..Default::default()
    }
}

/// engine.md §3.4 with conformance.md §2.2: log level, `NVIDIA_VISIBLE_DEVICES`,
/// `PYTHONHASHSEED`, the advertise IP with a coordinator; `spec.env` follows with the
/// de-duplication rule ([`pod::container`]).
fn engine_env(spec: &EngineSpec) -> Vec<EnvVar> {
    let mut base = vec![
        env::plain("LMCACHE_LOG_LEVEL", spec.log_level.as_str()),
        env::plain("NVIDIA_VISIBLE_DEVICES", "all"),
        // `hashAlgorithm: builtin` hashes with Python's `hash()`, which only agrees between
        // vLLM and the server when both are seeded alike; the webhooks set the same value.
        env::plain(PYTHON_HASH_SEED_ENV, PYTHON_HASH_SEED),
    ];
    if spec.coordinator.is_some() {
        base.push(EnvVar {
            name: ADVERTISE_IP_ENV.to_string(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: Some("v1".to_string()),
                    field_path: "status.podIP".to_string(),
                }),
                ..Default::default()
            }),
        });
    }
    base
}
