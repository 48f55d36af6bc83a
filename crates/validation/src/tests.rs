use super::*;
use lmcache_api::v1alpha1::{CacheBlendEngineSpec, CoordinatorSpec, LMCacheEngineSpec};
use serde_json::{Value, json};
use std::collections::BTreeSet;

const GROUP: &str = "lmcache.lmcache.ai/v1alpha1";

/// RFC 7386 merge patch: `null` deletes.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn base(kind: Kind) -> Value {
    match kind {
        Kind::Engine => json!({"apiVersion": GROUP, "kind": "LMCacheEngine",
            "metadata": {"name": "my-cache", "namespace": "default"},
            "spec": {"l1": {"sizeGB": 60}}}),
        Kind::BlendEngine => json!({"apiVersion": GROUP, "kind": "CacheBlendEngine",
            "metadata": {"name": "my-cacheblend", "namespace": "default"},
            "spec": {"l1": {"sizeGB": 60},
                     "injection": {"payloadImage": {"repository": "registry.example.com/cacheblend-plugin"}}}}),
        Kind::Coordinator => json!({"apiVersion": GROUP, "kind": "LMCacheCoordinator",
            "metadata": {"name": "my-coordinator", "namespace": "default"}, "spec": {}}),
    }
}

fn object(kind: Kind, patch: &Value) -> Value {
    let mut obj = base(kind);
    merge(&mut obj, patch);
    obj
}

/// Decodes (and validates) a stored object; the message lines, or empty when valid.
fn decode_lines(kind: Kind, obj: &Value) -> Vec<String> {
    let result = match kind {
        Kind::Engine => decode_engine(obj).map(|_| ()),
        Kind::BlendEngine => decode_blend_engine(obj).map(|_| ()),
        Kind::Coordinator => decode_coordinator(obj).map(|_| ()),
    };
    result
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Validates the typed spec, when the object decodes as one; `None` when it does not.
fn typed_lines(kind: Kind, obj: &Value) -> Option<Vec<String>> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let result = match kind {
        Kind::Engine => validate_engine(name, &serde_json::from_value::<LMCacheEngineSpec>(spec).ok()?),
        Kind::BlendEngine => {
            validate_blend_engine(name, &serde_json::from_value::<CacheBlendEngineSpec>(spec).ok()?)
        }
        Kind::Coordinator => {
            validate_coordinator(name, &serde_json::from_value::<CoordinatorSpec>(spec).ok()?)
        }
    };
    Some(
        result
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect(),
    )
}

/// (rule id, kinds, invalid patch, the exact message lines, a valid patch of the same field)
type Case = (
    &'static str,
    &'static [Kind],
    Value,
    &'static [&'static str],
    Value,
);

const ENGINES: &[Kind] = &[Kind::Engine, Kind::BlendEngine];
const ENGINE: &[Kind] = &[Kind::Engine];
const BLEND: &[Kind] = &[Kind::BlendEngine];
const COORD: &[Kind] = &[Kind::Coordinator];

