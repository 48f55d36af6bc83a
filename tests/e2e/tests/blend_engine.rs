//! behaviours.md §E on the real control plane: a CacheBlendEngine's children, pod template,
//! args and connection JSON.

use lmcache_e2e::crd::Kind;
use lmcache_e2e::objects::{
    Res, Scope, args, assert_controlled_by, borrowed, container, engine_children, labels,
    minimal_engine_args, owned, standard_labels,
};
use lmcache_e2e::{Cluster, TempNamespace, settings};
use serde_json::{Value, json};

async fn scope(prefix: &str) -> anyhow::Result<(Scope, TempNamespace)> {
    settings::operator_health()?;
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, prefix).await?;
    Ok((Scope::new(&cluster, &namespace), namespace))
}

/// cacheblend.md §3, byte for byte.
fn blend_json(name: &str, ns: &str, port: u16, check_layer: &str, recomp_ratio: &str) -> String {
    format!(
        "{{\n  \"kv_connector\": \"CBKVConnector\",\n  \"kv_role\": \"kv_both\",\n  \
         \"kv_connector_extra_config\": {{\n    \"lmcache.mp.host\": \"tcp://{name}.{ns}.svc.cluster.local\",\n    \
         \"lmcache.mp.port\": \"{port}\",\n    \"cb.check_layer\": {check_layer},\n    \
         \"cb.recomp_ratio\": {recomp_ratio}\n  }},\n  \
         \"kv_connector_module_path\": \"lmcache_cacheblend.connector\"\n}}"
    )
}

fn blend_args(extra: &[&str]) -> Vec<String> {
    // cacheblend.md §2: the engine's args, then the blend flags, then extraArgs.
    let mut out = minimal_engine_args(5555);
    out.extend(owned(&["--engine-type", "blend", "--l1-align-bytes", "16777216"]));
    out.extend(owned(extra));
    out
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn e77_e78_e79_cacheblend_children_pod_template_args_and_connection_json() -> anyhow::Result<()> {
    let (s, _ns) = scope("e77-blend").await?;
    let name = "my-cacheblend";
    s.apply_cr(Kind::BlendEngine, name, &Kind::BlendEngine.minimal_spec())
        .await?;
    let children = engine_children(name);
    let found = s.wait_exist(&borrowed(&children)).await?;
    let blend = s.must_get(Res::Cr(Kind::BlendEngine), name).await?;

    // E77: the four children, owner kind CacheBlendEngine, the engine GPU model.
    for child in &found {
        assert_controlled_by(child, Kind::BlendEngine, &blend)?;
        assert_eq!(labels(child), standard_labels(Kind::BlendEngine, name));
    }
    let ds = &found[0];
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostIPC"], true);
    assert_eq!(pod["runtimeClassName"], "nvidia");
    let c = container(ds);
    assert_eq!(c["securityContext"], json!({"privileged": true}));
    assert!(
        c["env"]
            .as_array()
            .is_some_and(|env| env.contains(&json!({"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}))),
        "env {}",
        c["env"]
    );
    assert!(!c["resources"].to_string().contains("nvidia.com/gpu"));

    // E78: chunk size 256, the blend flags last.
    assert_eq!(args(ds), blend_args(&[]));

    // E79: the CBKVConnector JSON, byte for byte, as the only key.
    let cm = &found[3];
    let data = cm["data"].as_object().cloned().unwrap_or_default();
    assert_eq!(data.len(), 1, "{:?}", data.keys());
    assert_eq!(
        data.get("kv-transfer-config.json").and_then(Value::as_str),
        Some(blend_json(name, &s.ns, 5555, "1", "0.15").as_str())
    );

    // The engine runs like an LMCacheEngine.
    s.wait_running(Kind::BlendEngine, name, 3).await?;

    // E78: extraArgs come after the alignment flag.
    let mut spec = Kind::BlendEngine.minimal_spec();
    spec["extraArgs"] = json!(["--enable-extra-logging"]);
    s.apply_cr(Kind::BlendEngine, name, &spec).await?;
    s.wait("args ending with 16777216 --enable-extra-logging", || async {
        let ds = s.must_get(Res::DaemonSet, name).await?;
        let got = args(&ds);
        if got == blend_args(&["--enable-extra-logging"]) {
            Ok(Some(()))
        } else {
            anyhow::bail!("args {got:?}")
        }
    })
    .await?;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn e80_blend_tunables_and_port_reach_the_connection_json() -> anyhow::Result<()> {
    let (s, _ns) = scope("e80-blend").await?;
    let name = "tuned";
    let mut spec = Kind::BlendEngine.minimal_spec();
    spec["blend"] = json!({"checkLayer": 3, "recompRatio": 1});
    spec["server"] = json!({"port": 6555});
    s.apply_cr(Kind::BlendEngine, name, &spec).await?;
    let cm_name = format!("{name}-connection");
    let cm = s.wait_exist(&[(Res::ConfigMap, &cm_name)]).await?.remove(0);
    assert_eq!(
        cm["data"]["kv-transfer-config.json"],
        blend_json(name, &s.ns, 6555, "3", "1")
    );
    Ok(())
}
