use super::*;
use serde_json::{Value, json};

fn schema_of(crd: &CustomResourceDefinition) -> Value {
    let v = serde_json::to_value(&crd.spec.versions[0]).unwrap();
    v["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn crds_snapshot() {
    for crd in crds() {
        let name = crd.metadata.name.clone().unwrap();
        insta::assert_yaml_snapshot!(name, crd);
    }
}

/// The obvious structural-schema rules: every node has a type (or int-or-string /
/// preserve-unknown-fields), and no `oneOf`/`anyOf`/`allOf` branch carries `type` or
/// `description`; no `$ref`.
fn check_structural(path: &str, node: &Value, errors: &mut Vec<String>) {
    let Value::Object(map) = node else { return };
    if map.contains_key("$ref") {
        errors.push(format!("{path}: $ref"));
    }
    let typed = map.contains_key("type")
        || map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if !typed {
        errors.push(format!("{path}: no type"));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(Value::Array(branches)) = map.get(key) {
            for b in branches {
                if b.get("type").is_some() || b.get("description").is_some() {
                    errors.push(format!("{path}.{key}: branch with type/description"));
                }
            }
        }
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        for (k, v) in props {
            check_structural(&format!("{path}.{k}"), v, errors);
        }
    }
    if let Some(items) = map.get("items") {
        check_structural(&format!("{path}[]"), items, errors);
    }
    if let Some(ap @ Value::Object(_)) = map.get("additionalProperties") {
        check_structural(&format!("{path}{{}}"), ap, errors);
    }
}

#[test]
fn schemas_are_structural() {
    for crd in crds() {
        let mut errors = Vec::new();
        check_structural("", &schema_of(&crd), &mut errors);
        assert!(errors.is_empty(), "{}: {errors:#?}", crd.metadata.name.unwrap());
    }
}

#[test]
fn crds_fit_in_last_applied_annotation() {
    for crd in crds() {
        let yaml = serde_saphyr::to_string(&crd).unwrap();
        assert!(
            yaml.len() < 200 * 1024,
            "{} is {} bytes",
            crd.metadata.name.unwrap(),
            yaml.len()
        );
    }
}

#[test]
fn names_columns_and_status() {
    let expect = [
        (
            "lmcacheengines.lmcache.lmcache.ai",
            "lmc",
            vec!["Phase", "Ready", "Desired", "Updated", "Age"],
        ),
        (
            "cacheblendengines.lmcache.lmcache.ai",
            "cbe",
            vec!["Phase", "Ready", "Desired", "Updated", "Age"],
        ),
        (
            "lmcachecoordinators.lmcache.lmcache.ai",
            "lmcc",
            vec!["Phase", "Ready", "Replicas", "Endpoint", "Age"],
        ),
    ];
    for (crd, (name, short, cols)) in crds().iter().zip(expect) {
        assert_eq!(crd.metadata.name.as_deref(), Some(name));
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&[short.to_string()][..])
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["lmcache".to_string()][..])
        );
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(v.served && v.storage);
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        let got: Vec<_> = v
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(got, cols);
        let conds = &schema_of(crd)["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conds["x-kubernetes-list-type"], "map");
        assert_eq!(conds["x-kubernetes-list-map-keys"], json!(["type"]));
    }
}

#[test]
fn defaults_materialised_by_schema() {
    let [engine, blend, coord] = <[_; 3]>::try_from(crds()).unwrap();
    let e = schema_of(&engine);
    let spec = &e["properties"]["spec"];
    for parent in ["image", "server", "eviction", "prometheus"] {
        assert_eq!(spec["properties"][parent]["default"], json!({}), "{parent}");
    }
    assert_eq!(
        spec["properties"]["prometheus"]["properties"]["serviceMonitor"]["default"],
        json!({})
    );
    assert_eq!(
        spec["properties"]["nodeSelector"]["default"],
        json!({"nvidia.com/gpu.present": "true"})
    );
    assert_eq!(
        spec["properties"]["server"]["properties"]["port"]["default"],
        json!(5555)
    );
    assert!(spec["properties"]["coordinator"].get("default").is_none());
    assert!(spec["properties"]["l2Backends"].get("default").is_none());
    assert!(e["required"].as_array().unwrap().contains(&json!("spec")));
    let b = schema_of(&blend);
    let chunk = &b["properties"]["spec"]["properties"]["server"]["properties"]["chunkSize"];
    assert_eq!(chunk["enum"], json!([256]));
    assert_eq!(
        b["properties"]["spec"]["properties"]["blend"]["default"],
        json!({})
    );
    let repo = &b["properties"]["spec"]["properties"]["injection"]["properties"]["payloadImage"];
    assert!(repo["properties"]["repository"].get("default").is_none());
    assert_eq!(repo["required"], json!(["repository"]));
    let c = schema_of(&coord);
    assert_eq!(
        c["properties"]["spec"]["properties"]["port"]["default"],
        json!(9300)
    );
    assert_eq!(c["properties"]["spec"]["default"], json!({}));
    assert!(c.get("required").is_none());
    let _: v1alpha1::LMCacheCoordinator = serde_json::from_value(
        json!({"apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": "LMCacheCoordinator", "metadata": {"name": "c"}, "spec": {}}),
    )
    .unwrap();
    assert!(
        c["properties"]["spec"]["properties"]
            .get("blendChunkSize")
            .unwrap()
            .get("default")
            .is_none()
    );
}

#[test]
fn spec_examples_deserialise_with_defaults() {
    let e: v1alpha1::LMCacheEngine = serde_saphyr::from_str(
        "apiVersion: lmcache.lmcache.ai/v1alpha1\nkind: LMCacheEngine\nmetadata: {name: my-cache}\nspec:\n  l1: {sizeGB: 60}\n",
    )
    .unwrap();
    assert!(e.spec.injection.is_none());
    let s = &e.spec.engine;
    assert_eq!(
        (s.image.reference().as_str(), s.image.pull_policy),
        ("lmcache/vllm-openai:latest", v1alpha1::PullPolicy::IfNotPresent)
    );
    assert_eq!(
        (s.server.port, s.server.chunk_size, s.server.max_workers),
        (5555, 256, 1)
    );
    assert_eq!(s.server.hash_algorithm.as_str(), "blake3");
    assert_eq!(
        (s.eviction.trigger_watermark, s.eviction.eviction_ratio),
        (0.8, 0.2)
    );
    assert!(s.prometheus.enabled && !s.prometheus.service_monitor.enabled);
    assert_eq!(
        (s.prometheus.port, s.prometheus.service_monitor.interval.as_str()),
        (9090, "30s")
    );
    assert_eq!(s.node_selector, v1alpha1::default_node_selector());
    assert_eq!(s.log_level, v1alpha1::LogLevel::Info);
}
