//! Render step: the rendered children turned into an ordered plan of applies and
//! delete-if-owned steps (engine.md §8 step 6, §7.2; coordinator.md §5).

use crate::children::ChildKind;
use crate::error::Error;
use crate::reconcile::status::rollout::ENGINE_GENERATION_ANNOTATION;
use lmcache_manifest_renderer::{CoordinatorChildren, EngineChildren};
use serde::Serialize;
use serde_json::Value;

/// One child to server-side apply.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredChild {
    /// Kind.
    pub kind: ChildKind,
    /// Name (in the owner's namespace).
    pub name: String,
    /// The complete apply body.
    pub body: Value,
}

/// What a reconcile writes, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Children to apply, in apply order.
    pub apply: Vec<DesiredChild>,
    /// Children to delete when they exist and are controlled by the owner.
    pub delete_if_owned: Vec<(ChildKind, String)>,
    /// A ServiceMonitor is wanted but the API is not served.
    pub service_monitor_unavailable: bool,
}

impl Plan {
    fn push<T: Serialize>(&mut self, kind: ChildKind, object: &T) -> Result<(), Error> {
        let body = serde_json::to_value(object)?;
        let name = body
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or(Error::MissingField("metadata.name"))?
            .to_string();
        self.apply.push(DesiredChild { kind, name, body });
        Ok(())
    }

    fn service_monitor<T: Serialize>(
        &mut self,
        wanted: Option<&T>,
        name: &str,
        api_available: bool,
    ) -> Result<(), Error> {
        match (wanted, api_available) {
            (Some(sm), true) => self.push(ChildKind::ServiceMonitor, sm)?,
            (Some(_), false) => self.service_monitor_unavailable = true,
            (None, true) => self
                .delete_if_owned
                .push((ChildKind::ServiceMonitor, name.to_string())),
            // No API, so no ServiceMonitor can exist.
            (None, false) => {}
        }
        Ok(())
    }

    /// DaemonSet, lookup Service, metrics Service, ConfigMap, then the ServiceMonitor. The
    /// DaemonSet carries the engine's `generation` it is applied for
    /// ([`ENGINE_GENERATION_ANNOTATION`]), which tells a later template change apart as a spec
    /// change or an operator upgrade.
    pub fn for_engine(
        children: &EngineChildren,
        owner: &str,
        generation: i64,
        sm_api: bool,
    ) -> Result<Self, Error> {
        let mut plan = Self::default();
        plan.push(ChildKind::DaemonSet, &children.daemon_set)?;
        if let Some(meta) = plan
            .apply
            .last_mut()
            .and_then(|ds| ds.body.get_mut("metadata"))
            .and_then(Value::as_object_mut)
        {
            let annotations = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if let Some(annotations) = annotations.as_object_mut() {
                annotations.insert(
                    ENGINE_GENERATION_ANNOTATION.to_string(),
                    Value::String(generation.to_string()),
                );
            }
        }
        plan.push(ChildKind::Service, &children.service)?;
        plan.push(ChildKind::Service, &children.metrics_service)?;
        plan.push(ChildKind::ConfigMap, &children.config_map)?;
        plan.service_monitor(children.service_monitor.as_ref(), owner, sm_api)?;
        Ok(plan)
    }

    /// Deployment, Service, then the metrics Service and ServiceMonitor (or their deletion).
    pub fn for_coordinator(children: &CoordinatorChildren, owner: &str, sm_api: bool) -> Result<Self, Error> {
        let mut plan = Self::default();
        plan.push(ChildKind::Deployment, &children.deployment)?;
        plan.push(ChildKind::Service, &children.service)?;
        match &children.metrics_service {
            Some(svc) => plan.push(ChildKind::Service, svc)?,
            None => plan.delete_if_owned.push((
                ChildKind::Service,
                format!("{owner}{}", lmcache_api::constants::METRICS_SUFFIX),
            )),
        }
        plan.service_monitor(children.service_monitor.as_ref(), owner, sm_api)?;
        Ok(plan)
    }
}
