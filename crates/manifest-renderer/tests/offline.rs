//! `render_documents`: the offline render core (multi-document YAML in and out).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use lmcache_manifest_renderer::render_documents;
use serde_json::Value;

fn out_docs(output: &str) -> Vec<Value> {
    lmcache_manifest_renderer::yaml::documents(output).unwrap()
}

fn errors(input: &str) -> Vec<String> {
    render_documents(input, common::DOMAIN).unwrap_err()
}

#[test]
fn every_fixture_renders_like_the_typed_api() {
    // The fixtures' snapshots come from the typed API (tests/common); the offline path, which
    // decodes and validates through lmcache-validation, must give the same bytes.
    insta::glob!("fixtures/*.yaml", |path| {
        let input = std::fs::read_to_string(path).unwrap();
        let got = render_documents(&input, common::DOMAIN).unwrap();
        assert_eq!(
            got,
            common::render_fixture(&input, common::DOMAIN),
            "{}",
            path.display()
        );
    });
}

#[test]
fn minimal_engine_gives_the_four_objects() {
    let out = render_documents(&common::fixture("minimal-engine.yaml"), common::DOMAIN).unwrap();
    let docs = out_docs(&out);
    let ids: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{} {}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["namespace"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            "DaemonSet default/my-cache",
            "Service default/my-cache",
            "Service default/my-cache-metrics",
            "ConfigMap default/my-cache-connection"
        ]
    );
    // Offline: no uid, so no owner references.
    assert!(
        docs.iter()
            .all(|d| d["metadata"].get("ownerReferences").is_none())
    );
    assert!(out.starts_with("apiVersion: apps/v1\nkind: DaemonSet\n"));
}

#[test]
fn several_resources_keep_input_order_and_resolve_refs() {
    let input = r#"
apiVersion: lmcache.lmcache.ai/v1alpha1
kind: LMCacheEngine
metadata: {name: a, namespace: team-a}
spec: {l1: {sizeGB: 1}, coordinator: {ref: {name: coord}}}
---
---
apiVersion: lmcache.lmcache.ai/v1alpha1
kind: LMCacheCoordinator
metadata: {name: coord, namespace: team-a}
spec: {port: 9400}
---
apiVersion: lmcache.lmcache.ai/v1alpha1
kind: LMCacheCoordinator
metadata: {name: coord, namespace: team-b}
---
apiVersion: lmcache.lmcache.ai/v1alpha1
kind: CacheBlendEngine
metadata: {name: b, namespace: team-b}
spec:
  l1: {sizeGB: 1}
  coordinator: {ref: {name: coord}}
  injection: {payloadImage: {repository: reg/b}}
"#;
    let out = render_documents(input, "corp.local").unwrap();
    let docs = out_docs(&out);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "DaemonSet",
            "Service",
            "Service",
            "ConfigMap", // engine a
            "Deployment",
            "Service", // coordinator team-a/coord
            "Deployment",
            "Service", // coordinator team-b/coord
            "DaemonSet",
            "Service",
            "Service",
            "ConfigMap", // blend b
        ]
    );
    let args = |d: &Value| d["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    let url = |d: &Value| {
        let a = args(d);
        let a = a.as_array().unwrap();
        let i = a.iter().position(|x| x == "--coordinator-url").unwrap();
        a[i + 1].as_str().unwrap().to_string()
    };
    assert_eq!(url(&docs[0]), "http://coord.team-a.svc:9400");
    assert_eq!(url(&docs[8]), "http://coord.team-b.svc:9300");
    assert!(
        docs[11]["data"]["kv-transfer-config.json"]
            .as_str()
            .unwrap()
            .contains("tcp://b.team-b.svc.corp.local")
    );
}

#[test]
fn validation_errors_name_the_object_and_field() {
    let input = "apiVersion: lmcache.lmcache.ai/v1alpha1\nkind: LMCacheEngine\nmetadata: {name: my-cache}\nspec: {l1: {sizeGB: 0}, eviction: {triggerWatermark: 1.5}}\n";
    assert_eq!(
        errors(input),
        [
            "LMCacheEngine default/my-cache: spec.l1.sizeGB: must be greater than 0",
            "LMCacheEngine default/my-cache: spec.eviction.triggerWatermark: must be in (0.0, 1.0]",
        ]
    );
}

