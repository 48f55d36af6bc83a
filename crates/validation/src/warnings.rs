//! Valid specs that do not do what they seem to: reported as Normal Events, never as errors.

use lmcache_api::constants::reasons;
use lmcache_api::v1alpha1::CoordinatorSpec;

/// A field that is accepted but has no effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Event reason.
    pub reason: &'static str,
    /// Event message.
    pub message: String,
}

/// `blendChunkSize` and `blendProbeStride` only configure the global CacheBlend directory,
/// which LMCache runs only with `--enable-blend-lookup` (`spec.blendLookup`).
pub fn coordinator_warnings(spec: &CoordinatorSpec) -> Vec<Warning> {
    if spec.blend_lookup {
        return Vec::new();
    }
    let set: Vec<&str> = [
        ("spec.blendChunkSize", spec.blend_chunk_size.is_some()),
        ("spec.blendProbeStride", spec.blend_probe_stride.is_some()),
    ]
    .into_iter()
    .filter_map(|(path, set)| set.then_some(path))
    .collect();
    if set.is_empty() {
        return Vec::new();
    }
    vec![Warning {
        reason: reasons::BLEND_LOOKUP_DISABLED,
        message: format!(
            "{} {} no effect while spec.blendLookup is false",
            set.join(" and "),
            if set.len() == 1 { "has" } else { "have" }
        ),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> CoordinatorSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn blend_tunables_without_lookup_are_reported() {
        let cases = [
            (json!({}), None),
            (json!({"blendLookup": true, "blendChunkSize": 256}), None),
            (
                json!({"blendChunkSize": 256}),
                Some("spec.blendChunkSize has no effect while spec.blendLookup is false"),
            ),
            (
                json!({"blendProbeStride": 4}),
                Some("spec.blendProbeStride has no effect while spec.blendLookup is false"),
            ),
            (
                json!({"blendChunkSize": 256, "blendProbeStride": 4}),
                Some(
                    "spec.blendChunkSize and spec.blendProbeStride have no effect while spec.blendLookup is false",
                ),
            ),
        ];
        for (input, want) in cases {
            let got = coordinator_warnings(&spec(input.clone()));
            let want: Vec<Warning> = want
                .map(|m| Warning {
                    reason: "BlendLookupDisabled",
                    message: m.to_string(),
                })
                .into_iter()
                .collect();
            assert_eq!(got, want, "{input}");
        }
    }
}
