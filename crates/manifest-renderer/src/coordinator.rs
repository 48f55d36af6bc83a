//! LMCacheCoordinator children (coordinator.md §1–§5).

use crate::RenderContext;
use crate::args::coordinator_args;
use crate::engine::HTTP_PORT_NAME;
use crate::env;
use crate::error::RenderError;
use crate::labels::{Component, selector_labels, standard_labels};
use crate::meta::Owner;
use crate::pod::{self, cloned_map, container_port, service_port};
use crate::service_monitor::{ServiceMonitor, metrics_service, service_monitor};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, PodSpec, PodTemplateSpec, Probe, Service, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use lmcache_api::constants::{KIND_COORDINATOR, METRICS_SUFFIX};
use lmcache_api::v1alpha1::{CoordinatorSpec, LMCacheCoordinator};

/// Container name of coordinator pods.
pub const COORDINATOR_CONTAINER: &str = "coordinator";
/// Command of coordinator containers.
pub const COORDINATOR_COMMAND: [&str; 2] = ["/opt/venv/bin/lmcache", "coordinator"];
/// Health endpoint probed on the coordinator's HTTP port.
pub const HEALTH_PATH: &str = "/healthz";

/// Everything the operator creates for one coordinator, in apply order.
#[derive(Clone, Debug, PartialEq)]
pub struct CoordinatorChildren {
    /// Deployment `N`.
    pub deployment: Deployment,
    /// ClusterIP Service `N`.
    pub service: Service,
    /// Headless Service `N-metrics`, only when `prometheus.enabled` and `serviceMonitor.enabled`.
    pub metrics_service: Option<Service>,
    /// ServiceMonitor `N`, same condition as `metrics_service`.
    pub service_monitor: Option<ServiceMonitor>,
}

/// `http://N.S.svc:PORT`: the coordinator's `status.endpoint` and what `coordinator.ref`
/// resolves to.
pub fn coordinator_url(name: &str, namespace: &str, port: i32) -> String {
    format!("http://{name}.{namespace}.svc:{port}")
}

/// Renders the children of an LMCacheCoordinator whose spec has its defaults applied and has
/// passed validation. The context is accepted for symmetry; nothing in it applies.
pub fn render_coordinator(
    c: &LMCacheCoordinator,
    _ctx: &RenderContext<'_>,
) -> Result<CoordinatorChildren, RenderError> {
    let owner = Owner::from_meta(KIND_COORDINATOR, &c.metadata)?;
    let spec = &c.spec;
    let name = owner.name;
    let labels = standard_labels(Component::Coordinator, name);
    let selector = selector_labels(Component::Coordinator, name);

    let deployment = Deployment {
        metadata: owner.child_meta(name.to_string(), labels.clone()),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(pod::template_metadata(Component::Coordinator, name, &spec.pod)),
                spec: Some(pod_spec(spec)),
            },
            ..Default::default()
        }),
        status: None,
    };

    let service = Service {
        metadata: owner.child_meta(name.to_string(), labels.clone()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(selector.clone()),
            ports: Some(vec![service_port(HTTP_PORT_NAME, spec.port)]),
            ..Default::default()
        }),
        status: None,
    };

    let monitored = spec.prometheus.enabled && spec.prometheus.service_monitor.enabled;
    // The coordinator's HTTP port is `spec.port`.
    let metrics_service = monitored.then(|| {
        metrics_service(
            owner.child_meta(format!("{name}{METRICS_SUFFIX}"), labels.clone()),
            &selector,
            spec.port,
        )
    });
    let service_monitor = monitored.then(|| {
        service_monitor(
            owner.child_meta(name.to_string(), labels.clone()),
            selector.clone(),
            &spec.prometheus.service_monitor.interval,
        )
    });

    Ok(CoordinatorChildren {
        deployment,
        service,
        metrics_service,
        service_monitor,
    })
}

fn pod_spec(spec: &CoordinatorSpec) -> PodSpec {
    PodSpec {
        node_selector: cloned_map(spec.node_selector.as_ref()),
        containers: vec![container(spec)],
        ..pod::pod_spec(&spec.pod)
    }
}

fn container(spec: &CoordinatorSpec) -> Container {
    let ports = vec![container_port(HTTP_PORT_NAME, spec.port)];
    let base = vec![env::plain("LMCACHE_LOG_LEVEL", spec.log_level.as_str())];
    Container {
        name: COORDINATOR_CONTAINER.to_string(),
        image: Some(spec.image.reference()),
        image_pull_policy: Some(spec.image.pull_policy.as_str().to_string()),
        command: Some(COORDINATOR_COMMAND.map(str::to_string).to_vec()),
        args: Some(coordinator_args(spec)),
        ports: Some(ports),
        resources: spec.pod.resource_overrides.clone(),
        startup_probe: Some(Probe {
            initial_delay_seconds: Some(5),
            period_seconds: Some(5),
            failure_threshold: Some(30),
            ..http_probe(spec.port)
        }),
        liveness_probe: Some(Probe {
            period_seconds: Some(10),
            failure_threshold: Some(3),
            ..http_probe(spec.port)
        }),
        readiness_probe: Some(Probe {
            period_seconds: Some(5),
            failure_threshold: Some(3),
            ..http_probe(spec.port)
        }),
        ..pod::container(&spec.pod, base)
    }
}

fn http_probe(port: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(HEALTH_PATH.to_string()),
            port: IntOrString::Int(port),
            scheme: Some("HTTP".to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}
