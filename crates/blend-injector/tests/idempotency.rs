//! Property-style: for many generated pods and engines, a second admission of the admitted pod
//! changes nothing (empty patch), and every patch turns the submitted pod into the result.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use k8s_openapi::api::core::v1::Pod;
use lmcache_blend_injector::{Outcome, patch};
use serde_json::{Value, json};
use support::*;

/// xorshift64*: deterministic, so a failure names a reproducible case number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const ARG_POOL: &[&str] = &[
    "model",
    "--port",
    "8000",
    "--block-size",
    "16",
    "--block_size=8",
    "--pipeline-parallel-size=4",
    "--attention-backend",
    "FLASH_ATTN",
    "--enforce-eager",
    "--no_async_scheduling",
    "--no-enable-chunked-prefill",
    "--compilation-config",
    "{}",
    "--kv-transfer-config",
    "--attention_backend=X",
];

fn gen_container(rng: &mut Rng, name: &str) -> Value {
    let mut c = json!({"name": name, "image": "vllm/vllm-openai"});
    if rng.chance(80) {
        let n = rng.below(7);
        let args: Vec<&str> = (0..n).map(|_| *rng.pick(ARG_POOL)).collect();
        c["args"] = json!(args);
    }
    if rng.chance(10) {
        c["command"] = if rng.chance(50) {
            json!([])
        } else {
            json!(["/bin/sh", "-c", "vllm serve m"])
        };
    }
    if rng.chance(50) {
        let envs = [
            json!([{"name": "PYTHONPATH", "value": "/app"}]),
            json!([{"name": "PYTHONPATH", "value": ""}]),
            json!([{"name": "PYTHONPATH", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
            json!([{"name": "A", "value": "1"}, {"name": "PYTHONPATH"}, {"name": "PYTHONPATH", "value": "/x"}]),
            json!([{"name": "HF_HOME", "value": "/cache"}]),
        ];
        c["env"] = rng.pick(&envs).clone();
    }
    if rng.chance(30) {
        c["volumeMounts"] = json!([{"name": rng.pick(&["cb-plugin", "data"]), "mountPath": "/m"}]);
    }
    c
}

fn gen_pod(rng: &mut Rng) -> Pod {
    let names = ["vllm", "proxy", "main"];
    let count = rng.below(3) + usize::from(rng.chance(95));
    let containers: Vec<Value> = (0..count).map(|i| gen_container(rng, names[i])).collect();
    let mut pod = pod_with(json!(containers));
    if rng.chance(20) {
        let target = *rng.pick::<&str>(&["vllm", "proxy", "sidecar", " "]);
        pod = annotate(pod, "lmcache.ai/cacheblend-container", target);
    }
    if rng.chance(10) {
        pod = annotate(pod, "lmcache.ai/cacheblend-skip-reason", "engine-not-found");
    }
    if rng.chance(5) {
        pod = annotate(pod, "lmcache.ai/cacheblend-engine", "missing");
    }
    let spec = pod.spec.as_mut().unwrap();
    if rng.chance(30) {
        spec.image_pull_secrets = Some(serde_json::from_value(json!([{"name": "a"}])).unwrap());
    }
    if rng.chance(20) {
        spec.host_ipc = Some(rng.chance(50));
    }
    if rng.chance(20) {
        spec.volumes = Some(
            serde_json::from_value(json!([{"name": rng.pick(&["cb-plugin", "data"]), "emptyDir": {}}]))
                .unwrap(),
        );
    }
    if rng.chance(20) {
        spec.init_containers = Some(
            serde_json::from_value(json!([{"name": rng.pick(&["cb-plugin-stage", "dl"]), "image": "i"}]))
                .unwrap(),
        );
    }
    pod
}

fn gen_engine(rng: &mut Rng) -> Option<lmcache_api::v1alpha1::CacheBlendEngine> {
    if rng.chance(10) {
        return None;
    }
    let mut injection = json!({
        "cudagraph": rng.pick(&["eager", "piecewise", "full_decode_only"]),
    });
    if rng.chance(90) {
        injection["payloadImage"] = json!({"repository": "reg/plugin", "tag": "v1"});
    }
    if rng.chance(40) {
        injection["imagePullSecrets"] = json!([{"name": "b"}, {"name": "a"}, {"name": "b"}]);
    }
    if rng.chance(20) {
        injection["targetContainer"] = json!(rng.pick(&["vllm", "proxy"]));
    }
    Some(engine(
        "my-cacheblend",
        "default",
        json!({"injection": injection, "blend": {"recompRatio": rng.pick(&[0.15, 1.0, 0.3333333333333333])}}),
    ))
}

#[test]
fn readmission_of_an_admitted_pod_is_a_no_op() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut injected_count, mut skipped_count) = (0, 0);
    for case in 0..2000 {
        let pod = gen_pod(&mut rng);
        let engine = gen_engine(&mut rng);
        let first = run(&pod, engine.as_ref());
        let Some(admitted) = first.mutated_pod() else {
            panic!("case {case}: an opted-in, bound pod is always injected or skipped: {first:?}");
        };
        assert_patch_round_trips(&pod, admitted);
        let second = run(admitted, engine.as_ref());
        match (&first, &second) {
            (Outcome::Injected(_), Outcome::AlreadyInjected) => injected_count += 1,
            (
                Outcome::Skipped { reason: a, .. },
                Outcome::Skipped {
                    reason: b,
                    pod: again,
                },
            ) => {
                assert_eq!(a, b, "case {case}");
                assert!(
                    patch(admitted, again).0.is_empty(),
                    "case {case}: {:?}",
                    patch(admitted, again)
                );
                skipped_count += 1;
            }
            _ => panic!("case {case}: {first:?} then {second:?}"),
        }
        // The webhook answers AlreadyInjected with no patch at all.
        if matches!(second, Outcome::AlreadyInjected) {
            assert!(patch(admitted, admitted).0.is_empty());
        }
    }
    // The generator must exercise both paths substantially.
    assert!(
        injected_count > 500 && skipped_count > 300,
        "{injected_count} injected, {skipped_count} skipped"
    );
}
