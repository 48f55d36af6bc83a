//! Direct rendering of fixture files through the public API only (no validation crate), so the
//! snapshots pin the renderer itself; `offline.rs` checks that `render_documents` agrees.

#![allow(dead_code, clippy::unwrap_used, clippy::panic)] // test helpers

use lmcache_api::v1alpha1::{CacheBlendEngine, LMCacheCoordinator, LMCacheEngine};
use lmcache_manifest_renderer::{
    RenderContext, coordinator_url, render_blend_engine, render_coordinator, render_engine, yaml,
};
use serde_json::Value;
use std::collections::BTreeMap;

pub const DOMAIN: &str = "cluster.local";

pub fn docs(input: &str) -> Vec<Value> {
    yaml::documents(input)
        .unwrap()
        .into_iter()
        .map(|mut v| {
            if v["metadata"]["namespace"].is_null() {
                v["metadata"]["namespace"] = "default".into();
            }
            v
        })
        .collect()
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The multi-document YAML the renderer produces for the custom resources in `input`.
pub fn render_fixture(input: &str, domain: &str) -> String {
    let docs = docs(input);
    let urls: BTreeMap<(String, String), String> = docs
        .iter()
        .filter(|d| d["kind"] == "LMCacheCoordinator")
        .map(|d| {
            let c: LMCacheCoordinator = serde_json::from_value(d.clone()).unwrap();
            let (name, ns) = (c.metadata.name.unwrap(), c.metadata.namespace.unwrap());
            let url = coordinator_url(&name, &ns, c.spec.port);
            ((ns, name), url)
        })
        .collect();
    let mut out = Vec::new();
    for doc in docs {
        let ns = doc["metadata"]["namespace"].as_str().unwrap().to_string();
        let ref_name = doc["spec"]["coordinator"]["ref"]["name"]
            .as_str()
            .map(str::to_string);
        let url = ref_name.map(|r| urls[&(ns, r)].clone());
        let mut ctx = RenderContext::new(domain);
        ctx.coordinator_url = url.as_deref();
        match doc["kind"].as_str().unwrap() {
            "LMCacheEngine" => {
                let e: LMCacheEngine = serde_json::from_value(doc).unwrap();
                push_engine(&mut out, render_engine(&e, &ctx).unwrap());
            }
            "CacheBlendEngine" => {
                let e: CacheBlendEngine = serde_json::from_value(doc).unwrap();
                push_engine(&mut out, render_blend_engine(&e, &ctx).unwrap());
            }
            "LMCacheCoordinator" => {
                let c: LMCacheCoordinator = serde_json::from_value(doc).unwrap();
                let c = render_coordinator(&c, &ctx).unwrap();
                out.push(yaml::to_string(&c.deployment).unwrap());
                out.push(yaml::to_string(&c.service).unwrap());
                out.extend(c.metrics_service.map(|s| yaml::to_string(&s).unwrap()));
                out.extend(c.service_monitor.map(|s| yaml::to_string(&s).unwrap()));
            }
            other => panic!("unexpected kind {other}"),
        }
    }
    out.join("---\n")
}

fn push_engine(out: &mut Vec<String>, c: lmcache_manifest_renderer::EngineChildren) {
    out.push(yaml::to_string(&c.daemon_set).unwrap());
    out.push(yaml::to_string(&c.service).unwrap());
    out.push(yaml::to_string(&c.metrics_service).unwrap());
    out.push(yaml::to_string(&c.config_map).unwrap());
    out.extend(c.service_monitor.map(|s| yaml::to_string(&s).unwrap()));
}
