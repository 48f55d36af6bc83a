//! The result of [`inject`](crate::inject).

use k8s_openapi::api::core::v1::Pod;
use lmcache_api::constants::skip_reasons;
use std::fmt;

/// Why an opted-in pod was not injected, in precedence order (the first that applies wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// No CacheBlendEngine of that name in the pod's namespace, or it is being deleted.
    EngineNotFound,
    /// The engine has no payload image repository.
    PayloadImageUnset,
    /// The named target container does not exist, or the pod has no containers.
    TargetContainerNotFound,
    /// The target container sets `command`, so appended args would not reach `vllm serve`.
    CommandOverride,
    /// The target container already passes `--kv-transfer-config`.
    KvTransferConfigPresent,
}

impl SkipReason {
    /// Every reason, in precedence order.
    pub const ALL: [SkipReason; 5] = [
        Self::EngineNotFound,
        Self::PayloadImageUnset,
        Self::TargetContainerNotFound,
        Self::CommandOverride,
        Self::KvTransferConfigPresent,
    ];

    /// The value of the `lmcache.ai/cacheblend-skip-reason` annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EngineNotFound => skip_reasons::ENGINE_NOT_FOUND,
            Self::PayloadImageUnset => skip_reasons::PAYLOAD_IMAGE_UNSET,
            Self::TargetContainerNotFound => skip_reasons::TARGET_CONTAINER_NOT_FOUND,
            Self::CommandOverride => skip_reasons::COMMAND_OVERRIDE,
            Self::KvTransferConfigPresent => skip_reasons::KV_TRANSFER_CONFIG_PRESENT,
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the webhook does with a pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The pod with the plugin, flags and `lmcache.ai/cacheblend-injected: "true"`.
    Injected(Pod),
    /// The pod with only `lmcache.ai/cacheblend-skip-reason: <reason>` added.
    Skipped {
        /// Why.
        reason: SkipReason,
        /// The submitted pod plus the annotation.
        pod: Pod,
    },
    /// No opt-in label, or no (or a blank) engine annotation: the pod is left as it is.
    NotOptedIn,
    /// `lmcache.ai/cacheblend-injected` is already `"true"`: the pod is left as it is.
    AlreadyInjected,
}

impl Outcome {
    /// The pod to admit when it differs from the submitted one.
    pub fn mutated_pod(&self) -> Option<&Pod> {
        match self {
            Self::Injected(pod) | Self::Skipped { pod, .. } => Some(pod),
            Self::NotOptedIn | Self::AlreadyInjected => None,
        }
    }

    /// The skip reason, if skipped.
    pub fn skip_reason(&self) -> Option<SkipReason> {
        match self {
            Self::Skipped { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// The metric/log outcome: `injected`, `skipped` or `ignored`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Injected(_) => "injected",
            Self::Skipped { .. } => "skipped",
            Self::NotOptedIn | Self::AlreadyInjected => "ignored",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_the_spec_values_in_precedence_order() {
        let values: Vec<_> = SkipReason::ALL.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            values,
            [
                "engine-not-found",
                "payload-image-unset",
                "target-container-not-found",
                "command-override",
                "kv-transfer-config-present"
            ]
        );
        let mut sorted = SkipReason::ALL;
        sorted.sort();
        assert_eq!(sorted, SkipReason::ALL);
    }
}
