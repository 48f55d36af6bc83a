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

/// The labels of an object the user adds labels to (the pod template: `podLabels`; an
/// engine's ServiceMonitor: `serviceMonitor.labels`): the standard labels, overlaid by the
/// user's, overlaid again by the selector labels, so users can never change what a selector
/// matches nor hide the object from the operator's caches, which select `managed-by`.
pub fn with_user_labels(
    component: Component,
    instance: &str,
    user: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut out = standard_labels(component, instance);
    if let Some(user) = user {
        out.extend(user.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out.extend(selector_labels(component, instance));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selector_labels_are_the_api_s_selector_keys() {
        for component in [Component::CacheEngine, Component::Coordinator] {
            let selector = selector_labels(component, "x");
            let keys: Vec<&str> = selector.keys().map(String::as_str).collect();
            let mut want = labels::SELECTOR.to_vec();
            want.sort_unstable();
            assert_eq!(keys, want);
        }
    }
}
