//! The webhook server in-process over real TLS on 127.0.0.1 (no cluster).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use k8s_openapi::api::core::v1::Pod;
use lmcache_api::v1alpha1::CacheBlendEngine;
use lmcache_webhook::{EngineCache, MUTATE_PATH};
use serde_json::{Value, json};
use std::time::Duration;
use support::*;

const INTERVAL: Duration = Duration::from_secs(3600);

fn seed_cache() -> EngineCache<CacheBlendEngine> {
    EngineCache::from_engines([seed_engine()], "default")
}

/// Checks the body is a valid AdmissionReview response and returns `response`.
fn response_of(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let review = reply.json();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    assert!(review["response"]["allowed"].is_boolean(), "{review}");
    assert!(review["response"]["uid"].is_string(), "{review}");
    review["response"].clone()
}

fn apply_patch(pod: &Value, response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch");
    let encoded = response["patch"].as_str().expect("base64 patch");
    let bytes = base64_decode(encoded);
    let ops: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut doc = pod.clone();
    json_patch::patch(&mut doc, &ops).unwrap();
    doc
}

#[tokio::test]
async fn seed_pod_round_trip_returns_the_expected_patch() {
    let dir = TempDir::new("roundtrip");
    let ca = TestCa::new();
    ca.issue_into(&dir.0);
    let server = Running::start(seed_cache(), &dir.0, INTERVAL).await;

    let pod = template_pod_json(&fixture("seed/deployment.yaml"));
    let review = pod_review("705ab4f5-6393-11e8-b7cc-42010a800002", "default", pod.clone());
    let reply = https(
        server.addr,
        &ca.der(),
        "POST",
        MUTATE_PATH,
        serde_json::to_vec(&review).unwrap(),
    )
    .await;
    let response = response_of(&reply);
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], true);

    let patched: Pod = serde_json::from_value(apply_patch(&pod, &response)).unwrap();
    let mut want: Pod = serde_saphyr::from_str(&fixture("seed/expected-pod.yaml")).unwrap();
    want.metadata.namespace = Some("default".into());
    want.metadata.generate_name = Some("vllm-cacheblend-7d9c-".into());
    assert_eq!(patched, want);

    // The shell-wrapped variant: only the skip-reason annotation.
    let wrapped = template_pod_json(&fixture("seed/deployment-sh-c.yaml"));
    let review = pod_review("u2", "default", wrapped.clone());
    let reply = https(
        server.addr,
        &ca.der(),
        "POST",
        MUTATE_PATH,
        serde_json::to_vec(&review).unwrap(),
    )
    .await;
    let patched = apply_patch(&wrapped, &response_of(&reply));
    let mut want = wrapped.clone();
    want["metadata"]["annotations"]["lmcache.ai/cacheblend-skip-reason"] = json!("command-override");
    assert_eq!(patched, want);

    // Re-admitting the injected pod: allowed, no patch.
    let injected = apply_patch(&pod, &response);
    let review = pod_review("u3", "default", injected);
    let reply = https(
        server.addr,
        &ca.der(),
        "POST",
        MUTATE_PATH,
        serde_json::to_vec(&review).unwrap(),
    )
    .await;
    let response = response_of(&reply);
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none(), "{response}");

    let metrics = server.metrics_text();
    for want in [
        r#"lmcache_webhook_admission_total{webhook="cacheblend",outcome="injected",reason=""} 1"#,
        r#"lmcache_webhook_admission_total{webhook="cacheblend",outcome="skipped",reason="command-override"} 1"#,
        r#"lmcache_webhook_admission_total{webhook="cacheblend",outcome="ignored",reason=""} 1"#,
        r#"lmcache_webhook_admission_duration_seconds_count{webhook="cacheblend"} 3"#,
    ] {
        assert!(metrics.contains(want), "missing {want}\n{metrics}");
    }
    server.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_200_and_a_valid_review() {
    let dir = TempDir::new("malformed");
    let ca = TestCa::new();
    ca.issue_into(&dir.0);
    let server = Running::start(seed_cache(), &dir.0, INTERVAL).await;

    let good = serde_json::to_vec(&pod_review(
        "u",
        "default",
        template_pod_json(&fixture("seed/deployment.yaml")),
    ))
    .unwrap();
    let mut wrong_kind = pod_review("uid-kind", "default", json!({}));
    wrong_kind["kind"] = json!("ConfigMap");
    let mut wrong_version = pod_review("uid-version", "default", json!({}));
    wrong_version["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let mut no_request = pod_review("x", "default", json!({}));
    no_request.as_object_mut().unwrap().remove("request");
    let mut bad_operation = pod_review("uid-op", "default", json!({}));
    bad_operation["request"]["operation"] = json!("EXPLODE");
    let mut huge =
        b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"pad\":\"".to_vec();
    huge.resize(10 * 1024 * 1024, b'a');
    huge.extend_from_slice(b"\"}");

    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("empty", Vec::new(), None),
        ("truncated", good[..good.len() / 2].to_vec(), None),
        ("not json", b"<xml/>".to_vec(), None),
        ("array", b"[1,2]".to_vec(), None),
        (
            "wrong kind",
            serde_json::to_vec(&wrong_kind).unwrap(),
            Some("uid-kind"),
        ),
        (
            "wrong apiVersion",
            serde_json::to_vec(&wrong_version).unwrap(),
            Some("uid-version"),
        ),
        ("no request", serde_json::to_vec(&no_request).unwrap(), None),
        (
            "bad operation",
            serde_json::to_vec(&bad_operation).unwrap(),
            Some("uid-op"),
        ),
        ("10 MB", huge, None),
    ];
    // Never denied (lifecycle.md §5): a readable uid is allowed unchanged; a body without one
    // is not an AdmissionReview at all and gets a plain 400.
    for (name, body, uid) in cases {
        let reply = https(server.addr, &ca.der(), "POST", MUTATE_PATH, body).await;
        match uid {
            Some(uid) => {
                let response = response_of(&reply);
                assert_eq!(response["allowed"], true, "{name}: {response}");
                assert_eq!(response["uid"], uid, "{name}");
                assert!(response.get("patch").is_none(), "{name}");
            }
            None => {
                assert_eq!(reply.status, 400, "{name}");
                assert!(!reply.body.is_empty(), "{name}: a reason in the body");
            }
        }
    }
    let text = server.metrics_text();
    for want in [
        r#"lmcache_webhook_admission_total{webhook="cacheblend",outcome="malformed",reason=""} 3"#,
        r#"lmcache_webhook_admission_total{webhook="cacheblend",outcome="invalid",reason=""} 6"#,
    ] {
        assert!(text.contains(want), "missing {want}\n{text}");
    }

    // Well-formed reviews that are not pod CREATEs, or whose object is not a Pod: allowed, no patch.
    let mut update = pod_review(
        "uid-update",
        "default",
        template_pod_json(&fixture("seed/deployment.yaml")),
    );
    update["request"]["operation"] = json!("UPDATE");
    let mut configmap = pod_review("uid-cm", "default", json!({"metadata": {"name": "c"}}));
    configmap["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
    let garbage_object = pod_review("uid-obj", "default", json!({"spec": {"containers": "nope"}}));
    let no_object = pod_review("uid-none", "default", Value::Null);
    for review in [update, configmap, garbage_object, no_object] {
        let reply = https(
            server.addr,
            &ca.der(),
            "POST",
            MUTATE_PATH,
            serde_json::to_vec(&review).unwrap(),
        )
        .await;
        let response = response_of(&reply);
        assert_eq!(response["allowed"], true, "{response}");
        assert_eq!(response["uid"], review["request"]["uid"]);
        assert!(response.get("patch").is_none(), "{response}");
    }

    // Only POST on the one path.
    assert_eq!(
        https(server.addr, &ca.der(), "GET", MUTATE_PATH, vec![])
            .await
            .status,
        404
    );
    assert_eq!(
        https(server.addr, &ca.der(), "POST", "/mutate", good.clone())
            .await
            .status,
        404
    );
    assert_eq!(https(server.addr, &ca.der(), "POST", "/", good).await.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn not_ready_until_the_engine_list_completed() {
    let dir = TempDir::new("notready");
    let ca = TestCa::new();
    ca.issue_into(&dir.0);
    let (cache, mut writer) = EngineCache::<CacheBlendEngine>::new();
    let server = Running::start(cache, &dir.0, INTERVAL).await;
    let pod = template_pod_json(&fixture("seed/deployment.yaml"));
    let body = serde_json::to_vec(&pod_review("u1", "default", pod)).unwrap();

    let response = response_of(&https(server.addr, &ca.der(), "POST", MUTATE_PATH, body.clone()).await);
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none());
    assert!(server.metrics_text().contains(
        r#"lmcache_webhook_admission_total{webhook="cacheblend",outcome="not_ready",reason=""} 1"#
    ));

    // The initial list arrives (empty): the engine is missing.
    writer.apply(&kube::runtime::watcher::Event::Init);
    writer.apply(&kube::runtime::watcher::Event::InitDone);
    let response = response_of(&https(server.addr, &ca.der(), "POST", MUTATE_PATH, body.clone()).await);
    assert!(response.get("patch").is_some());
    assert!(
        server
            .metrics_text()
            .contains(r#"lmcache_webhook_admission_total{webhook="cacheblend",outcome="skipped",reason="engine-not-found"} 1"#)
    );

    // The engine appears through the watch: injected.
    let stored = lmcache_webhook::StoredEngine::from_value(serde_json::to_value(seed_engine()).unwrap());
    writer.apply(&kube::runtime::watcher::Event::Apply(stored));
    https(server.addr, &ca.der(), "POST", MUTATE_PATH, body).await;
    assert!(
        server.metrics_text().contains(
            r#"lmcache_webhook_admission_total{webhook="cacheblend",outcome="injected",reason=""} 1"#
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn rotated_certificate_is_served_without_restart() {
    let dir = TempDir::new("rotate");
    let ca = TestCa::new();
    let first = ca.issue_into(&dir.0);
    let server = Running::start(seed_cache(), &dir.0, Duration::ZERO).await;
    let reply = https(server.addr, &ca.der(), "POST", MUTATE_PATH, vec![]).await;
    assert_eq!(reply.server_cert, first);

    let second = ca.issue_into(&dir.0);
    assert_ne!(first, second);
    // The files are followed in the background (never read during a handshake).
    let mut served = Vec::new();
    for _ in 0..500 {
        served = https(server.addr, &ca.der(), "POST", MUTATE_PATH, vec![])
            .await
            .server_cert;
        if served == second {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(served, second);

    // A broken rewrite keeps the last good certificate.
    std::fs::write(dir.0.join("tls.key"), "garbage").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reply = https(server.addr, &ca.der(), "POST", MUTATE_PATH, vec![]).await;
    assert_eq!(reply.server_cert, second);
    server.stop().await;
}

#[tokio::test]
async fn http2_round_trip() {
    let dir = TempDir::new("h2");
    let ca = TestCa::new();
    ca.issue_into(&dir.0);
    let server = Running::start(seed_cache(), &dir.0, INTERVAL).await;
    let pod = template_pod_json(&fixture("seed/deployment.yaml"));
    let review = pod_review("uid-h2", "default", pod.clone());
    let reply = https_h2(
        server.addr,
        &ca.der(),
        MUTATE_PATH,
        serde_json::to_vec(&review).unwrap(),
    )
    .await;
    let response = response_of(&reply);
    assert_eq!(response["uid"], "uid-h2");
    let patched = apply_patch(&pod, &response);
    assert_eq!(patched["spec"]["hostIPC"], true);
    server.stop().await;
}

#[tokio::test]
async fn lmcache_connection_round_trip_on_its_own_path() {
    let dir = TempDir::new("lmcache");
    let ca = TestCa::new();
    ca.issue_into(&dir.0);
    let engine = lmcache_blend_injector::decode_lmcache_engine(json!({
        "apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": "LMCacheEngine",
        "metadata": {"name": "my-cache", "namespace": "team-a"},
        "spec": {"l1": {"sizeGB": 60}}
    }))
    .unwrap();
    let server = Running::start_both(
        seed_cache(),
        EngineCache::from_engines([engine], "default"),
        &dir.0,
        INTERVAL,
    )
    .await;
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "predictor-",
                     "labels": {"lmcache.ai/lmcache-inject": "true"},
                     "annotations": {"lmcache.ai/lmcache-engine": "my-cache"}},
        "spec": {"containers": [{"name": "kserve-container", "image": "vllm/vllm-openai", "args": ["--model", "m"]}]}
    });
    let review = pod_review("uid-lmc", "team-a", pod.clone());
    let body = serde_json::to_vec(&review).unwrap();
    let reply = https(
        server.addr,
        &ca.der(),
        "POST",
        lmcache_webhook::MUTATE_LMCACHE_PATH,
        body.clone(),
    )
    .await;
    let response = response_of(&reply);
    assert_eq!(response["uid"], "uid-lmc");
    let patched = apply_patch(&pod, &response);
    assert_eq!(patched["spec"]["hostIPC"], true);
    assert_eq!(
        patched["metadata"]["annotations"]["lmcache.ai/lmcache-injected"],
        "true"
    );
    let args = patched["spec"]["containers"][0]["args"].as_array().unwrap();
    assert_eq!(args[2], "--kv-transfer-config");
    assert!(
        args[3]
            .as_str()
            .unwrap()
            .contains("tcp://my-cache.team-a.svc.cluster.local")
    );

    // The same review on the CacheBlend path is not opted in there.
    let reply = https(server.addr, &ca.der(), "POST", MUTATE_PATH, body).await;
    assert!(response_of(&reply).get("patch").is_none());
    let text = server.metrics_text();
    for want in [
        r#"lmcache_webhook_admission_total{webhook="lmcache",outcome="injected",reason=""} 1"#,
        r#"lmcache_webhook_admission_total{webhook="cacheblend",outcome="ignored",reason=""} 1"#,
    ] {
        assert!(text.contains(want), "missing {want}\n{text}");
    }
    server.stop().await;
}
