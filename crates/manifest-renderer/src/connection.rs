//! The `kv-transfer-config` JSON: the connection ConfigMap's only value and, byte for byte,
//! the `--kv-transfer-config` argument the webhook injects into CacheBlend vLLM pods.

use crate::json::write_string;
use crate::number::fmt_f64;
use lmcache_api::v1alpha1::{BlendConfig, CacheBlendEngineSpec, EngineSpec};

/// Which engine flavour the connection JSON is for.
#[derive(Clone, Copy, Debug)]
pub enum ConnectionKind<'a> {
    /// LMCacheEngine: `LMCacheMPConnector`.
    Engine,
    /// CacheBlendEngine: `CBKVConnector` with the `cb.*` tunables.
    Blend(&'a BlendConfig),
}

/// The pretty JSON for engine `name` in `namespace` (2-space indent, fixed key order, no
/// trailing newline). `cluster_domain` is the operator's and webhook's `--cluster-domain`.
pub fn kv_transfer_config(
    kind: ConnectionKind<'_>,
    engine: &EngineSpec,
    name: &str,
    namespace: &str,
    cluster_domain: &str,
) -> String {
    let host = format!("tcp://{name}.{namespace}.svc.{cluster_domain}");
    let port = engine.server.port.to_string();
    let mut out = String::from("{\n");
    let connector = match kind {
        ConnectionKind::Engine => "LMCacheMPConnector",
        ConnectionKind::Blend(_) => "CBKVConnector",
    };
    push_entry(&mut out, 2, "kv_connector", &quoted(connector), true);
    push_entry(&mut out, 2, "kv_role", &quoted("kv_both"), true);
    out.push_str("  \"kv_connector_extra_config\": {\n");
    push_entry(&mut out, 4, "lmcache.mp.host", &quoted(&host), true);
    match kind {
        ConnectionKind::Engine => {
            push_entry(&mut out, 4, "lmcache.mp.port", &quoted(&port), false);
            out.push_str("  }\n");
        }
        ConnectionKind::Blend(blend) => {
            push_entry(&mut out, 4, "lmcache.mp.port", &quoted(&port), true);
            push_entry(
                &mut out,
                4,
                "cb.check_layer",
                &blend.check_layer.to_string(),
                true,
            );
            push_entry(
                &mut out,
                4,
                "cb.recomp_ratio",
                &fmt_f64(blend.recomp_ratio),
                false,
            );
            out.push_str("  },\n");
            push_entry(
                &mut out,
                2,
                "kv_connector_module_path",
                &quoted("lmcache_cacheblend.connector"),
                false,
            );
        }
    }
    out.push('}');
    out
}

/// [`kv_transfer_config`] for a CacheBlendEngine.
pub fn blend_kv_transfer_config(
    spec: &CacheBlendEngineSpec,
    name: &str,
    namespace: &str,
    cluster_domain: &str,
) -> String {
    kv_transfer_config(
        ConnectionKind::Blend(&spec.blend),
        &spec.engine,
        name,
        namespace,
        cluster_domain,
    )
}

fn quoted(s: &str) -> String {
    let mut out = String::new();
    write_string(&mut out, s);
    out
}

fn push_entry(out: &mut String, indent: usize, key: &str, value: &str, comma: bool) {
    out.push_str(&" ".repeat(indent));
    write_string(out, key);
    out.push_str(": ");
    out.push_str(value);
    out.push_str(if comma { ",\n" } else { "\n" });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(port: i32) -> EngineSpec {
        serde_json::from_value(serde_json::json!({"l1": {"sizeGB": 60}, "server": {"port": port}})).unwrap()
    }

    #[test]
    fn engine_json_matches_spec_bytes() {
        let got = kv_transfer_config(
            ConnectionKind::Engine,
            &engine(5555),
            "my-cache",
            "default",
            "cluster.local",
        );
        let want = "{\n  \"kv_connector\": \"LMCacheMPConnector\",\n  \"kv_role\": \"kv_both\",\n  \"kv_connector_extra_config\": {\n    \"lmcache.mp.host\": \"tcp://my-cache.default.svc.cluster.local\",\n    \"lmcache.mp.port\": \"5555\"\n  }\n}";
        assert_eq!(got, want);
    }

    #[test]
    fn blend_json_matches_spec_bytes() {
        let spec: CacheBlendEngineSpec = serde_json::from_value(serde_json::json!({
            "l1": {"sizeGB": 60},
            "injection": {"payloadImage": {"repository": "registry.example.com/cacheblend-plugin", "tag": "v1"}}
        }))
        .unwrap();
        let got = blend_kv_transfer_config(&spec, "my-cacheblend", "default", "cluster.local");
        let want = "{\n  \"kv_connector\": \"CBKVConnector\",\n  \"kv_role\": \"kv_both\",\n  \"kv_connector_extra_config\": {\n    \"lmcache.mp.host\": \"tcp://my-cacheblend.default.svc.cluster.local\",\n    \"lmcache.mp.port\": \"5555\",\n    \"cb.check_layer\": 1,\n    \"cb.recomp_ratio\": 0.15\n  },\n  \"kv_connector_module_path\": \"lmcache_cacheblend.connector\"\n}";
        assert_eq!(got, want);
        let parsed: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(parsed["kv_connector_extra_config"]["cb.recomp_ratio"], 0.15);
    }
}
