//! behaviours.md §A 1–3 and the stored defaults of 10–13: discovery, short names, printer
//! columns and schema defaults as `kubectl` shows them.

use lmcache_e2e::crd::{API_VERSION, Kind};
use lmcache_e2e::json::assert_contains;
use lmcache_e2e::{Cluster, TempNamespace};
use serde_json::{Value, json};

/// Applies the minimal object of `kind` merged with `patch` and returns the stored spec.
async fn stored_spec(
    cluster: &Cluster,
    namespace: &TempNamespace,
    kind: Kind,
    name: &str,
    spec: &Value,
) -> anyhow::Result<Value> {
    cluster
        .kubectl
        .apply(namespace.name(), &kind.manifest(name, spec))
        .await?
        .ok()?;
    let stored = cluster
        .kubectl
        .get_json(namespace.name(), &[kind.plural(), name])
        .await?;
    Ok(stored["spec"].clone())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a01_api_resources_lists_the_three_kinds_with_short_names() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let out = cluster
        .kubectl
        .run(&["api-resources", "--api-group=lmcache.lmcache.ai", "--no-headers"])
        .await?
        .ok()?;
    // Columns: NAME SHORTNAMES APIVERSION NAMESPACED KIND.
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    for kind in Kind::ALL {
        let expected = vec![kind.plural(), kind.short_name(), API_VERSION, "true", kind.kind()];
        assert!(
            rows.contains(&expected),
            "no api-resources row {expected:?} in:\n{out}"
        );
    }
    assert_eq!(rows.len(), 3, "unexpected extra resources:\n{out}");

    // Each kind has a status subresource.
    let discovery: Value = serde_json::from_str(
        &cluster
            .kubectl
            .run(&["get", "--raw", &format!("/apis/{API_VERSION}")])
            .await?
            .ok()?,
    )?;
    let names: Vec<&str> = discovery["resources"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["name"].as_str()).collect())
        .unwrap_or_default();
    for kind in Kind::ALL {
        let status = format!("{}/status", kind.plural());
        assert!(
            names.contains(&status.as_str()),
            "{status} missing from {names:?}"
        );
    }
    Ok(())
}

/// The header row of `kubectl get <resource>` in `namespace`, split into columns.
async fn header(cluster: &Cluster, namespace: &str, resource: &str) -> anyhow::Result<Vec<String>> {
    let out = cluster
        .kubectl
        .run(&["get", resource, "-n", namespace])
        .await?
        .ok()?;
    Ok(out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a02_minimal_engine_is_accepted_and_get_prints_the_columns() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, "a02").await?;
    for kind in Kind::ALL {
        cluster
            .kubectl
            .apply(namespace.name(), &kind.manifest("my-cache", &kind.minimal_spec()))
            .await?
            .ok()?;
    }
    let engine_columns = ["NAME", "PHASE", "READY", "DESIRED", "AGE"];
    assert_eq!(header(&cluster, namespace.name(), "lmc").await?, engine_columns);
    assert_eq!(header(&cluster, namespace.name(), "cbe").await?, engine_columns);
    // G111's column list for coordinators.
    assert_eq!(
        header(&cluster, namespace.name(), "lmcc").await?,
        ["NAME", "PHASE", "READY", "REPLICAS", "ENDPOINT", "AGE"]
    );
    let rows = cluster
        .kubectl
        .run(&["get", "lmc", "-n", namespace.name(), "--no-headers"])
        .await?
        .ok()?;
    assert!(rows.starts_with("my-cache "), "{rows}");
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn category_lmcache_lists_all_three_kinds() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, "category").await?;
    for kind in Kind::ALL {
        cluster
            .kubectl
            .apply(namespace.name(), &kind.manifest("x", &kind.minimal_spec()))
            .await?
            .ok()?;
    }
    let out = cluster
        .kubectl
        .run(&["get", "lmcache", "-n", namespace.name(), "-o", "name"])
        .await?
        .ok()?;
    for kind in Kind::ALL {
        let expected = format!("{}.lmcache.lmcache.ai/x", kind.kind().to_ascii_lowercase());
        assert!(out.lines().any(|l| l == expected), "{expected} not in:\n{out}");
    }
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a03_minimal_engine_stores_every_default() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, "a03").await?;
    let spec = stored_spec(
        &cluster,
        &namespace,
        Kind::Engine,
        "my-cache",
        &json!({"l1": {"sizeGB": 60}}),
    )
    .await?;
    assert_contains(
        &spec,
        &json!({
            "l1": {"sizeGB": 60},
            "image": {"repository": "lmcache/vllm-openai", "tag": "latest", "pullPolicy": "IfNotPresent"},
            "server": {"port": 5555, "httpPort": 8080, "chunkSize": 256, "maxWorkers": 1, "hashAlgorithm": "blake3"},
            "eviction": {"policy": "LRU", "triggerWatermark": 0.8, "evictionRatio": 0.2},
            "prometheus": {
                "enabled": true,
                "port": 9090,
                "serviceMonitor": {"enabled": false, "interval": "30s"}
            },
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
            "logLevel": "INFO"
        }),
    )?;
    assert!(spec.get("coordinator").is_none(), "coordinator defaulted: {spec}");
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn a10_to_a13_blend_engine_defaults_and_no_default_payload_repository() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, "a10-13").await?;
    let spec = stored_spec(
        &cluster,
        &namespace,
        Kind::BlendEngine,
        "my-cacheblend",
        &json!({
            "l1": {"sizeGB": 60},
            "injection": {"payloadImage": {"repository": "registry.example.com/cacheblend-plugin"}}
        }),
    )
    .await?;
    assert_contains(
        &spec,
        &json!({
            "server": {"chunkSize": 256},
            "injection": {
                "cudagraph": "eager",
                "payloadImage": {
                    "repository": "registry.example.com/cacheblend-plugin",
                    "tag": "latest",
                    "pullPolicy": "IfNotPresent"
                }
            },
            "blend": {"recompRatio": 0.15, "checkLayer": 1}
        }),
    )?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn coordinator_defaults_follow_the_api_table() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, "lmcc-defaults").await?;
    let spec = stored_spec(
        &cluster,
        &namespace,
        Kind::Coordinator,
        "my-coordinator",
        &json!({}),
    )
    .await?;
    assert_contains(
        &spec,
        &json!({
            "replicas": 1,
            "image": {"repository": "lmcache/vllm-openai", "tag": "latest", "pullPolicy": "IfNotPresent"},
            "host": "0.0.0.0",
            "port": 9300,
            "instanceTimeout": 30,
            "healthCheckInterval": 10,
            "evictionCheckInterval": 5,
            "evictionRatio": 0.2,
            "triggerWatermark": 1.0,
            "prometheus": {"enabled": true, "port": 9090, "serviceMonitor": {"enabled": false, "interval": "30s"}},
            "blendLookup": false,
            "hashAlgorithm": "blake3",
            "logLevel": "INFO"
        }),
    )?;
    // No schema default for the blend directory settings, and no nodeSelector default.
    for absent in ["blendChunkSize", "blendProbeStride", "nodeSelector"] {
        assert!(spec.get(absent).is_none(), "{absent} defaulted: {spec}");
    }
    Ok(())
}
