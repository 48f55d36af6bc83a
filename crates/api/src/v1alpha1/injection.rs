//! The injection settings the two engine kinds share, read alike for both (their `injection`
//! types differ: a CacheBlendEngine requires it and its payload image, an LMCacheEngine not).

use super::blend::{CacheBlendEngineSpec, PayloadImage};
use super::common::PullPolicy;
use super::engine::LMCacheEngineSpec;
use k8s_openapi::api::core::v1::LocalObjectReference;

/// An engine's `injection` settings that both kinds have, borrowed; all empty when
/// `injection` is absent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Injection<'a> {
    /// `targetContainer`, trimmed; `None` when unset or blank.
    pub target_container: Option<&'a str>,
    /// `payloadImage`.
    pub payload_image: Option<&'a PayloadImage>,
    /// `imagePullSecrets`.
    pub image_pull_secrets: &'a [LocalObjectReference],
    /// `repairMissed`.
    pub repair_missed: bool,
}

impl Injection<'_> {
    /// The payload image reference and pull policy, when a payload image with a non-blank
    /// repository is configured.
    pub fn payload(&self) -> Option<(String, PullPolicy)> {
        let image = self.payload_image?;
        Some((image.reference()?, image.pull_policy))
    }

    /// Whether the payload image's repository is set but blank (E25, B02: the schema's
    /// `minLength` accepts `"  "`; the operator trims).
    pub fn blank_payload_repository(&self) -> bool {
        self.payload_image
            .and_then(|p| p.repository.as_deref())
            .is_some_and(|r| r.trim().is_empty())
    }
}

fn trimmed(name: Option<&str>) -> Option<&str> {
    name.map(str::trim).filter(|n| !n.is_empty())
}

/// `injection_settings()` of a spec: the two `injection` types name these fields alike.
macro_rules! injection_settings {
    ($($spec:ty: $doc:literal),+) => {$(
        impl $spec {
            #[doc = $doc]
            pub fn injection_settings(&self) -> Injection<'_> {
                let Some(i) = &self.injection else {
                    return Injection::default();
                };
                Injection {
                    target_container: trimmed(i.target_container.as_deref()),
                    payload_image: i.payload_image.as_ref(),
                    image_pull_secrets: i.image_pull_secrets.as_deref().unwrap_or_default(),
                    repair_missed: i.repair_missed,
                }
            }
        }
    )+};
}

injection_settings!(
    LMCacheEngineSpec: "The connection webhook's settings.",
    CacheBlendEngineSpec: "The CacheBlend webhook's settings."
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_kinds_read_alike() {
        let engine: LMCacheEngineSpec = serde_json::from_value(json!({"l1": {"sizeGB": 1}})).unwrap();
        assert_eq!(engine.injection_settings(), Injection::default());
        let injection = json!({"targetContainer": " vllm ", "repairMissed": true,
                               "imagePullSecrets": [{"name": "s"}],
                               "payloadImage": {"repository": "reg/p", "tag": "1"}});
        let engine: LMCacheEngineSpec =
            serde_json::from_value(json!({"l1": {"sizeGB": 1}, "injection": injection})).unwrap();
        let blend: CacheBlendEngineSpec =
            serde_json::from_value(json!({"l1": {"sizeGB": 1}, "injection": injection})).unwrap();
        for settings in [engine.injection_settings(), blend.injection_settings()] {
            assert_eq!(settings.target_container, Some("vllm"));
            assert!(settings.repair_missed);
            assert_eq!(settings.image_pull_secrets.len(), 1);
            assert_eq!(
                settings.payload(),
                Some(("reg/p:1".to_string(), PullPolicy::IfNotPresent))
            );
            assert!(!settings.blank_payload_repository());
        }
        let blank: CacheBlendEngineSpec = serde_json::from_value(
            json!({"l1": {"sizeGB": 1}, "injection": {"targetContainer": "  ", "payloadImage": {"repository": " "}}}),
        )
        .unwrap();
        let settings = blank.injection_settings();
        assert_eq!((settings.target_container, settings.payload()), (None, None));
        assert!(settings.blank_payload_repository());
    }
}
