//! A typed `monitoring.coreos.com/v1` ServiceMonitor with only the fields the operator sets,
//! so it can be server-side applied like the built-in kinds.

use crate::engine::HTTP_PORT_NAME;
use crate::pod::named_target_port;
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The subset of the Prometheus Operator's ServiceMonitor spec the operator writes. No
/// `namespaceSelector`: it selects Services in its own namespace only (MT-14).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1",
    kind = "ServiceMonitor",
    plural = "servicemonitors",
    namespaced,
    schema = "disabled",
    derive = "PartialEq",
    crates(kube_core = "::kube::core", k8s_openapi = "::k8s_openapi")
)]
pub struct ServiceMonitorSpec {
    /// Services to scrape.
    pub selector: LabelSelector,
    /// Scrape endpoints.
    pub endpoints: Vec<Endpoint>,
}

/// `spec.selector` (only `matchLabels`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels a Service must carry.
    pub match_labels: BTreeMap<String, String>,
}

/// One scrape endpoint (only `port`, `path` and `interval`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Name of the Service port.
    pub port: String,
    /// HTTP path of the metrics endpoint.
    pub path: String,
    /// Scrape interval, a Prometheus duration.
    pub interval: String,
}

/// Name of the metrics Service's port, which the ServiceMonitor scrapes.
const METRICS_PORT_NAME: &str = "metrics";

/// The headless metrics Service `N-metrics` of an engine or a coordinator: port `metrics` on
/// `http_port`, targeting the container's `http` port, where LMCache serves `/metrics` (not on
/// `prometheus.port`).
pub(crate) fn metrics_service(
    meta: ObjectMeta,
    selector: &BTreeMap<String, String>,
    http_port: i32,
) -> Service {
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            selector: Some(selector.clone()),
            ports: Some(vec![named_target_port(
                METRICS_PORT_NAME,
                http_port,
                HTTP_PORT_NAME,
            )]),
            ..Default::default()
        }),
        status: None,
    }
}

/// A ServiceMonitor scraping `/metrics` on port `metrics` of the Services matching `selector`.
pub(crate) fn service_monitor(
    meta: ObjectMeta,
    selector: BTreeMap<String, String>,
    interval: &str,
) -> ServiceMonitor {
    ServiceMonitor {
        metadata: meta,
        spec: ServiceMonitorSpec {
            selector: LabelSelector {
                match_labels: selector,
            },
            endpoints: vec![Endpoint {
                port: METRICS_PORT_NAME.to_string(),
                path: crate::engine::METRICS_PATH.to_string(),
                interval: interval.to_string(),
            }],
        },
    }
}
