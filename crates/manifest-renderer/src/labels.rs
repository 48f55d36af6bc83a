//! Standard labels, selector labels and pod template labels (engine.md §2.1, README).

use lmcache_api::constants::labels;
use std::collections::BTreeMap;

/// Which family of objects the labels are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// LMCacheEngine and CacheBlendEngine children: `lmcache` / `cache-engine`.
    CacheEngine,
    /// LMCacheCoordinator children: `lmcache-coordinator` / `coordinator`.
    Coordinator,
}

impl Component {
    fn name_value(self) -> &'static str {
        match self {
            Self::CacheEngine => labels::ENGINE_NAME_VALUE,
            Self::Coordinator => labels::COORDINATOR_NAME_VALUE,
        }
    }

    fn component_value(self) -> &'static str {
        match self {
            Self::CacheEngine => labels::ENGINE_COMPONENT_VALUE,
            Self::Coordinator => labels::COORDINATOR_COMPONENT_VALUE,
        }
    }
}

/// The three selector labels of the object family `component` for custom resource `instance`.
pub fn selector_labels(component: Component, instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::NAME.to_string(), component.name_value().to_string()),
        (labels::INSTANCE.to_string(), instance.to_string()),
        (
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        ),
    ])
}

/// The four standard labels: the selector labels plus `app.kubernetes.io/component`.
pub fn standard_labels(component: Component, instance: &str) -> BTreeMap<String, String> {
    let mut out = selector_labels(component, instance);
    out.insert(
        labels::COMPONENT.to_string(),
        component.component_value().to_string(),
    );
    out
}

/// Pod template labels: standard labels, overlaid by the user's `podLabels`, overlaid again by
/// the selector labels so users can never change what the selector matches.
pub fn pod_template_labels(
    component: Component,
    instance: &str,
    pod_labels: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut out = standard_labels(component, instance);
    if let Some(user) = pod_labels {
        out.extend(user.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out.extend(selector_labels(component, instance));
    out
}
