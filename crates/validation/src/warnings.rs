//! Valid specs that do not do what they seem to: reported as Events, never as errors.

use lmcache_api::constants::{labels, reasons};
use lmcache_api::v1alpha1::{CoordinatorSpec, EngineSpec};

/// An accepted setting that has no effect, or works against the rest of the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Event reason.
    pub reason: &'static str,
    /// Event message.
    pub message: String,
    /// A Warning Event (something will not work) rather than a Normal one.
    pub severe: bool,
}

/// The engine's warnings: `extraArgs` that move a listener, `serviceMonitor.labels` that set a
/// selector label.
pub fn engine_warnings(spec: &EngineSpec) -> Vec<Warning> {
    let mut out = engine_extra_args_warnings(spec);
    out.extend(service_monitor_label_warnings(spec));
    out
}

/// `extraArgs` override the generated flags (last wins), but the probes, Services and the
/// connection ConfigMap are rendered from the spec: overriding a listen address or port makes
/// them point where nothing listens.
fn engine_extra_args_warnings(spec: &EngineSpec) -> Vec<Warning> {
    let ports = [
        ("--host", None),
        ("--port", Some(("spec.server.port", spec.server.port))),
        ("--http-host", None),
        (
            "--http-port",
            Some(("spec.server.httpPort", spec.server.http_port)),
        ),
    ];
    extra_args_overrides(spec.pod.extra_args.as_deref().unwrap_or_default(), &ports)
}

/// The coordinator's `--host`/`--port` in `extraArgs` (see [`engine_warnings`]).
pub fn coordinator_extra_args_warnings(spec: &CoordinatorSpec) -> Vec<Warning> {
    let ports = [("--host", None), ("--port", Some(("spec.port", spec.port)))];
    extra_args_overrides(spec.pod.extra_args.as_deref().unwrap_or_default(), &ports)
}

fn extra_args_overrides(args: &[String], flags: &[(&str, Option<(&str, i32)>)]) -> Vec<Warning> {
    let overridden: Vec<String> = flags
        .iter()
        .filter(|(flag, _)| {
            args.iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        })
        .map(|(flag, field)| match field {
            Some((path, value)) => format!("{flag} (probes and Services use {path} = {value})"),
            None => format!("{flag} (the pod must listen on its IP)"),
        })
        .collect();
    if overridden.is_empty() {
        return Vec::new();
    }
    vec![Warning {
        reason: reasons::EXTRA_ARGS_OVERRIDE,
        message: format!(
            "spec.extraArgs overrides {}; set the spec field instead",
            overridden.join(", ")
        ),
        severe: true,
    }]
}

/// `serviceMonitor.labels` cannot set the selector labels: the operator's values win (its
/// caches of ServiceMonitors select `managed-by`), so a user's value for one has no effect.
fn service_monitor_label_warnings(spec: &EngineSpec) -> Vec<Warning> {
    let monitor = &spec.prometheus.service_monitor;
    if !(spec.prometheus.enabled && monitor.enabled) {
        return Vec::new();
    }
    let user = monitor.labels.as_ref();
    let set: Vec<&str> = labels::SELECTOR
        .into_iter()
        .filter(|key| user.is_some_and(|u| u.contains_key(*key)))
        .collect();
    if set.is_empty() {
        return Vec::new();
    }
    vec![Warning {
        reason: reasons::SELECTOR_LABELS_IGNORED,
        message: format!(
            "spec.prometheus.serviceMonitor.labels cannot set {}: the operator's selector labels are kept",
            set.join(", ")
        ),
        severe: false,
    }]
}

/// `blendChunkSize` and `blendProbeStride` only configure the global CacheBlend directory,
/// which LMCache runs only with `--enable-blend-lookup` (`spec.blendLookup`).
pub fn coordinator_warnings(spec: &CoordinatorSpec) -> Vec<Warning> {
    let mut out = coordinator_extra_args_warnings(spec);
    out.extend(blend_lookup_warnings(spec));
    out
}

fn blend_lookup_warnings(spec: &CoordinatorSpec) -> Vec<Warning> {
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
        severe: false,
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
                    severe: false,
                })
                .into_iter()
                .collect();
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn extra_args_that_move_a_listener_are_reported() {
        let engine: EngineSpec =
            serde_json::from_value(json!({"l1": {"sizeGB": 1}, "extraArgs": ["--port", "6000", "--http-port=9000", "--max-workers", "2"]}))
                .unwrap();
        let got = engine_warnings(&engine);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].reason, "ExtraArgsOverride");
        assert!(got[0].severe);
        assert_eq!(
            got[0].message,
            "spec.extraArgs overrides --port (probes and Services use spec.server.port = 5555), --http-port (probes and Services use spec.server.httpPort = 8080); set the spec field instead"
        );
        let harmless: EngineSpec = serde_json::from_value(
            json!({"l1": {"sizeGB": 1}, "extraArgs": ["--max-workers", "2", "--portal"]}),
        )
        .unwrap();
        assert!(engine_warnings(&harmless).is_empty());
        let coordinator = spec(json!({"extraArgs": ["--port", "9400"], "blendChunkSize": 256}));
        let reasons: Vec<&str> = coordinator_warnings(&coordinator)
            .iter()
            .map(|w| w.reason)
            .collect();
        assert_eq!(reasons, ["ExtraArgsOverride", "BlendLookupDisabled"]);
    }

    #[test]
    fn service_monitor_labels_that_set_a_selector_label_are_reported() {
        let engine = |monitor: serde_json::Value| -> EngineSpec {
            serde_json::from_value(json!({"l1": {"sizeGB": 1}, "prometheus": {"serviceMonitor": monitor}}))
                .unwrap()
        };
        let labels = json!({"release": "prom", "app.kubernetes.io/managed-by": "helm",
                            "app.kubernetes.io/instance": "x", "app.kubernetes.io/component": "mine"});
        let got = engine_warnings(&engine(json!({"enabled": true, "labels": labels})));
        assert_eq!(
            got,
            [Warning {
                reason: "SelectorLabelsIgnored",
                message: "spec.prometheus.serviceMonitor.labels cannot set app.kubernetes.io/instance, app.kubernetes.io/managed-by: the operator's selector labels are kept".to_string(),
                severe: false,
            }]
        );
        // Other labels (`component` too) are applied; without a ServiceMonitor nothing is.
        let harmless =
            json!({"enabled": true, "labels": {"release": "prom", "app.kubernetes.io/component": "mine"}});
        assert!(engine_warnings(&engine(harmless)).is_empty());
        assert!(engine_warnings(&engine(json!({"enabled": false, "labels": labels}))).is_empty());
    }
}
