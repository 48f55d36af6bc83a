//! behaviours.md §F skip reasons (88-92, 95, 96) through real pod creation: the apiserver calls
//! the webhook at 127.0.0.1, and each skipped pod must equal an unlabelled control copy (which
//! the objectSelector keeps from the webhook) except for the skip-reason annotation.
//!
//! Not here: 91 `payload-image-unset` needs an engine stored without a payload repository,
//! which the CRD schema rejects (B02); replacing the CRD with a permissive one would disturb
//! the other helpers' tests on the shared cluster, so it is covered by the blend-injector and
//! webhook unit tests. F102 (not ready before the initial list) is covered by the webhook's
//! unit and binary smoke tests, and F105 (webhook Deployment scaled to 0) does not apply to the
//! local process the suite shares, which these tests must not stop.

use lmcache_e2e::crd::Kind;
use lmcache_e2e::objects::Scope;
use lmcache_e2e::webhook_pods::{
    ENGINE, INJECTED, apply_engine, assert_unchanged, vllm_pod, wait_engine_visible,
};
use lmcache_e2e::{Cluster, TempNamespace, settings};
use serde_json::json;

/// A namespace with CacheBlendEngine `cb` that the webhook already sees.
async fn with_engine(prefix: &str) -> anyhow::Result<(Scope, TempNamespace)> {
    settings::webhook_url()?;
    let cluster = Cluster::connect().await?;
    let namespace = TempNamespace::create(&cluster, prefix).await?;
    let scope = Scope::new(&cluster, &namespace);
    apply_engine(&scope, "cb", &Kind::BlendEngine.minimal_spec()).await?;
    wait_engine_visible(&scope, "cb").await?;
    Ok((scope, namespace))
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn webhook_skips_f90_qualified_or_unknown_engine_names() -> anyhow::Result<()> {
    let (scope, _ns) = with_engine("wh-skip-90").await?;
    // A value with `/` never matches, even though `cb` exists here (§6).
    let qualified = format!("{}/cb", scope.ns);
    for (name, engine) in [
        ("qualified", qualified.as_str()),
        ("team-a", "team-a/cb"),
        ("other", "cb2"),
    ] {
        assert_unchanged(
            &scope,
            &vllm_pod(name, Some(engine), &json!({})),
            Some("engine-not-found"),
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn webhook_skips_f92_target_container_not_found() -> anyhow::Result<()> {
    let (scope, _ns) = with_engine("wh-skip-92").await?;
    // The annotation names a container the pod lacks; init containers do not count.
    let pod = vllm_pod(
        "missing-target",
        Some("cb"),
        &json!({
            "metadata": {"annotations": {"lmcache.ai/cacheblend-container": "sidecar"}},
            "spec": {"initContainers": [{"name": "sidecar", "image": "busybox:test"}]}
        }),
    );
    assert_unchanged(&scope, &pod, Some("target-container-not-found")).await?;

    // The engine's injection.targetContainer names a missing container.
    let mut spec = Kind::BlendEngine.minimal_spec();
    spec["injection"]["targetContainer"] = json!("engine-target");
    apply_engine(&scope, "cb-target", &spec).await?;
    let mut n = 0;
    scope
        .wait("the webhook to see cb-target", || {
            n += 1;
            let pod = vllm_pod(&format!("engine-target-{n}"), Some("cb-target"), &json!({}));
            let scope = scope.clone();
            async move {
                let created = lmcache_e2e::webhook_pods::create(&scope, &pod).await?;
                let reason =
                    lmcache_e2e::webhook_pods::annotation(&created, "lmcache.ai/cacheblend-skip-reason");
                Ok((reason == Some("target-container-not-found")).then_some(()))
            }
        })
        .await?;
    let pod = vllm_pod("engine-target", Some("cb-target"), &json!({}));
    assert_unchanged(&scope, &pod, Some("target-container-not-found")).await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn webhook_skips_f88_command_override() -> anyhow::Result<()> {
    let (scope, _ns) = with_engine("wh-skip-88").await?;
    let pod = vllm_pod(
        "wrapped",
        Some("cb"),
        &json!({"spec": {"containers": [{
            "name": "vllm",
            "image": "lmcache/vllm-openai:test",
            "command": ["/bin/sh", "-c", "vllm serve some-model"]
        }]}}),
    );
    assert_unchanged(&scope, &pod, Some("command-override")).await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn webhook_skips_f89_kv_transfer_config_present_in_both_forms() -> anyhow::Result<()> {
    let (scope, _ns) = with_engine("wh-skip-89").await?;
    let forms = [
        (
            "space",
            json!(["some-model", "--kv-transfer-config", "{\"kv_connector\":\"X\"}"]),
        ),
        (
            "equals",
            json!(["some-model", "--kv-transfer-config={\"kv_connector\":\"X\"}"]),
        ),
        (
            "underscore",
            json!(["some-model", "--kv_transfer_config={}", "--block-size", "16"]),
        ),
    ];
    for (name, args) in forms {
        let pod = vllm_pod(
            name,
            Some("cb"),
            &json!({"spec": {"containers": [{
                "name": "vllm", "image": "lmcache/vllm-openai:test", "args": args
            }]}}),
        );
        assert_unchanged(&scope, &pod, Some("kv-transfer-config-present")).await?;
    }
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn webhook_skips_f96_no_engine_annotation_leaves_no_trace() -> anyhow::Result<()> {
    let (scope, _ns) = with_engine("wh-skip-96").await?;
    assert_unchanged(&scope, &vllm_pod("unbound", None, &json!({})), None).await?;
    let blank = vllm_pod("blank", Some("   "), &json!({}));
    assert_unchanged(&scope, &blank, None).await
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn webhook_skips_f95_already_injected_pod_is_readmitted_unchanged() -> anyhow::Result<()> {
    let (scope, _ns) = with_engine("wh-skip-95").await?;
    // The pod carries the marker (e.g. recreated from a dumped injected pod): nothing is
    // added a second time, and no skip reason is set.
    let pod = vllm_pod(
        "again",
        Some("cb"),
        &json!({"metadata": {"annotations": {INJECTED: "true", ENGINE: "cb"}}}),
    );
    assert_unchanged(&scope, &pod, None).await
}
