//! `spec.updateStrategy` of both engine kinds: how engine pods are replaced when the rendered
//! pod template changes, whether by a spec change or by an operator upgrade that renders a
//! different template for the same spec.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// CEL rule on `spec.updateStrategy` (E28).
pub const ROLLING_UPDATE_RULE: &str =
    "!has(self.rollingUpdate) || !has(self.type) || self.type == 'RollingUpdate'";
/// Message of [`ROLLING_UPDATE_RULE`].
pub const ROLLING_UPDATE_RULE_MESSAGE: &str = "rollingUpdate may only be set when type is RollingUpdate";
/// CEL rule on `spec.updateStrategy.rollingUpdate` (E29).
pub const MAX_UNAVAILABLE_RULE: &str = "!has(self.maxUnavailable) || (type(self.maxUnavailable) == int ? self.maxUnavailable >= 1 : string(self.maxUnavailable).matches('^([1-9][0-9]?|100)%$'))";
/// Message of [`MAX_UNAVAILABLE_RULE`].
pub const MAX_UNAVAILABLE_RULE_MESSAGE: &str =
    "maxUnavailable must be an integer of at least 1 or a percentage from 1% to 100%";

/// How engine pods are replaced when their template changes. Rendered into the DaemonSet's
/// `spec.updateStrategy` with `maxSurge: 0` (two engines on one node would both sit behind the
/// node-local Service).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": ROLLING_UPDATE_RULE, "message": ROLLING_UPDATE_RULE_MESSAGE},
]))]
pub struct UpdateStrategy {
    /// `RollingUpdate` (default): outdated engine pods are replaced node by node, at most
    /// `rollingUpdate.maxUnavailable` at a time. `OnDelete`: an engine pod is replaced only when
    /// you delete it (status lists the outdated nodes).
    #[serde(default, rename = "type")]
    pub type_: UpdateStrategyType,
    /// Settings of `RollingUpdate`; only with that type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
    /// After the engine pod on a node was replaced and the new one is Ready, evict (through the
    /// Eviction API, so PodDisruptionBudgets are respected) the vLLM pods in this namespace on
    /// that node that were wired to this engine and started before it became Ready: a vLLM
    /// pod does not recover from losing its cache server, its controller recreates it. Pods on
    /// other nodes are never touched. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_clients: bool,
}

/// `spec.updateStrategy.type`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UpdateStrategyType {
    /// Replace outdated pods automatically.
    #[default]
    RollingUpdate,
    /// Replace a pod only when it is deleted.
    OnDelete,
}

/// `spec.updateStrategy.rollingUpdate`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": MAX_UNAVAILABLE_RULE, "message": MAX_UNAVAILABLE_RULE_MESSAGE},
]))]
pub struct RollingUpdate {
    /// Engine pods that may be unavailable at once during a rollout: an integer of at least 1,
    /// or a percentage of the desired pods from `1%` to `100%` (rounded up). Default 1.
    #[serde(default = "default_max_unavailable")]
    pub max_unavailable: IntOrString,
}

impl Default for RollingUpdate {
    fn default() -> Self {
        Self {
            max_unavailable: default_max_unavailable(),
        }
    }
}

/// One engine pod at a time.
pub fn default_max_unavailable() -> IntOrString {
    IntOrString::Int(1)
}

/// Whether `value` is an acceptable `maxUnavailable` (the CEL rule, for stored objects the
/// API server did not check).
pub fn max_unavailable_is_valid(value: &IntOrString) -> bool {
    match value {
        IntOrString::Int(n) => *n >= 1,
        IntOrString::String(s) => s
            .strip_suffix('%')
            .and_then(|n| (!n.starts_with('0')).then_some(n))
            .and_then(|n| n.parse::<u8>().ok())
            .is_some_and(|n| (1..=100).contains(&n)),
    }
}

impl UpdateStrategy {
    /// The `maxUnavailable` rendered for `RollingUpdate` (none for `OnDelete`).
    pub fn max_unavailable(&self) -> Option<IntOrString> {
        match self.type_ {
            UpdateStrategyType::RollingUpdate => Some(
                self.rolling_update
                    .as_ref()
                    .map(|r| r.max_unavailable.clone())
                    .unwrap_or_else(default_max_unavailable),
            ),
            UpdateStrategyType::OnDelete => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_unavailable_accepts_positive_integers_and_1_to_100_percent() {
        let s = |v: &str| IntOrString::String(v.to_string());
        for ok in [
            IntOrString::Int(1),
            IntOrString::Int(7),
            s("1%"),
            s("50%"),
            s("99%"),
            s("100%"),
        ] {
            assert!(max_unavailable_is_valid(&ok), "{ok:?}");
        }
        for bad in [
            IntOrString::Int(0),
            IntOrString::Int(-1),
            s("0%"),
            s("00%"),
            s("05%"),
            s("101%"),
            s("abc"),
            s("1"),
            s("%"),
            s(""),
        ] {
            assert!(!max_unavailable_is_valid(&bad), "{bad:?}");
        }
    }

    #[test]
    fn defaults_are_one_pod_at_a_time() {
        let strategy: UpdateStrategy = serde_json::from_str("{}").unwrap();
        assert_eq!(strategy.max_unavailable(), Some(IntOrString::Int(1)));
        let on_delete: UpdateStrategy = serde_json::from_str(r#"{"type": "OnDelete"}"#).unwrap();
        assert_eq!(on_delete.max_unavailable(), None);
        let pct: UpdateStrategy =
            serde_json::from_str(r#"{"rollingUpdate": {"maxUnavailable": "25%"}}"#).unwrap();
        assert_eq!(pct.max_unavailable(), Some(IntOrString::String("25%".into())));
    }
}