#[test]
fn errors_from_several_documents_are_all_reported() {
    let input = r#"
apiVersion: lmcache.lmcache.ai/v1alpha1
kind: LMCacheCoordinator
metadata: {name: c, namespace: ops}
spec: {port: 0}
---
apiVersion: lmcache.lmcache.ai/v1alpha1
kind: CacheBlendEngine
metadata: {name: cb}
spec: {l1: {sizeGB: 60}, server: {chunkSize: 512}, injection: {payloadImage: {repository: r}}}
"#;
    assert_eq!(
        errors(input),
        [
            "LMCacheCoordinator ops/c: spec.port: must be in [1, 65535]",
            "CacheBlendEngine default/cb: spec.server.chunkSize: must be 256 for CacheBlendEngine (chunk_size must equal vLLM --block-size 64 * 4)",
        ]
    );
}

#[test]
fn missing_coordinator_is_an_error() {
    let input = "apiVersion: lmcache.lmcache.ai/v1alpha1\nkind: LMCacheEngine\nmetadata: {name: e, namespace: team-a}\nspec: {l1: {sizeGB: 1}, coordinator: {ref: {name: c}}}\n---\napiVersion: lmcache.lmcache.ai/v1alpha1\nkind: LMCacheCoordinator\nmetadata: {name: c, namespace: team-b}\n";
    assert_eq!(
        errors(input),
        [
            r#"LMCacheEngine team-a/e: spec.coordinator.ref.name: LMCacheCoordinator "c" not found in namespace "team-a""#
        ]
    );
}

#[test]
fn not_our_kinds_and_bad_yaml() {
    let e = errors("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("document 1: kind \"ConfigMap\""), "{e:?}");

    let e = errors(
        "apiVersion: lmcache.lmcache.ai/v1beta1\nkind: LMCacheEngine\nmetadata: {name: x}\nspec: {l1: {sizeGB: 1}}\n",
    );
    assert!(
        e[0].contains("apiVersion must be lmcache.lmcache.ai/v1alpha1"),
        "{e:?}"
    );

    let e = errors("- just\n- a list\n");
    assert_eq!(e, ["document 1: not a Kubernetes object"]);

    let e = errors("kind: LMCacheEngine\nspec: [unclosed\n");
    assert!(e[0].starts_with("document 1: invalid YAML"), "{e:?}");

    assert_eq!(render_documents("", common::DOMAIN).unwrap(), "");
    assert_eq!(render_documents("---\n# nothing\n", common::DOMAIN).unwrap(), "");
}

#[test]
fn duplicates_and_child_name_conflicts_are_errors() {
    let engine = "apiVersion: lmcache.lmcache.ai/v1alpha1\nkind: LMCacheEngine\nmetadata: {name: x}\nspec: {l1: {sizeGB: 1}}\n";
    let e = errors(&format!("{engine}---\n{engine}"));
    assert_eq!(
        e,
        ["LMCacheEngine default/x: appears more than once in the input"]
    );

    // An engine and a coordinator named alike both need Service default/x (MT-13).
    let coordinator =
        "apiVersion: lmcache.lmcache.ai/v1alpha1\nkind: LMCacheCoordinator\nmetadata: {name: x}\n";
    let e = errors(&format!("{engine}---\n{coordinator}"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with(
            "LMCacheCoordinator default/x: Service default/x is already rendered for LMCacheEngine default/x"
        ),
        "{e:?}"
    );
}

#[test]
fn determinism() {
    let input = common::fixture("engine-everything.yaml");
    let first = render_documents(&input, common::DOMAIN).unwrap();
    for _ in 0..5 {
        assert_eq!(render_documents(&input, common::DOMAIN).unwrap(), first);
    }
}

#[test]
fn null_fields_count_as_absent_and_get_defaults() {
    let minimal = render_documents(&common::fixture("minimal-engine.yaml"), common::DOMAIN).unwrap();
    let with_nulls = "apiVersion: lmcache.lmcache.ai/v1alpha1\nkind: LMCacheEngine\nmetadata: {name: my-cache, namespace: null}\nspec:\n  l1: {sizeGB: 60}\n  prometheus: null\n  nodeSelector: null\n  server: {port: null}\n  env: null\n";
    assert_eq!(render_documents(with_nulls, common::DOMAIN).unwrap(), minimal);
}
