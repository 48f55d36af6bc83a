//! The review handler without sockets: snapshots of the answer to fixture reviews, the
//! multi-tenancy cases, and a deterministic mutation fuzz (the cargo-fuzz target goes further).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use lmcache_blend_injector::{Webhook, decode_engine};
use lmcache_webhook::{Admitter, EngineCache};
use serde_json::{Value, json};
use support::*;

fn engine(name: &str, namespace: &str, repo: &str, port: u16) -> lmcache_api::v1alpha1::CacheBlendEngine {
    decode_engine(json!({
        "apiVersion": "lmcache.lmcache.ai/v1alpha1", "kind": "CacheBlendEngine",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "l1": {"sizeGB": 60}, "server": {"port": port}, "prometheus": {"port": 9091},
            "injection": {"payloadImage": {"repository": repo.split(':').next().unwrap(), "tag": repo.split(':').nth(1).unwrap()}}
        }
    }))
    .unwrap()
}

fn answer(admitter: &Admitter, review: &Value) -> Value {
    let verdict = admitter.review(Webhook::CacheBlend, &serde_json::to_vec(review).unwrap());
    let mut review: Value = serde_json::from_slice(&verdict.body()).unwrap();
    // Snapshot the patch decoded: base64 on the wire, JSON here.
    if let Some(patch) = review.pointer_mut("/response/patch") {
        *patch = serde_json::from_slice(&base64_decode(patch.as_str().unwrap())).unwrap();
    }
    review
}

fn pod(name: &str, engine: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"lmcache.ai/cacheblend-inject": "true"},
            "annotations": {"lmcache.ai/cacheblend-engine": engine}
        },
        "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.10.0", "args": ["m"]}]}
    })
}

