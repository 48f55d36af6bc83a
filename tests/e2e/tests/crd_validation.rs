//! behaviours.md §A 4–17: invalid specs are rejected at `kubectl apply` with the field path
//! and the Kubernetes phrase of api.md §8; boundary values are accepted.

use lmcache_e2e::crd::{Case, Kind, check_cases};
use lmcache_e2e::{Cluster, TempNamespace};
use serde_json::json;

async fn check(prefix: &str, cases: Vec<Case>) -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, prefix).await?;
    check_cases(&cluster, &namespace, &cases).await
}

const GT0: &str = "should be greater than 0";
const LE1: &str = "should be less than or equal to 1";

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a04_l1_is_required_and_positive() -> anyhow::Result<()> {
    let e = Kind::Engine;
    check(
        "a04",
        vec![
            Case::rejected("no spec.l1", e, json!({"l1": null}), &["spec.l1: Required value"]),
            Case::rejected(
                "no spec.l1.sizeGB",
                e,
                json!({"l1": {"sizeGB": null}}),
                &["spec.l1.sizeGB: Required value"],
            ),
            Case::rejected(
                "sizeGB 0",
                e,
                json!({"l1": {"sizeGB": 0}}),
                &["spec.l1.sizeGB", GT0],
            ),
            Case::rejected(
                "sizeGB -1",
                e,
                json!({"l1": {"sizeGB": -1}}),
                &["spec.l1.sizeGB", GT0],
            ),
            Case::accepted("sizeGB 0.5", e, json!({"l1": {"sizeGB": 0.5}})),
        ],
    )
    .await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a05_enums_list_the_allowed_values() -> anyhow::Result<()> {
    let e = Kind::Engine;
    check(
        "a05",
        vec![
            Case::rejected(
                "eviction.policy FIFO",
                e,
                json!({"eviction": {"policy": "FIFO"}}),
                &["spec.eviction.policy", r#"Unsupported value: "FIFO""#, r#""LRU""#],
            ),
            Case::rejected(
                "server.hashAlgorithm md5",
                e,
                json!({"server": {"hashAlgorithm": "md5"}}),
                &[
                    "spec.server.hashAlgorithm",
                    r#"Unsupported value: "md5""#,
                    r#""builtin""#,
                    r#""sha256_cbor""#,
                    r#""blake3""#,
                ],
            ),
            Case::rejected(
                "logLevel TRACE",
                e,
                json!({"logLevel": "TRACE"}),
                &[
                    "spec.logLevel",
                    r#"Unsupported value: "TRACE""#,
                    r#""DEBUG""#,
                    r#""INFO""#,
                    r#""WARNING""#,
                    r#""ERROR""#,
                ],
            ),
            Case::rejected(
                "image.pullPolicy Sometimes",
                e,
                json!({"image": {"pullPolicy": "Sometimes"}}),
                &[
                    "spec.image.pullPolicy",
                    r#"Unsupported value: "Sometimes""#,
                    r#""Always""#,
                    r#""Never""#,
                    r#""IfNotPresent""#,
                ],
            ),
            Case::accepted(
                "every enum at an allowed value",
                e,
                json!({
                    "eviction": {"policy": "LRU"},
                    "server": {"hashAlgorithm": "sha256_cbor"},
                    "logLevel": "WARNING",
                    "image": {"pullPolicy": "Never"}
                }),
            ),
        ],
    )
    .await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a06_eviction_fractions_are_in_0_exclusive_to_1() -> anyhow::Result<()> {
    let e = Kind::Engine;
    let mut cases = Vec::new();
    for field in ["triggerWatermark", "evictionRatio"] {
        let path = format!("spec.eviction.{field}");
        cases.push(Case::rejected(
            &format!("{field} 0"),
            e,
            json!({"eviction": {field: 0}}),
            &[&path, GT0],
        ));
        cases.push(Case::rejected(
            &format!("{field} 1.01"),
            e,
            json!({"eviction": {field: 1.01}}),
            &[&path, LE1],
        ));
        cases.push(Case::accepted(
            &format!("{field} 0.01"),
            e,
            json!({"eviction": {field: 0.01}}),
        ));
        cases.push(Case::accepted(
            &format!("{field} 1.0"),
            e,
            json!({"eviction": {field: 1.0}}),
        ));
    }
    check("a06", cases).await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a07_server_port_is_1024_to_65535() -> anyhow::Result<()> {
    let e = Kind::Engine;
    check(
        "a07",
        vec![
            Case::rejected(
                "port 1023",
                e,
                json!({"server": {"port": 1023}}),
                &["spec.server.port", "should be greater than or equal to 1024"],
            ),
            Case::rejected(
                "port 65536",
                e,
                json!({"server": {"port": 65536}}),
                &["spec.server.port", "should be less than or equal to 65535"],
            ),
            Case::accepted("port 1024", e, json!({"server": {"port": 1024}})),
            Case::accepted("port 65535", e, json!({"server": {"port": 65535}})),
        ],
    )
    .await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a08_l2_backend_type_is_required_and_non_empty() -> anyhow::Result<()> {
    let e = Kind::Engine;
    check(
        "a08",
        vec![
            Case::rejected(
                "type empty",
                e,
                json!({"l2Backends": [{"type": ""}]}),
                &["spec.l2Backends[0].type", "should be at least 1 chars long"],
            ),
            Case::rejected(
                "type missing",
                e,
                json!({"l2Backends": [{"config": {"a": 1}}]}),
                &["spec.l2Backends[0].type: Required value"],
            ),
            Case::accepted(
                "type and free-form config",
                e,
                json!({"l2Backends": [{"type": "fs", "config": {"base_path": "/data", "max_capacity_gb": 100}}]}),
            ),
        ],
    )
    .await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a09_coordinator_needs_exactly_one_of_ref_or_url() -> anyhow::Result<()> {
    let e = Kind::Engine;
    let one_of = "exactly one of ref or url must be set";
    check(
        "a09",
        vec![
            Case::rejected(
                "ref and url",
                e,
                json!({"coordinator": {"ref": {"name": "c"}, "url": "http://c:9300"}}),
                &["spec.coordinator", one_of],
            ),
            Case::rejected(
                "neither",
                e,
                json!({"coordinator": {"heartbeatInterval": 3}}),
                &["spec.coordinator", one_of],
            ),
            Case::rejected(
                "heartbeatInterval 0",
                e,
                json!({"coordinator": {"url": "http://c:9300", "heartbeatInterval": 0}}),
                &["spec.coordinator.heartbeatInterval", GT0],
            ),
            Case::accepted("url only", e, json!({"coordinator": {"url": "http://c:9300"}})),
            Case::accepted(
                "ref only",
                e,
                json!({"coordinator": {"ref": {"name": "c"}, "heartbeatInterval": 2.5}}),
            ),
        ],
    )
    .await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a10_blend_chunk_size_must_be_256() -> anyhow::Result<()> {
    let b = Kind::BlendEngine;
    check(
        "a10",
        vec![
            Case::rejected(
                "chunkSize 512",
                b,
                json!({"server": {"chunkSize": 512}}),
                &["spec.server.chunkSize", "Unsupported value: 512"],
            ),
            Case::accepted("chunkSize 256", b, json!({"server": {"chunkSize": 256}})),
        ],
    )
    .await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a11_blend_payload_image_repository_is_required() -> anyhow::Result<()> {
    let b = Kind::BlendEngine;
    check(
        "a11",
        vec![
            Case::rejected(
                "no injection",
                b,
                json!({"injection": null}),
                &["spec.injection: Required value"],
            ),
            Case::rejected(
                "empty payloadImage",
                b,
                json!({"injection": {"payloadImage": {"repository": null, "tag": null}}}),
                &["spec.injection.payloadImage.repository: Required value"],
            ),
            Case::rejected(
                "empty repository",
                b,
                json!({"injection": {"payloadImage": {"repository": ""}}}),
                &[
                    "spec.injection.payloadImage.repository",
                    "should be at least 1 chars long",
                ],
            ),
        ],
    )
    .await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a12_blend_cudagraph_modes() -> anyhow::Result<()> {
    let b = Kind::BlendEngine;
    let mut cases = vec![Case::rejected(
        "cudagraph full",
        b,
        json!({"injection": {"cudagraph": "full"}}),
        &[
            "spec.injection.cudagraph",
            r#"Unsupported value: "full""#,
            r#""eager""#,
            r#""piecewise""#,
            r#""full_decode_only""#,
        ],
    )];
    for mode in ["eager", "piecewise", "full_decode_only"] {
        cases.push(Case::accepted(mode, b, json!({"injection": {"cudagraph": mode}})));
    }
    check("a12", cases).await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a13_blend_tunables_ranges() -> anyhow::Result<()> {
    let b = Kind::BlendEngine;
    check(
        "a13",
        vec![
            Case::rejected(
                "recompRatio 0",
                b,
                json!({"blend": {"recompRatio": 0}}),
                &["spec.blend.recompRatio", GT0],
            ),
            Case::rejected(
                "recompRatio 1.5",
                b,
                json!({"blend": {"recompRatio": 1.5}}),
                &["spec.blend.recompRatio", LE1],
            ),
            Case::rejected(
                "checkLayer -1",
                b,
                json!({"blend": {"checkLayer": -1}}),
                &["spec.blend.checkLayer", "should be greater than or equal to 0"],
            ),
            Case::accepted(
                "boundaries",
                b,
                json!({"blend": {"recompRatio": 1, "checkLayer": 0}}),
            ),
        ],
    )
    .await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a14_coordinator_ranges() -> anyhow::Result<()> {
    let c = Kind::Coordinator;
    let ge = |n: u32| format!("should be greater than or equal to {n}");
    let (ge0, ge1) = (ge(0), ge(1));
    let rejected = [
        ("port 0", json!({"port": 0}), "spec.port", ge1.as_str()),
        (
            "port 65536",
            json!({"port": 65536}),
            "spec.port",
            "should be less than or equal to 65535",
        ),
        (
            "replicas -1",
            json!({"replicas": -1}),
            "spec.replicas",
            ge0.as_str(),
        ),
        (
            "instanceTimeout 0",
            json!({"instanceTimeout": 0}),
            "spec.instanceTimeout",
            GT0,
        ),
        (
            "healthCheckInterval -1",
            json!({"healthCheckInterval": -1}),
            "spec.healthCheckInterval",
            ge0.as_str(),
        ),
        (
            "evictionCheckInterval -1",
            json!({"evictionCheckInterval": -1}),
            "spec.evictionCheckInterval",
            ge0.as_str(),
        ),
        (
            "evictionRatio 1.1",
            json!({"evictionRatio": 1.1}),
            "spec.evictionRatio",
            LE1,
        ),
        (
            "triggerWatermark 0",
            json!({"triggerWatermark": 0}),
            "spec.triggerWatermark",
            GT0,
        ),
        (
            "blendChunkSize 0",
            json!({"blendChunkSize": 0}),
            "spec.blendChunkSize",
            ge1.as_str(),
        ),
        (
            "blendProbeStride 0",
            json!({"blendProbeStride": 0}),
            "spec.blendProbeStride",
            ge1.as_str(),
        ),
    ];
    let mut cases: Vec<Case> = rejected
        .into_iter()
        .map(|(label, patch, path, phrase)| Case::rejected(label, c, patch, &[path, phrase]))
        .collect();
    for (label, patch) in [
        ("healthCheckInterval 0", json!({"healthCheckInterval": 0})),
        ("evictionCheckInterval 0", json!({"evictionCheckInterval": 0})),
        ("evictionRatio 0", json!({"evictionRatio": 0})),
        ("evictionRatio 1", json!({"evictionRatio": 1})),
        ("triggerWatermark 1", json!({"triggerWatermark": 1})),
    ] {
        cases.push(Case::accepted(label, c, patch));
    }
    check("a14", cases).await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a15_names_are_dns_1035_labels_of_at_most_55_characters() -> anyhow::Result<()> {
    let phrase = "metadata.name must be a DNS-1035 label of at most 55 characters";
    let too_long = format!("c{}", "x".repeat(55));
    let longest = format!("c{}", "x".repeat(54));
    let mut cases = Vec::new();
    for kind in Kind::ALL {
        for name in [too_long.as_str(), "1cache", "my.cache"] {
            cases.push(
                Case::rejected(&format!("{} {name}", kind.kind()), kind, json!({}), &[phrase]).named(name),
            );
        }
        cases
            .push(Case::accepted(&format!("{} 55 characters", kind.kind()), kind, json!({})).named(&longest));
    }
    check("a15", cases).await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a16_prometheus_port_must_differ_from_server_port_when_enabled() -> anyhow::Result<()> {
    let phrase = "prometheus.port must differ from server.port when prometheus is enabled";
    let mut cases = Vec::new();
    for kind in [Kind::Engine, Kind::BlendEngine] {
        let k = kind.kind();
        cases.push(Case::rejected(
            &format!("{k} enabled, both 6000"),
            kind,
            json!({"server": {"port": 6000}, "prometheus": {"enabled": true, "port": 6000}}),
            &["spec", phrase],
        ));
        cases.push(Case::rejected(
            &format!("{k} enabled by default, prometheus.port = default server.port"),
            kind,
            json!({"prometheus": {"port": 5555}}),
            &["spec", phrase],
        ));
        cases.push(Case::accepted(
            &format!("{k} disabled, both 6000"),
            kind,
            json!({"server": {"port": 6000}, "prometheus": {"enabled": false, "port": 6000}}),
        ));
    }
    check("a16", cases).await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a17_service_monitor_interval_is_a_duration() -> anyhow::Result<()> {
    let path = "spec.prometheus.serviceMonitor.interval";
    let mut cases = Vec::new();
    for kind in Kind::ALL {
        let k = kind.kind();
        cases.push(Case::rejected(
            &format!("{k} \"30 seconds\""),
            kind,
            json!({"prometheus": {"serviceMonitor": {"interval": "30 seconds"}}}),
            &[path, "should match"],
        ));
        cases.push(Case::accepted(
            &format!("{k} 1m30s"),
            kind,
            json!({"prometheus": {"serviceMonitor": {"interval": "1m30s"}}}),
        ));
    }
    check("a17", cases).await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn j8_http_port_range_and_distinct_from_the_other_ports() -> anyhow::Result<()> {
    let differ = "server.httpPort must differ from server.port";
    let differ_metrics = "server.httpPort must differ from prometheus.port when prometheus is enabled";
    let mut cases = Vec::new();
    for kind in [Kind::Engine, Kind::BlendEngine] {
        let k = kind.kind();
        // E21
        for bad in [80, 65536] {
            cases.push(Case::rejected(
                &format!("{k} httpPort {bad}"),
                kind,
                json!({"server": {"httpPort": bad}}),
                &["spec.server.httpPort"],
            ));
        }
        // E22
        cases.push(Case::rejected(
            &format!("{k} httpPort = port"),
            kind,
            json!({"server": {"port": 6000, "httpPort": 6000}}),
            &["spec", differ],
        ));
        cases.push(Case::rejected(
            &format!("{k} port = default httpPort"),
            kind,
            json!({"server": {"port": 8080}}),
            &["spec", differ],
        ));
        // E23
        cases.push(Case::rejected(
            &format!("{k} httpPort = default prometheus.port"),
            kind,
            json!({"server": {"httpPort": 9090}}),
            &["spec", differ_metrics],
        ));
        cases.push(Case::accepted(
            &format!("{k} httpPort = prometheus.port, prometheus disabled"),
            kind,
            json!({"server": {"httpPort": 9090}, "prometheus": {"enabled": false}}),
        ));
        cases.push(Case::accepted(
            &format!("{k} httpPort 8081"),
            kind,
            json!({"server": {"httpPort": 8081}}),
        ));
    }
    // C15
    cases.push(Case::rejected(
        "LMCacheCoordinator hashAlgorithm md5",
        Kind::Coordinator,
        json!({"hashAlgorithm": "md5"}),
        &["spec.hashAlgorithm", "Unsupported value"],
    ));
    cases.push(Case::accepted(
        "LMCacheCoordinator hashAlgorithm builtin, blendLookup",
        Kind::Coordinator,
        json!({"hashAlgorithm": "builtin", "blendLookup": true}),
    ));
    check("j8", cases).await
}