fn cases() -> Vec<Case> {
    let long_name = "a".repeat(56);
    let ok_name = "a".repeat(55);
    vec![
        (
            "E01",
            ENGINES,
            json!({"spec": {"l1": null}}),
            &["spec.l1.sizeGB: is required"],
            json!({"spec": {"l1": {"sizeGB": 1}}}),
        ),
        (
            "E01",
            ENGINES,
            json!({"spec": {"l1": {"sizeGB": null}}}),
            &["spec.l1.sizeGB: is required"],
            json!({"spec": {"l1": {"sizeGB": 0.5}}}),
        ),
        (
            "E02",
            ENGINES,
            json!({"spec": {"l1": {"sizeGB": 0}}}),
            &["spec.l1.sizeGB: must be greater than 0"],
            json!({"spec": {"l1": {"sizeGB": 0.001}}}),
        ),
        (
            "E02",
            ENGINES,
            json!({"spec": {"l1": {"sizeGB": -3.5}}}),
            &["spec.l1.sizeGB: must be greater than 0"],
            json!({"spec": {"l1": {"sizeGB": 500}}}),
        ),
        (
            "E03",
            ENGINES,
            json!({"spec": {"eviction": {"policy": "FIFO"}}}),
            &["spec.eviction.policy: must be LRU"],
            json!({"spec": {"eviction": {"policy": "LRU"}}}),
        ),
        (
            "E04",
            ENGINES,
            json!({"spec": {"eviction": {"triggerWatermark": 1.5}}}),
            &["spec.eviction.triggerWatermark: must be in (0.0, 1.0]"],
            json!({"spec": {"eviction": {"triggerWatermark": 1.0}}}),
        ),
        (
            "E04",
            ENGINES,
            json!({"spec": {"eviction": {"triggerWatermark": 0}}}),
            &["spec.eviction.triggerWatermark: must be in (0.0, 1.0]"],
            json!({"spec": {"eviction": {"triggerWatermark": 0.01}}}),
        ),
        (
            "E05",
            ENGINES,
            json!({"spec": {"eviction": {"evictionRatio": 0.0}}}),
            &["spec.eviction.evictionRatio: must be in (0.0, 1.0]"],
            json!({"spec": {"eviction": {"evictionRatio": 1}}}),
        ),
        (
            "E05",
            ENGINES,
            json!({"spec": {"eviction": {"evictionRatio": 1.01}}}),
            &["spec.eviction.evictionRatio: must be in (0.0, 1.0]"],
            json!({"spec": {"eviction": {"evictionRatio": 0.5}}}),
        ),
        (
            "E06",
            ENGINES,
            json!({"spec": {"server": {"port": 80}}}),
            &["spec.server.port: must be in [1024, 65535]"],
            json!({"spec": {"server": {"port": 1024}}}),
        ),
        (
            "E06",
            ENGINES,
            json!({"spec": {"server": {"port": 65536}}}),
            &["spec.server.port: must be in [1024, 65535]"],
            json!({"spec": {"server": {"port": 65535}}}),
        ),
        (
            "E07",
            ENGINE,
            json!({"spec": {"server": {"chunkSize": 0}}}),
            &["spec.server.chunkSize: must be at least 1"],
            json!({"spec": {"server": {"chunkSize": 1}}}),
        ),
        (
            "E08",
            ENGINES,
            json!({"spec": {"server": {"maxWorkers": 0}}}),
            &["spec.server.maxWorkers: must be at least 1"],
            json!({"spec": {"server": {"maxWorkers": 1}}}),
        ),
        (
            "E09",
            ENGINES,
            json!({"spec": {"server": {"hashAlgorithm": "md5"}}}),
            &["spec.server.hashAlgorithm: must be one of builtin, sha256_cbor, blake3"],
            json!({"spec": {"server": {"hashAlgorithm": "sha256_cbor"}}}),
        ),
        (
            "E10",
            ENGINES,
            json!({"spec": {"prometheus": {"port": 0}}}),
            &["spec.prometheus.port: must be in [1, 65535]"],
            json!({"spec": {"prometheus": {"port": 1}}}),
        ),
        (
            "E10",
            ENGINES,
            json!({"spec": {"prometheus": {"port": 70000}}}),
            &["spec.prometheus.port: must be in [1, 65535]"],
            json!({"spec": {"prometheus": {"port": 65535}}}),
        ),
        (
            "E11",
            ENGINES,
            json!({"spec": {"prometheus": {"port": 5555}}}),
            &["spec.prometheus.port: must differ from spec.server.port when prometheus is enabled"],
            json!({"spec": {"prometheus": {"port": 5555, "enabled": false}}}),
        ),
        (
            "E11",
            ENGINES,
            json!({"spec": {"server": {"port": 9090}}}),
            &["spec.prometheus.port: must differ from spec.server.port when prometheus is enabled"],
            json!({"spec": {"server": {"port": 9091}}}),
        ),
        (
            "E12",
            ENGINES,
            json!({"spec": {"prometheus": {"serviceMonitor": {"interval": "30 seconds"}}}}),
            &["spec.prometheus.serviceMonitor.interval: must be a duration such as 30s, 1m or 1h30m"],
            json!({"spec": {"prometheus": {"serviceMonitor": {"interval": "1m30s"}}}}),
        ),
        (
            "E12",
            ENGINES,
            json!({"spec": {"prometheus": {"serviceMonitor": {"interval": ""}}}}),
            &["spec.prometheus.serviceMonitor.interval: must be a duration such as 30s, 1m or 1h30m"],
            json!({"spec": {"prometheus": {"serviceMonitor": {"interval": "0"}}}}),
        ),
        (
            "E13",
            ENGINES,
            json!({"spec": {"l2Backends": [{"type": "s3"}, {"type": ""}]}}),
            &["spec.l2Backends[1].type: must be non-empty"],
            json!({"spec": {"l2Backends": [{"type": "s3"}, {"type": "nixl"}]}}),
        ),
        (
            "E13",
            ENGINES,
            json!({"spec": {"l2Backends": [{"config": {"a": 1}}]}}),
            &["spec.l2Backends[0].type: must be non-empty"],
            json!({"spec": {"l2Backends": [{"type": "x", "config": {"a": 1}}]}}),
        ),
        (
            "E14",
            ENGINES,
            json!({"spec": {"l2Backends": [{"type": "s3", "config": "bucket=x"}]}}),
            &["spec.l2Backends[0].config: must be an object"],
            json!({"spec": {"l2Backends": [{"type": "s3", "config": {"bucket": "x", "nested": {"n": [1, 2]}}}]}}),
        ),
        (
            "E14",
            ENGINES,
            json!({"spec": {"l2Backends": [{"type": "a"}, {"type": "b", "config": [1]}]}}),
            &["spec.l2Backends[1].config: must be an object"],
            json!({"spec": {"l2Backends": [{"type": "a"}, {"type": "b", "config": {}}]}}),
        ),
        (
            "E15",
            ENGINES,
            json!({"spec": {"coordinator": {"ref": {"name": "c"}, "url": "http://c.default.svc:9300"}}}),
            &["spec.coordinator: exactly one of ref or url must be set"],
            json!({"spec": {"coordinator": {"ref": {"name": "c"}}}}),
        ),
        (
            "E15",
            ENGINES,
            json!({"spec": {"coordinator": {"heartbeatInterval": 5}}}),
            &["spec.coordinator: exactly one of ref or url must be set"],
            json!({"spec": {"coordinator": {"url": "http://c.default.svc:9300"}}}),
        ),
        (
            "E16",
            ENGINES,
            json!({"spec": {"coordinator": {"ref": {"name": ""}}}}),
            &["spec.coordinator.ref.name: must be non-empty"],
            json!({"spec": {"coordinator": {"ref": {"name": "my-coordinator"}}}}),
        ),
        (
            "E16",
            ENGINES,
            json!({"spec": {"coordinator": {"ref": {}}}}),
            &["spec.coordinator.ref.name: must be non-empty"],
            json!({"spec": {"coordinator": {"ref": {"name": "c"}}}}),
        ),
        (
            "E16",
            ENGINES,
            json!({"spec": {"coordinator": {"url": ""}}}),
            &["spec.coordinator.url: must be non-empty"],
            json!({"spec": {"coordinator": {"url": "http://c:9300"}}}),
        ),
        (
            "E17",
            ENGINES,
            json!({"spec": {"coordinator": {"url": "http://c:9300", "heartbeatInterval": 0}}}),
            &["spec.coordinator.heartbeatInterval: must be greater than 0"],
            json!({"spec": {"coordinator": {"url": "http://c:9300", "heartbeatInterval": 0.5}}}),
        ),
        (
            "E18",
            ENGINES,
            json!({"spec": {"logLevel": "TRACE"}}),
            &["spec.logLevel: must be one of DEBUG, INFO, WARNING, ERROR"],
            json!({"spec": {"logLevel": "WARNING"}}),
        ),
        (
            "E19",
            ENGINES,
            json!({"spec": {"image": {"pullPolicy": "Sometimes"}}}),
            &["spec.image.pullPolicy: must be one of Always, Never, IfNotPresent"],
            json!({"spec": {"image": {"pullPolicy": "Always"}}}),
        ),
        (
            "E20",
            ENGINES,
            json!({"metadata": {"name": "My_Cache"}}),
            &["metadata.name: must be a DNS-1035 label of at most 55 characters"],
            json!({"metadata": {"name": "my-cache-2"}}),
        ),
        (
            "E20",
            ENGINES,
            json!({"metadata": {"name": long_name}}),
            &["metadata.name: must be a DNS-1035 label of at most 55 characters"],
            json!({"metadata": {"name": ok_name}}),
        ),
        (
            "E20",
            ENGINES,
            json!({"metadata": {"name": "1cache"}}),
            &["metadata.name: must be a DNS-1035 label of at most 55 characters"],
            json!({"metadata": {"name": "c1"}}),
        ),
        (
            "B01",
            BLEND,
            json!({"spec": {"server": {"chunkSize": 512}}}),
            &[
                "spec.server.chunkSize: must be 256 for CacheBlendEngine (chunk_size must equal vLLM --block-size 64 * 4)",
            ],
            json!({"spec": {"server": {"chunkSize": 256}}}),
        ),
        // E07 is not evaluated for this kind: B01 alone reports chunkSize 0.
        (
            "B01",
            BLEND,
            json!({"spec": {"server": {"chunkSize": 0}}}),
            &[
                "spec.server.chunkSize: must be 256 for CacheBlendEngine (chunk_size must equal vLLM --block-size 64 * 4)",
            ],
            json!({"spec": {"server": null}}),
        ),
        (
            "B02",
            BLEND,
            json!({"spec": {"injection": null}}),
            &["spec.injection.payloadImage.repository: must be set to the cacheblend-plugin payload image"],
            json!({"spec": {"injection": {"payloadImage": {"repository": "r"}}}}),
        ),
        (
            "B02",
            BLEND,
            json!({"spec": {"injection": {"payloadImage": null}}}),
            &["spec.injection.payloadImage.repository: must be set to the cacheblend-plugin payload image"],
            json!({"spec": {"injection": {"payloadImage": {"repository": "r", "tag": "v1"}}}}),
        ),
        (
            "B02",
            BLEND,
            json!({"spec": {"injection": {"payloadImage": {"repository": null}}}}),
            &["spec.injection.payloadImage.repository: must be set to the cacheblend-plugin payload image"],
            json!({"spec": {"injection": {"payloadImage": {"repository": " r "}}}}),
        ),
        (
            "B02",
            BLEND,
            json!({"spec": {"injection": {"payloadImage": {"repository": ""}}}}),
            &["spec.injection.payloadImage.repository: must be set to the cacheblend-plugin payload image"],
            json!({"spec": {"injection": {"payloadImage": {"repository": "x"}}}}),
        ),
        (
            "B02",
            BLEND,
            json!({"spec": {"injection": {"payloadImage": {"repository": "  \t"}}}}),
            &["spec.injection.payloadImage.repository: must be set to the cacheblend-plugin payload image"],
            json!({"spec": {"injection": {"payloadImage": {"repository": "x"}}}}),
        ),
        (
            "B03",
            BLEND,
            json!({"spec": {"injection": {"payloadImage": {"pullPolicy": "Sometimes"}}}}),
            &["spec.injection.payloadImage.pullPolicy: must be one of Always, Never, IfNotPresent"],
            json!({"spec": {"injection": {"payloadImage": {"pullPolicy": "Never"}}}}),
        ),
        (
            "B04",
            BLEND,
            json!({"spec": {"injection": {"cudagraph": "full"}}}),
            &["spec.injection.cudagraph: must be one of eager, piecewise, full_decode_only"],
            json!({"spec": {"injection": {"cudagraph": "full_decode_only"}}}),
        ),
        (
            "B05",
            BLEND,
            json!({"spec": {"blend": {"checkLayer": -1}}}),
            &["spec.blend.checkLayer: must be at least 0"],
            json!({"spec": {"blend": {"checkLayer": 0}}}),
        ),
        (
            "B06",
            BLEND,
            json!({"spec": {"blend": {"recompRatio": 0}}}),
            &["spec.blend.recompRatio: must be in (0.0, 1.0]"],
            json!({"spec": {"blend": {"recompRatio": 1}}}),
        ),
        (
            "B06",
            BLEND,
            json!({"spec": {"blend": {"recompRatio": 1.5}}}),
            &["spec.blend.recompRatio: must be in (0.0, 1.0]"],
            json!({"spec": {"blend": {"recompRatio": 0.15}}}),
        ),
        (
            "B07",
            BLEND,
            json!({"spec": {"injection": {"targetContainer": ""}}}),
            &["spec.injection.targetContainer: must be non-empty when set"],
            json!({"spec": {"injection": {"targetContainer": "vllm"}}}),
        ),
        (
            "C01",
            COORD,
            json!({"spec": {"port": 0}}),
            &["spec.port: must be in [1, 65535]"],
            json!({"spec": {"port": 1}}),
        ),
        (
            "C01",
            COORD,
            json!({"spec": {"port": 65536}}),
            &["spec.port: must be in [1, 65535]"],
            json!({"spec": {"port": 65535}}),
        ),
        (
            "C02",
            COORD,
            json!({"spec": {"replicas": -1}}),
            &["spec.replicas: must be at least 0"],
            json!({"spec": {"replicas": 0}}),
        ),
        (
            "C03",
            COORD,
            json!({"spec": {"instanceTimeout": 0}}),
            &["spec.instanceTimeout: must be greater than 0"],
            json!({"spec": {"instanceTimeout": 0.1}}),
        ),
        (
            "C04",
            COORD,
            json!({"spec": {"healthCheckInterval": -1}}),
            &["spec.healthCheckInterval: must be at least 0"],
            json!({"spec": {"healthCheckInterval": 0}}),
        ),
        (
            "C05",
            COORD,
            json!({"spec": {"evictionCheckInterval": -0.5}}),
            &["spec.evictionCheckInterval: must be at least 0"],
            json!({"spec": {"evictionCheckInterval": 0}}),
        ),
        (
            "C06",
            COORD,
            json!({"spec": {"evictionRatio": 1.5}}),
            &["spec.evictionRatio: must be in [0.0, 1.0]"],
            json!({"spec": {"evictionRatio": 0}}),
        ),
        (
            "C06",
            COORD,
            json!({"spec": {"evictionRatio": -0.1}}),
            &["spec.evictionRatio: must be in [0.0, 1.0]"],
            json!({"spec": {"evictionRatio": 1}}),
        ),
        (
            "C07",
            COORD,
            json!({"spec": {"triggerWatermark": 0}}),
            &["spec.triggerWatermark: must be in (0.0, 1.0]"],
            json!({"spec": {"triggerWatermark": 1}}),
        ),
        (
            "C07",
            COORD,
            json!({"spec": {"triggerWatermark": 1.2}}),
            &["spec.triggerWatermark: must be in (0.0, 1.0]"],
            json!({"spec": {"triggerWatermark": 0.5}}),
        ),
        (
            "C08",
            COORD,
            json!({"spec": {"blendChunkSize": 0}}),
            &["spec.blendChunkSize: must be greater than 0"],
            json!({"spec": {"blendChunkSize": 256}}),
        ),
        (
            "C09",
            COORD,
            json!({"spec": {"blendProbeStride": 0}}),
            &["spec.blendProbeStride: must be greater than 0"],
            json!({"spec": {"blendProbeStride": 1}}),
        ),
        (
            "C10",
            COORD,
            json!({"spec": {"logLevel": "TRACE"}}),
            &["spec.logLevel: must be one of DEBUG, INFO, WARNING, ERROR"],
            json!({"spec": {"logLevel": "DEBUG"}}),
        ),
        (
            "C11",
            COORD,
            json!({"spec": {"image": {"pullPolicy": "always"}}}),
            &["spec.image.pullPolicy: must be one of Always, Never, IfNotPresent"],
            json!({"spec": {"image": {"pullPolicy": "IfNotPresent"}}}),
        ),
        (
            "E21",
            ENGINES,
            json!({"spec": {"server": {"httpPort": 80}}}),
            &["spec.server.httpPort: must be in [1024, 65535]"],
            json!({"spec": {"server": {"httpPort": 1024}}}),
        ),
        (
            "E21",
            ENGINES,
            json!({"spec": {"server": {"httpPort": 65536}}}),
            &["spec.server.httpPort: must be in [1024, 65535]"],
            json!({"spec": {"server": {"httpPort": 65535}}}),
        ),
        (
            "E22",
            ENGINES,
            json!({"spec": {"server": {"httpPort": 5555}}}),
            &["spec.server.httpPort: must differ from spec.server.port"],
            json!({"spec": {"server": {"httpPort": 5556}}}),
        ),
        (
            "E22",
            ENGINES,
            json!({"spec": {"server": {"port": 8080}}}),
            &["spec.server.httpPort: must differ from spec.server.port"],
            json!({"spec": {"server": {"port": 8081}}}),
        ),
        (
            "E23",
            ENGINES,
            json!({"spec": {"server": {"httpPort": 9090}}}),
            &["spec.server.httpPort: must differ from spec.prometheus.port when prometheus is enabled"],
            json!({"spec": {"server": {"httpPort": 9090}, "prometheus": {"enabled": false}}}),
        ),
        (
            "E23",
            ENGINES,
            json!({"spec": {"prometheus": {"port": 8080}}}),
            &["spec.server.httpPort: must differ from spec.prometheus.port when prometheus is enabled"],
            json!({"spec": {"prometheus": {"port": 8081}}}),
        ),
        (
            "E24",
            ENGINE,
            json!({"spec": {"injection": {"targetContainer": ""}}}),
            &["spec.injection.targetContainer: must be non-empty when set"],
            json!({"spec": {"injection": {"targetContainer": "vllm"}}}),
        ),
        (
            "E25",
            ENGINE,
            json!({"spec": {"injection": {"payloadImage": {"tag": "v1"}}}}),
            &[
                "spec.injection.payloadImage.repository: must be set to the payload image when payloadImage is present",
            ],
            json!({"spec": {"injection": {"payloadImage": {"repository": "reg/lmcache-payload"}}}}),
        ),
        (
            "E25",
            ENGINE,
            json!({"spec": {"injection": {"payloadImage": {"repository": " "}}}}),
            &[
                "spec.injection.payloadImage.repository: must be set to the payload image when payloadImage is present",
            ],
            json!({"spec": {"injection": {"imagePullSecrets": [{"name": "reg"}]}}}),
        ),
        (
            "E26",
            ENGINE,
            json!({"spec": {"injection": {"payloadImage": {"repository": "r", "pullPolicy": "Sometimes"}}}}),
            &["spec.injection.payloadImage.pullPolicy: must be one of Always, Never, IfNotPresent"],
            json!({"spec": {"injection": {"payloadImage": {"repository": "r", "pullPolicy": "Always"}}}}),
        ),
        (
            "E27",
            ENGINES,
            json!({"spec": {"updateStrategy": {"type": "Recreate"}}}),
            &["spec.updateStrategy.type: must be one of RollingUpdate, OnDelete"],
            json!({"spec": {"updateStrategy": {"type": "OnDelete"}}}),
        ),
        (
            "E28",
            ENGINES,
            json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": {"maxUnavailable": 2}}}}),
            &[
                "spec.updateStrategy.rollingUpdate: may only be set when spec.updateStrategy.type is RollingUpdate",
            ],
            json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 2}}}}),
        ),
        (
            "E29",
            ENGINES,
            json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0}}}}),
            &[
                "spec.updateStrategy.rollingUpdate.maxUnavailable: must be an integer of at least 1 or a percentage from 1% to 100%",
            ],
            json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": "100%"}}}}),
        ),
        (
            "E29",
            ENGINES,
            json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": "0%"}}}}),
            &[
                "spec.updateStrategy.rollingUpdate.maxUnavailable: must be an integer of at least 1 or a percentage from 1% to 100%",
            ],
            json!({"spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%"}}}}),
        ),
        (
            "E29",
            ENGINES,
            json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": "abc"}}}}),
            &[
                "spec.updateStrategy.rollingUpdate.maxUnavailable: must be an integer of at least 1 or a percentage from 1% to 100%",
            ],
            json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxUnavailable": 3}}}}),
        ),
        (
            "C12",
            COORD,
            json!({"spec": {"prometheus": {"port": 0}}}),
            &["spec.prometheus.port: must be in [1, 65535]"],
            json!({"spec": {"prometheus": {"port": 9091}}}),
        ),
        (
            "C13",
            COORD,
            json!({"spec": {"prometheus": {"serviceMonitor": {"interval": "abc"}}}}),
            &["spec.prometheus.serviceMonitor.interval: must be a duration such as 30s, 1m or 1h30m"],
            json!({"spec": {"prometheus": {"serviceMonitor": {"interval": "1h30m"}}}}),
        ),
        (
            "C14",
            COORD,
            json!({"metadata": {"name": "-coordinator"}}),
            &["metadata.name: must be a DNS-1035 label of at most 55 characters"],
            json!({"metadata": {"name": "coordinator-1"}}),
        ),
        (
            "C15",
            COORD,
            json!({"spec": {"hashAlgorithm": "md5"}}),
            &["spec.hashAlgorithm: must be one of builtin, sha256_cbor, blake3"],
            json!({"spec": {"hashAlgorithm": "builtin"}}),
        ),
    ]
}