#[test]
fn snapshots_of_answers() {
    let admitter = Admitter::new(
        EngineCache::from_engines([seed_engine()], "default"),
        EngineCache::from_engines([], "default"),
        "cluster.local",
    );
    let seed = pod_review(
        "uid-seed",
        "default",
        template_pod_json(&fixture("seed/deployment.yaml")),
    );
    insta::assert_json_snapshot!("seed_injected", answer(&admitter, &seed));
    let missing = pod_review("uid-missing", "team-x", pod("p", "my-cacheblend"));
    insta::assert_json_snapshot!("engine_not_found", answer(&admitter, &missing));
    let mut dry_run = pod_review("uid-dry", "default", pod("p", "my-cacheblend"));
    dry_run["request"]["dryRun"] = json!(true);
    let verdict = admitter.review(Webhook::CacheBlend, &serde_json::to_vec(&dry_run).unwrap());
    assert!(verdict.dry_run);
    assert_eq!(verdict.outcome, "injected");
    // Not an AdmissionReview at all (no uid to answer): HTTP 400.
    let verdict = admitter.review(Webhook::CacheBlend, br#"{"kind": "AdmissionReview"}"#);
    assert_eq!(verdict.status, http::StatusCode::BAD_REQUEST);
    assert_eq!(verdict.outcome, "invalid");
    assert!(
        String::from_utf8(verdict.body())
            .unwrap()
            .contains("expected apiVersion")
    );
}

/// lifecycle.md §5: every review whose uid can be read is allowed, whatever else is wrong.
#[test]
fn every_review_with_a_readable_uid_is_allowed() {
    let admitter = Admitter::new(
        EngineCache::from_engines([seed_engine()], "default"),
        EngineCache::from_engines([], "default"),
        "cluster.local",
    );
    let good = pod_review("uid-1", "default", pod("p", "my-cacheblend"));
    let mut cases = Vec::new();
    let mut wrong_version = good.clone();
    wrong_version["apiVersion"] = json!("admission.k8s.io/v1beta1");
    cases.push(("wrong apiVersion", wrong_version, "malformed"));
    let mut no_kind = good.clone();
    no_kind["request"]["kind"] = json!("Pod");
    cases.push(("kind is not a GVK", no_kind, "malformed"));
    let mut deployment = good.clone();
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    cases.push(("not a Pod", deployment, "malformed"));
    let mut broken = good.clone();
    broken["request"]["object"]["spec"]["containers"] = json!("vllm");
    cases.push(("undecodable pod", broken, "malformed"));
    let mut none = good.clone();
    none["request"].as_object_mut().unwrap().remove("object");
    cases.push(("no object", none, "malformed"));
    let mut no_operation = good.clone();
    no_operation["request"]
        .as_object_mut()
        .unwrap()
        .remove("operation");
    cases.push(("missing field", no_operation, "malformed"));
    let mut update = good.clone();
    update["request"]["operation"] = json!("UPDATE");
    cases.push(("an UPDATE", update, "ignored"));
    for webhook in Webhook::ALL {
        for (what, review, outcome) in &cases {
            let verdict = admitter.review(webhook, &serde_json::to_vec(review).unwrap());
            assert_eq!(verdict.status, http::StatusCode::OK, "{what}");
            assert_eq!(verdict.outcome, *outcome, "{what}");
            let answer: Value = serde_json::from_slice(&verdict.body()).unwrap();
            assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{what}");
            assert_eq!(answer["kind"], "AdmissionReview", "{what}");
            assert_eq!(answer["response"]["uid"], "uid-1", "{what}");
            assert_eq!(answer["response"]["allowed"], true, "{what}");
            assert!(answer["response"].get("patch").is_none(), "{what}");
        }
    }
}

#[test]
fn tenants_see_only_their_namespace() {
    let cache = EngineCache::from_engines(
        [
            engine("cb", "team-a", "reg/a:1", 5555),
            engine("cb", "team-b", "reg/b:2", 6555),
        ],
        "default",
    );
    let admitter = Admitter::new(cache, EngineCache::from_engines([], "default"), "cluster.local");
    for (ns, annotation, outcome, reason, image, host) in [
        (
            "team-a",
            "cb",
            "injected",
            "",
            "reg/a:1",
            "tcp://cb.team-a.svc.cluster.local",
        ),
        (
            "team-b",
            "cb",
            "injected",
            "",
            "reg/b:2",
            "tcp://cb.team-b.svc.cluster.local",
        ),
        ("team-c", "cb", "skipped", "engine-not-found", "", ""),
        ("team-b", "team-a/cb", "skipped", "engine-not-found", "", ""),
    ] {
        // Same pod name in every namespace (MTT-4).
        let review = pod_review(&format!("uid-{ns}"), ns, pod("vllm-0", annotation));
        let verdict = admitter.review(Webhook::CacheBlend, &serde_json::to_vec(&review).unwrap());
        assert_eq!(
            (verdict.outcome, verdict.reason),
            (outcome, reason),
            "{ns} {annotation}"
        );
        assert_eq!(verdict.namespace, ns);
        assert_eq!(verdict.pod, "vllm-0");
        let patch = String::from_utf8(verdict.response.patch.clone().unwrap()).unwrap();
        assert!(patch.contains(image) && patch.contains(host), "{patch}");
        if outcome == "injected" {
            let other = if ns == "team-a" { "reg/b:2" } else { "reg/a:1" };
            assert!(!patch.contains(other));
        }
    }
}

/// xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn mutated_reviews_never_panic_and_always_answer() {
    let admitter = Admitter::new(
        EngineCache::from_engines([seed_engine()], "default"),
        EngineCache::from_engines([], "default"),
        "cluster.local",
    );
    let seed = serde_json::to_vec(&pod_review(
        "uid",
        "default",
        template_pod_json(&fixture("seed/deployment.yaml")),
    ))
    .unwrap();
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    let interesting: &[u8] = b"{}[]\",:0-e.truln\\";
    for case in 0..3000 {
        let mut body = seed.clone();
        for _ in 0..=(rng.next() % 8) {
            let at = (rng.next() as usize) % body.len().max(1);
            match rng.next() % 4 {
                0 => body[at] = interesting[(rng.next() as usize) % interesting.len()],
                1 => body[at] = rng.next() as u8,
                2 => {
                    body.remove(at);
                }
                _ => body.truncate(at),
            }
            if body.is_empty() {
                break;
            }
        }
        let verdict = admitter.review(Webhook::CacheBlend, &body);
        // Never denied: an answer to a readable uid allows; anything else is a plain 400.
        if verdict.status == http::StatusCode::OK {
            let review: Value = serde_json::from_slice(&verdict.body()).unwrap();
            assert_eq!(review["kind"], "AdmissionReview", "case {case}");
            assert_eq!(review["response"]["allowed"], true, "case {case}");
        } else {
            assert_eq!(verdict.status, http::StatusCode::BAD_REQUEST, "case {case}");
            assert_eq!(
                lmcache_webhook::admission::readable_uid(&body),
                None,
                "case {case}"
            );
        }
    }
}
