//! The kinds of child objects and the helpers to read them as JSON.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::core::{ApiResource, GroupVersionKind};
use lmcache_manifest_renderer::ServiceMonitor;
use serde_json::Value;
use std::fmt;

/// Field manager of every child write.
pub const FIELD_MANAGER: &str = "lmcache-operator";
/// Field manager of status writes.
pub const STATUS_FIELD_MANAGER: &str = "lmcache-operator/status";

/// A kind of object the operator creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChildKind {
    /// `apps/v1` DaemonSet (engines).
    DaemonSet,
    /// `apps/v1` Deployment (coordinators).
    Deployment,
    /// `v1` Service.
    Service,
    /// `v1` ConfigMap.
    ConfigMap,
    /// `monitoring.coreos.com/v1` ServiceMonitor.
    ServiceMonitor,
}

impl ChildKind {
    /// The Kubernetes kind name (used in NameConflict messages).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DaemonSet => "DaemonSet",
            Self::Deployment => "Deployment",
            Self::Service => "Service",
            Self::ConfigMap => "ConfigMap",
            Self::ServiceMonitor => "ServiceMonitor",
        }
    }

    /// Group, version, kind and plural for dynamic API calls.
    pub fn api_resource(self) -> ApiResource {
        match self {
            Self::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
            Self::Deployment => ApiResource::erase::<Deployment>(&()),
            Self::Service => ApiResource::erase::<Service>(&()),
            Self::ConfigMap => ApiResource::erase::<ConfigMap>(&()),
            Self::ServiceMonitor => service_monitor_resource(),
        }
    }
}

impl fmt::Display for ChildKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `monitoring.coreos.com/v1` `servicemonitors`.
pub fn service_monitor_resource() -> ApiResource {
    ApiResource::erase::<ServiceMonitor>(&())
}

/// The GVK of ServiceMonitors (for discovery).
pub fn service_monitor_gvk() -> GroupVersionKind {
    GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor")
}

/// The UID in `metadata.ownerReferences[controller=true]` of a child given as JSON.
pub fn controller_uid(child: &Value) -> Option<&str> {
    child
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?
        .get("uid")?
        .as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn controller_uid_ignores_non_controller_references() {
        let child = json!({"metadata": {"ownerReferences": [
            {"uid": "a", "controller": false},
            {"uid": "b", "controller": true},
        ]}});
        assert_eq!(controller_uid(&child), Some("b"));
        assert_eq!(controller_uid(&json!({"metadata": {}})), None);
        let child = json!({"metadata": {"ownerReferences": [{"uid": "a"}]}});
        assert_eq!(controller_uid(&child), None);
    }

    #[test]
    fn api_resources() {
        assert_eq!(ChildKind::DaemonSet.api_resource().plural, "daemonsets");
        assert_eq!(
            ChildKind::ServiceMonitor.api_resource().group,
            "monitoring.coreos.com"
        );
        assert_eq!(ChildKind::ServiceMonitor.api_resource().plural, "servicemonitors");
    }
}
