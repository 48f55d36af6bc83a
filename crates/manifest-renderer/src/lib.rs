//! Pure rendering of every object the LMCache operator creates for its custom resources.
//!
//! No client, no I/O: a validated spec with its defaults applied (plus, for
//! `spec.coordinator.ref`, the coordinator URL the caller resolved) in, typed k8s-openapi objects
//! out, containing exactly the fields the specification lists so that server-side apply sends
//! nothing the API server would default. The same input always gives the same bytes.
//!
//! * [`render_engine`] / [`render_blend_engine`] → [`EngineChildren`] (DaemonSet, lookup Service,
//!   metrics Service, connection ConfigMap, optional [`ServiceMonitor`]);
//! * [`render_coordinator`] → [`CoordinatorChildren`];
//! * [`render_documents`]: the offline render core (CR YAML in, child YAML out), decoding and
//!   validating with `lmcache-validation` exactly as the operator does;
//! * [`kv_transfer_config`] / [`blend_kv_transfer_config`]: the connection JSON, shared with the
//!   webhook so the injected `--kv-transfer-config` equals the ConfigMap byte for byte.
//!
//! ```
//! use lmcache_api::v1alpha1::LMCacheEngine;
//! use lmcache_manifest_renderer::{RenderContext, render_engine};
//!
//! let engine: LMCacheEngine = serde_json::from_value(serde_json::json!({
//!     "apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": "LMCacheEngine",
//!     "metadata": {"name": "my-cache", "namespace": "default"},
//!     "spec": {"l1": {"sizeGB": 60}},
//! }))?;
//! let children = render_engine(&engine, &RenderContext::new("cluster.local"))?;
//! assert_eq!(children.config_map.metadata.name.as_deref(), Some("my-cache-connection"));
//! assert!(children.service_monitor.is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod args;
pub mod connection;
mod coordinator;
mod engine;
mod env;
mod error;
pub mod json;
pub mod labels;
mod meta;
pub mod number;
mod offline;
mod pod;
pub mod service_monitor;
pub mod yaml;

pub use connection::{ConnectionKind, blend_kv_transfer_config, kv_transfer_config};
pub use coordinator::{
    COORDINATOR_COMMAND, COORDINATOR_CONTAINER, CoordinatorChildren, coordinator_url, render_coordinator,
};
pub use engine::{
    ENGINE_COMMAND, ENGINE_CONTAINER, EngineChildren, HTTP_PORT_NAME, METRICS_PATH, PYTHON_HASH_SEED,
    PYTHON_HASH_SEED_ENV, render_blend_engine, render_engine, resolve_coordinator_url,
};
pub use error::RenderError;
pub use labels::{Component, selector_labels, standard_labels, with_user_labels};
pub use offline::{DEFAULT_NAMESPACE, render_documents};
pub use service_monitor::ServiceMonitor;

/// Settings that do not come from the custom resource itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderContext<'a> {
    /// Cluster DNS domain (`--cluster-domain`, default `cluster.local`), used in the
    /// connection JSON host `tcp://N.S.svc.D`.
    pub cluster_domain: &'a str,
    /// The resolved coordinator URL when `spec.coordinator.ref` is used (the operator looks
    /// the coordinator up, see [`coordinator_url`]); ignored when `spec.coordinator.url` is set.
    pub coordinator_url: Option<&'a str>,
}

impl<'a> RenderContext<'a> {
    /// A context with no resolved coordinator.
    pub fn new(cluster_domain: &'a str) -> Self {
        Self {
            cluster_domain,
            coordinator_url: None,
        }
    }

    /// The same context with `url` as the resolved coordinator URL.
    pub fn with_coordinator_url(self, url: &'a str) -> Self {
        Self {
            coordinator_url: Some(url),
            ..self
        }
    }
}