#[test]
fn every_rule_has_an_invalid_and_a_valid_case() {
    let mut failures = Vec::new();
    for (id, kinds, invalid, expected, valid) in cases() {
        for &kind in kinds {
            let obj = object(kind, &invalid);
            let got = decode_lines(kind, &obj);
            if got != expected {
                failures.push(format!(
                    "{id} {kind:?} decode {invalid}: got {got:?}, want {expected:?}"
                ));
            }
            // Where the invalid object still deserialises, the typed check says the same.
            if let Some(got) = typed_lines(kind, &obj)
                && got != expected
            {
                failures.push(format!(
                    "{id} {kind:?} typed {invalid}: got {got:?}, want {expected:?}"
                ));
            }
            let obj = object(kind, &valid);
            let got = decode_lines(kind, &obj);
            if !got.is_empty() {
                failures.push(format!("{id} {kind:?} valid {valid}: got {got:?}"));
            }
            if let Some(got) = typed_lines(kind, &obj)
                && !got.is_empty()
            {
                failures.push(format!("{id} {kind:?} typed valid {valid}: got {got:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cases_cover_every_rule_id_and_every_error_names_its_rule() {
    let table: BTreeSet<&str> = RULES.iter().map(|r| r.id).collect();
    let covered: BTreeSet<&str> = cases().iter().map(|c| c.0).collect();
    assert_eq!(table, covered);
    for (id, kinds, invalid, _, _) in cases() {
        for &kind in kinds {
            let errors = match kind {
                Kind::Engine => decode_engine(&object(kind, &invalid)).err(),
                Kind::BlendEngine => decode_blend_engine(&object(kind, &invalid)).err(),
                Kind::Coordinator => decode_coordinator(&object(kind, &invalid)).err(),
            };
            let rules: Vec<&str> = errors.unwrap_or_default().iter().map(|e| e.rule).collect();
            assert_eq!(rules, [id], "{kind:?} {invalid}");
        }
    }
}

#[test]
fn rule_table_is_in_table_order_and_kinds_match_ids() {
    let ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_by_key(|id| (id.starts_with('C'), id.starts_with('B'), *id));
    // Table order: E01..E29, B01..B07, C01..C15.
    assert_eq!(ids, sorted);
    assert_eq!(ids.len(), 29 + 1 + 7 + 15, "E16 has two rows");
    for r in RULES {
        let expected: &[Kind] = match (r.id.as_bytes()[0], r.id) {
            (_, "E07" | "E24" | "E25" | "E26") => &[Kind::Engine],
            (b'E', _) => &[Kind::Engine, Kind::BlendEngine],
            (b'B', _) => &[Kind::BlendEngine],
            _ => &[Kind::Coordinator],
        };
        assert_eq!(r.kinds, expected, "{}", r.id);
        assert!(!r.schema.is_empty(), "{}", r.id);
    }
}

#[test]
fn spec_section_8_4_example_message() {
    let expected =
        "spec.l1.sizeGB: must be greater than 0; spec.eviction.triggerWatermark: must be in (0.0, 1.0]";
    let patch = json!({"spec": {"l1": {"sizeGB": 0}, "eviction": {"triggerWatermark": 1.5}}});
    let obj = object(Kind::Engine, &patch);
    assert_eq!(join(&decode_engine(&obj).unwrap_err()), expected);
    let spec: LMCacheEngineSpec = serde_json::from_value(obj["spec"].clone()).unwrap();
    assert_eq!(join(&validate_engine("my-cache", &spec).unwrap_err()), expected);
}

#[test]
fn errors_follow_table_order_and_list_indices() {
    let patch = json!({
        "metadata": {"name": "Bad"},
        "spec": {
            "logLevel": "TRACE",
            "l2Backends": [{"type": ""}, {"type": "ok", "config": 3}, {}],
            "server": {"port": 80, "chunkSize": 0},
            "l1": {"sizeGB": 0},
            "coordinator": {"ref": {"name": ""}, "url": ""},
        }
    });
    let got = decode_lines(Kind::Engine, &object(Kind::Engine, &patch));
    assert_eq!(
        got,
        [
            "spec.l1.sizeGB: must be greater than 0",
            "spec.server.port: must be in [1024, 65535]",
            "spec.server.chunkSize: must be at least 1",
            "spec.l2Backends[0].type: must be non-empty",
            "spec.l2Backends[2].type: must be non-empty",
            "spec.l2Backends[1].config: must be an object",
            "spec.coordinator: exactly one of ref or url must be set",
            "spec.coordinator.ref.name: must be non-empty",
            "spec.coordinator.url: must be non-empty",
            "spec.logLevel: must be one of DEBUG, INFO, WARNING, ERROR",
            "metadata.name: must be a DNS-1035 label of at most 55 characters",
        ]
    );
}

#[test]
fn blend_engine_reports_engine_rules_then_blend_rules() {
    let patch = json!({"spec": {
        "injection": {"payloadImage": {"repository": " "}, "cudagraph": "full"},
        "server": {"chunkSize": 128},
        "eviction": {"policy": "FIFO"},
        "blend": {"checkLayer": -1},
    }});
    assert_eq!(
        decode_lines(Kind::BlendEngine, &object(Kind::BlendEngine, &patch)),
        [
            "spec.eviction.policy: must be LRU",
            "spec.server.chunkSize: must be 256 for CacheBlendEngine (chunk_size must equal vLLM --block-size 64 * 4)",
            "spec.injection.payloadImage.repository: must be set to the cacheblend-plugin payload image",
            "spec.injection.cudagraph: must be one of eager, piecewise, full_decode_only",
            "spec.blend.checkLayer: must be at least 0",
        ]
    );
}

#[test]
fn undecodable_values_without_a_rule_name_the_field() {
    let patch =
        json!({"spec": {"server": {"port": "5555"}, "nodeSelector": {"gpu": 1}, "l1": {"sizeGB": "big"}}});
    assert_eq!(
        decode_lines(Kind::Engine, &object(Kind::Engine, &patch)),
        [
            "spec.l1.sizeGB: must be a number",
            "spec.nodeSelector.gpu: must be a string",
            "spec.server.port: must be an integer",
        ]
    );
    let errors = decode_engine(&object(Kind::Engine, &patch)).unwrap_err();
    assert!(errors.iter().all(|e| e.rule == DECODE_RULE));
    // Not an object at all.
    assert_eq!(decode_lines(Kind::Engine, &json!("x")), [": must be an object"]);
    // A spec that is not an object is E01 (its l1 is then missing).
    let obj = object(Kind::Engine, &json!({"spec": null}));
    assert_eq!(decode_lines(Kind::Engine, &obj), ["spec.l1.sizeGB: is required"]);
}

#[test]
fn lenient_decode_keeps_what_the_api_server_would() {
    // Integral floats in integer fields, nulls in defaulted fields, quantities as numbers.
    let patch = json!({"spec": {
        "server": {"port": 6555.0, "maxWorkers": null},
        "prometheus": null,
        "resourceOverrides": {"limits": {"cpu": 2, "memory": "64Gi"}},
    }});
    let engine = decode_engine(&object(Kind::Engine, &patch)).unwrap();
    assert_eq!(engine.spec.engine.server.port, 6555);
    assert_eq!(engine.spec.engine.server.max_workers, 1);
    assert!(engine.spec.engine.prometheus.enabled);
    let limits = engine.spec.engine.pod.resource_overrides.unwrap().limits.unwrap();
    assert_eq!(limits["cpu"].0, "2");
    // A coordinator without spec gets every default (the schema's `spec: {}` default).
    let coordinator = decode_coordinator(&json!({"apiVersion": GROUP, "kind": "LMCacheCoordinator",
        "metadata": {"name": "c"}}))
    .unwrap();
    assert_eq!(coordinator.spec, CoordinatorSpec::default());
    // A garbled status is ours: repaired silently, never a validation error.
    let obj = object(
        Kind::Engine,
        &json!({"status": {"phase": 3, "readyInstances": "x"}}),
    );
    assert!(decode_engine(&obj).is_ok());
}

#[test]
fn unusable_list_entries_keep_the_other_indices() {
    let patch = json!({"spec": {"l2Backends": [null, "s3", {"type": ""}], "l1": "60"}});
    assert_eq!(
        decode_lines(Kind::Engine, &object(Kind::Engine, &patch)),
        [
            "spec.l2Backends[2].type: must be non-empty",
            "spec.l1: must be an object",
            "spec.l2Backends[0]: must be an object",
            "spec.l2Backends[1]: must be an object",
        ]
    );
}

#[test]
fn repaired_fields_do_not_report_twice() {
    // The removed `prometheus.port` would default to 9090 == server.port; E11 must not fire.
    let patch = json!({"spec": {"server": {"port": 9090}, "prometheus": {"port": "x"}}});
    assert_eq!(
        decode_lines(Kind::Engine, &object(Kind::Engine, &patch)),
        ["spec.prometheus.port: must be an integer"]
    );
}

/// Behaviours 18-20 at the unit level: what the operator reports for stored invalid objects.
#[test]
fn behaviours_18_to_20_stored_objects() {
    let b18 = object(Kind::Engine, &json!({"spec": {"l1": {"sizeGB": 0}}}));
    assert_eq!(
        join(&decode_engine(&b18).unwrap_err()),
        "spec.l1.sizeGB: must be greater than 0"
    );
    let b19 = object(
        Kind::Engine,
        &json!({"spec": {"l1": {"sizeGB": 0}, "eviction": {"triggerWatermark": 1.5}}}),
    );
    assert_eq!(
        join(&decode_engine(&b19).unwrap_err()),
        "spec.l1.sizeGB: must be greater than 0; spec.eviction.triggerWatermark: must be in (0.0, 1.0]"
    );
    let b20 = object(
        Kind::Engine,
        &json!({"spec": {"coordinator": {"ref": {"name": "c"}, "url": "http://c:9300"}}}),
    );
    assert_eq!(
        join(&decode_engine(&b20).unwrap_err()),
        "spec.coordinator: exactly one of ref or url must be set"
    );
    // The same for a CacheBlendEngine.
    let b20 = object(
        Kind::BlendEngine,
        &json!({"spec": {"coordinator": {"ref": {"name": "c"}, "url": "http://c:9300"}}}),
    );
    assert_eq!(
        join(&decode_blend_engine(&b20).unwrap_err()),
        "spec.coordinator: exactly one of ref or url must be set"
    );
}

const SPEC_EXAMPLES: &str = r#"
apiVersion: lmcache.lmcache.ai/v1alpha1
kind: LMCacheEngine
metadata:
  name: my-cache
spec:
  l1:
    sizeGB: 60
---
apiVersion: lmcache.lmcache.ai/v1alpha1
kind: LMCacheEngine
metadata:
  name: my-cache
spec:
  l1: {sizeGB: 60}
  image: {repository: lmcache/vllm-openai, tag: latest, pullPolicy: IfNotPresent}
  server: {port: 5555, chunkSize: 256, maxWorkers: 1, hashAlgorithm: blake3}
  eviction: {policy: LRU, triggerWatermark: 0.8, evictionRatio: 0.2}
  prometheus:
    enabled: true
    port: 9090
    serviceMonitor: {enabled: false, interval: 30s}
  nodeSelector: {nvidia.com/gpu.present: "true"}
  logLevel: INFO
---
apiVersion: lmcache.lmcache.ai/v1alpha1
kind: LMCacheEngine
metadata:
  name: production-cache
  namespace: llm-serving
spec:
  nodeSelector:
    nvidia.com/gpu.present: "true"
  image:
    repository: lmcache/standalone
    tag: v0.1.0
  server:
    port: 6555
    chunkSize: 256
    maxWorkers: 4
  l1:
    sizeGB: 60
  eviction:
    triggerWatermark: 0.8
    evictionRatio: 0.2
  prometheus:
    enabled: true
    port: 9090
    serviceMonitor:
      enabled: true
      labels:
        release: kube-prometheus-stack
  podAnnotations:
    prometheus.io/scrape: "true"
    prometheus.io/port: "9090"
  priorityClassName: system-node-critical
---
apiVersion: lmcache.lmcache.ai/v1alpha1
kind: CacheBlendEngine
metadata:
  name: my-cacheblend
spec:
  l1:
    sizeGB: 60
  injection:
    payloadImage:
      repository: registry.example.com/cacheblend-plugin
      tag: v1
    imagePullSecrets:
      - name: my-registry-secret
---
apiVersion: lmcache.lmcache.ai/v1alpha1
kind: LMCacheCoordinator
metadata:
  name: my-coordinator
spec:
  port: 9300
---
apiVersion: lmcache.lmcache.ai/v1alpha1
kind: LMCacheEngine
metadata:
  name: connected-cache
spec:
  l1:
    sizeGB: 60
  coordinator:
    ref:
      name: my-coordinator
    heartbeatInterval: 5
    l2EventReporting: false
---
apiVersion: lmcache.lmcache.ai/v1alpha1
kind: CacheBlendEngine
metadata:
  name: connected-blend
spec:
  l1:
    sizeGB: 60
  injection:
    payloadImage:
      repository: registry.example.com/cacheblend-plugin
  coordinator:
    url: http://my-coordinator.default.svc:9300
"#;

#[test]
fn spec_section_9_examples_decode_and_validate() {
    let mut seen = 0;
    for obj in serde_saphyr::from_multiple::<Value>(SPEC_EXAMPLES).unwrap() {
        let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
        let spec = obj["spec"].clone();
        match obj["kind"].as_str().unwrap() {
            "LMCacheEngine" => {
                let engine = decode_engine(&obj).unwrap();
                assert_eq!(engine.metadata.name.as_deref(), Some(name.as_str()));
                validate_engine(&name, &serde_json::from_value(spec).unwrap()).unwrap();
            }
            "CacheBlendEngine" => {
                decode_blend_engine(&obj).unwrap();
                validate_blend_engine(&name, &serde_json::from_value(spec).unwrap()).unwrap();
            }
            "LMCacheCoordinator" => {
                let coordinator = decode_coordinator(&obj).unwrap();
                assert_eq!(coordinator.spec.port, 9300);
                validate_coordinator(&name, &serde_json::from_value(spec).unwrap()).unwrap();
            }
            other => panic!("unexpected kind {other}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 7);
}

#[test]
fn display_and_join() {
    let e = FieldError {
        rule: "E02",
        path: "spec.l1.sizeGB".into(),
        message: "must be greater than 0".into(),
    };
    assert_eq!(e.to_string(), "spec.l1.sizeGB: must be greater than 0");
    assert_eq!(
        join(&[e.clone(), e]),
        "spec.l1.sizeGB: must be greater than 0; spec.l1.sizeGB: must be greater than 0"
    );
    assert_eq!(join(&[]), "");
}

#[test]
fn name_rule_matches_the_cel_regex() {
    for ok in ["a", "a1", "my-cache", "a-b-c", &"x".repeat(55)] {
        assert!(is_name_valid(ok), "{ok}");
    }
    for bad in ["", "A", "1a", "a-", "-a", "a_b", "a.b", "añ", &"x".repeat(56)] {
        assert!(!is_name_valid(bad), "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------
// Schema consistency: the CRDs' constraints and RULES must agree, in both directions.

/// Fields holding embedded Kubernetes types; their schemas are Kubernetes', not ours.
const EMBEDDED: &[&str] = &[
    "affinity",
    "tolerations",
    "env",
    "volumes",
    "volumeMounts",
    "resourceOverrides",
    "imagePullSecrets",
];

fn collect(path: &str, node: &Value, out: &mut BTreeSet<(String, Mechanism)>) {
    let Value::Object(map) = node else { return };
    let keyword = |k: &str, m: Mechanism, out: &mut BTreeSet<(String, Mechanism)>| {
        if map.contains_key(k) {
            out.insert((path.to_owned(), m));
        }
    };
    keyword("minimum", Mechanism::Minimum, out);
    keyword("maximum", Mechanism::Maximum, out);
    keyword("exclusiveMinimum", Mechanism::ExclusiveMinimum, out);
    keyword("exclusiveMaximum", Mechanism::Maximum, out);
    keyword("enum", Mechanism::Enum, out);
    keyword("minLength", Mechanism::MinLength, out);
    keyword("maxLength", Mechanism::MinLength, out);
    keyword("pattern", Mechanism::Pattern, out);
    keyword("x-kubernetes-validations", Mechanism::Cel, out);
    for key in [
        "oneOf",
        "anyOf",
        "allOf",
        "not",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
    ] {
        assert!(
            !map.contains_key(key),
            "{path}: unexpected {key}; add it to RULES and this test"
        );
    }
    let join = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    if let Some(Value::Array(required)) = map.get("required") {
        for name in required {
            out.insert((join(name.as_str().unwrap()), Mechanism::Required));
        }
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        for (name, child) in props {
            let skip = EMBEDDED.contains(&name.as_str())
                || (path.is_empty() && ["status", "metadata", "apiVersion", "kind"].contains(&name.as_str()));
            if !skip {
                collect(&join(name), child, out);
            }
        }
    }
    if let Some(items) = map.get("items") {
        collect(&format!("{path}[*]"), items, out);
    }
    if let Some(values @ Value::Object(_)) = map.get("additionalProperties") {
        collect(&format!("{path}{{}}"), values, out);
    }
}

#[test]
fn crd_schemas_and_rules_agree() {
    for crd in lmcache_api::crds() {
        let kind = match crd.spec.names.kind.as_str() {
            "LMCacheEngine" => Kind::Engine,
            "CacheBlendEngine" => Kind::BlendEngine,
            "LMCacheCoordinator" => Kind::Coordinator,
            other => panic!("unexpected kind {other}"),
        };
        let version = &crd.spec.versions[0];
        let schema = serde_json::to_value(
            version
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let mut in_schema = BTreeSet::new();
        collect("", &schema, &mut in_schema);
        let in_rules: BTreeSet<(String, Mechanism)> = RULES
            .iter()
            .filter(|r| r.kinds.contains(&kind))
            .flat_map(|r| r.schema.iter())
            // `type` is on every node; only E14 makes it a rule.
            .filter(|c| c.mechanism != Mechanism::Type)
            .map(|c| (c.at.to_owned(), c.mechanism))
            .collect();
        let missing: Vec<_> = in_schema.difference(&in_rules).collect();
        let extra: Vec<_> = in_rules.difference(&in_schema).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{kind:?}: in the schema but not in RULES: {missing:?}; in RULES but not in the schema: {extra:?}"
        );
        // E14: `config` is a free-form object.
        if kind != Kind::Coordinator {
            let config =
                &schema["properties"]["spec"]["properties"]["l2Backends"]["items"]["properties"]["config"];
            assert_eq!(config["type"], "object");
        }
    }
}

#[test]
fn cel_rules_carry_the_spec_messages() {
    use lmcache_api::v1alpha1::{
        COORDINATOR_RULE_MESSAGE, HTTP_METRICS_PORT_RULE_MESSAGE, HTTP_PORT_RULE_MESSAGE, NAME_RULE_MESSAGE,
        PORTS_RULE_MESSAGE,
    };
    let row = |id: &str| RULES.iter().find(|r| r.id == id).unwrap();
    // The operator message is the CEL message with the path moved in front.
    assert_eq!(format!("metadata.name {}", row("E20").message), NAME_RULE_MESSAGE);
    assert_eq!(format!("metadata.name {}", row("C14").message), NAME_RULE_MESSAGE);
    assert_eq!(row("E15").message, COORDINATOR_RULE_MESSAGE);
    assert_eq!(
        PORTS_RULE_MESSAGE,
        "prometheus.port must differ from server.port when prometheus is enabled"
    );
    assert_eq!(
        row("E11").message,
        "must differ from spec.server.port when prometheus is enabled"
    );
    assert_eq!(
        HTTP_PORT_RULE_MESSAGE,
        "server.httpPort must differ from server.port"
    );
    assert_eq!(
        HTTP_METRICS_PORT_RULE_MESSAGE,
        "server.httpPort must differ from prometheus.port when prometheus is enabled"
    );
}
