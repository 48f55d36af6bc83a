//! behaviours.md 117 / multitenancy.md MTT-4..6: the webhook resolves an engine only in the
//! pod's own namespace, so identically named engines and pods in two namespaces stay apart.

use lmcache_e2e::objects::{Scope, strings};
use lmcache_e2e::webhook_pods::{
    SKIP_REASON, annotation, apply_engine, connection_json, create, kv_transfer_config, vllm_pod,
    wait_engine_visible,
};
use lmcache_e2e::{Cluster, TempNamespace, settings};
use serde_json::{Value, json};

fn engine(repository: &str, tag: &str, port: u16) -> Value {
    json!({
        "l1": {"sizeGB": 60},
        "server": {"port": port},
        "injection": {"payloadImage": {"repository": repository, "tag": tag}}
    })
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn webhook_i117_same_named_engines_and_pods_in_two_namespaces() -> anyhow::Result<()> {
    settings::webhook_url()?;
    let cluster = Cluster::connect().await?;
    let ns_a = TempNamespace::create(&cluster, "wh-team-a").await?;
    let ns_b = TempNamespace::create(&cluster, "wh-team-b").await?;
    let ns_c = TempNamespace::create(&cluster, "wh-team-c").await?;
    let (a, b, c) = (
        Scope::new(&cluster, &ns_a),
        Scope::new(&cluster, &ns_b),
        Scope::new(&cluster, &ns_c),
    );
    apply_engine(&a, "cb", &engine("reg/a", "1", 5555)).await?;
    apply_engine(&b, "cb", &engine("reg/b", "2", 6555)).await?;
    wait_engine_visible(&a, "cb").await?;
    wait_engine_visible(&b, "cb").await?;

    for (scope, image, port) in [(&a, "reg/a:1", "5555"), (&b, "reg/b:2", "6555")] {
        let pod = create(scope, &vllm_pod("vllm", Some("cb"), &json!({}))).await?;
        assert_eq!(
            pod["spec"]["initContainers"][0]["image"], image,
            "namespace {}",
            scope.ns
        );
        let args = strings(&pod["spec"]["containers"][0]["args"]);
        let injected = kv_transfer_config(&args).unwrap_or_default().to_string();
        let parsed: Value = serde_json::from_str(&injected)?;
        let extra = &parsed["kv_connector_extra_config"];
        assert_eq!(
            extra["lmcache.mp.host"],
            format!("tcp://cb.{}.svc.cluster.local", scope.ns)
        );
        assert_eq!(extra["lmcache.mp.port"], port);
        assert_eq!(injected, connection_json(scope, "cb").await?);
    }

    // No engine in team-c: a pod annotated `cb` is not bound to another namespace's `cb`.
    let stray = create(&c, &vllm_pod("vllm", Some("cb"), &json!({}))).await?;
    assert_eq!(annotation(&stray, SKIP_REASON), Some("engine-not-found"));
    assert!(stray["spec"]["initContainers"].is_null());
    // A namespace-qualified value never reaches across namespaces.
    let qualified = format!("{}/cb", a.ns);
    let cross = create(&b, &vllm_pod("cross", Some(&qualified), &json!({}))).await?;
    assert_eq!(annotation(&cross, SKIP_REASON), Some("engine-not-found"));
    assert!(cross["spec"]["initContainers"].is_null());
    Ok(())
}
