//! behaviours.md §F (81–100) and multitenancy MTT-4..6 at the level of the pure injector.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use k8s_openapi::api::core::v1::Pod;
use lmcache_blend_injector::{Outcome, SkipReason, Webhook, decode_engine, patch, requested_engine};
use lmcache_manifest_renderer::{RenderContext, blend_kv_transfer_config, render_blend_engine};
use serde_json::json;
use support::*;

const KV_SEED: &str = "{\n  \"kv_connector\": \"CBKVConnector\",\n  \"kv_role\": \"kv_both\",\n  \"kv_connector_extra_config\": {\n    \"lmcache.mp.host\": \"tcp://my-cacheblend.default.svc.cluster.local\",\n    \"lmcache.mp.port\": \"5555\",\n    \"cb.check_layer\": 1,\n    \"cb.recomp_ratio\": 0.15\n  },\n  \"kv_connector_module_path\": \"lmcache_cacheblend.connector\"\n}";

fn seed_engine() -> lmcache_api::v1alpha1::CacheBlendEngine {
    let value: serde_json::Value = serde_saphyr::from_str(&fixture("seed/engine.yaml")).unwrap();
    decode_engine(value).unwrap()
}

#[test]
fn b81_seed_deployment_becomes_the_resulting_pod() {
    let pod = template_pod(&fixture("seed/deployment.yaml"));
    let want: Pod = serde_saphyr::from_str(&fixture("seed/expected-pod.yaml")).unwrap();
    let got = injected(&pod, &seed_engine());
    assert_eq!(got, want, "\n{}", serde_saphyr::to_string(&got).unwrap());
    assert_patch_round_trips(&pod, &got);
    insta::assert_yaml_snapshot!("seed_pod_patch", patch(&pod, &got));
}

#[test]
fn b82_flags_appended_in_order() {
    let got = injected(&template_pod(&fixture("seed/deployment.yaml")), &seed_engine());
    assert_eq!(
        args(&got, "vllm"),
        [
            "<your-model>",
            "--port",
            "8000",
            "--gpu-memory-utilization",
            "0.8",
            "--attention-backend",
            "CUSTOM",
            "--kv-transfer-config",
            KV_SEED,
            "--block-size",
            "64",
            "--pipeline-parallel-size",
            "1",
            "--no-enable-chunked-prefill",
            "--no-async-scheduling",
            "--enforce-eager"
        ]
    );
}

#[test]
fn b83_injected_value_equals_the_connection_json() {
    let cases = [
        ("my-cacheblend", "default", 5555, 1, 0.15),
        ("cb", "team-a", 5555, 1, 1.0),
        ("cb", "team-b", 6555, 3, 0.3333333333333333),
        ("blend-x", "prod-eu-1", 7000, 0, 0.5),
    ];
    for (name, namespace, port, check_layer, ratio) in cases {
        let engine = engine(
            name,
            namespace,
            json!({"server": {"port": port}, "blend": {"checkLayer": check_layer, "recompRatio": ratio}}),
        );
        let pod = annotate(pod_with_args(&["m"]), "lmcache.ai/cacheblend-engine", name);
        for domain in ["cluster.local", "corp.example"] {
            let Outcome::Injected(got) =
                lmcache_blend_injector::inject(&pod, namespace, Some(&engine), domain)
            else {
                panic!("not injected")
            };
            let args = args(&got, "vllm");
            let at = args.iter().position(|a| *a == "--kv-transfer-config").unwrap();
            let want = blend_kv_transfer_config(&engine.spec, name, namespace, domain);
            assert_eq!(args[at + 1], want);
            // The operator's ConfigMap, rendered from the same engine and domain.
            let children = render_blend_engine(&engine, &RenderContext::new(domain)).unwrap();
            let data = children.config_map.data.unwrap();
            assert_eq!(
                args[at + 1],
                data["kv-transfer-config.json"],
                "{namespace}/{name} {domain}"
            );
            assert!(want.contains(&format!("tcp://{name}.{namespace}.svc.{domain}")));
            assert!(want.contains(&format!("\"lmcache.mp.port\": \"{port}\"")));
        }
    }
}

#[test]
fn b84_j6_cudagraph_modes() {
    let pod = pod_with_args(&["m"]);
    // J6: vLLM 0.33 defaults to FULL_AND_PIECEWISE, so piecewise is asked for explicitly.
    let piecewise = engine(
        "my-cacheblend",
        "default",
        json!({"injection": {"cudagraph": "piecewise"}}),
    );
    let got = injected(&pod, &piecewise);
    let a = args(&got, "vllm");
    assert!(!a.contains(&"--enforce-eager"), "{a:?}");
    assert_eq!(
        a[a.len() - 2..],
        ["--compilation-config", r#"{"cudagraph_mode":"PIECEWISE"}"#]
    );

    let fdo = engine(
        "my-cacheblend",
        "default",
        json!({"injection": {"cudagraph": "full_decode_only"}}),
    );
    let got = injected(&pod, &fdo);
    let a = args(&got, "vllm");
    assert!(!a.contains(&"--enforce-eager"));
    assert_eq!(
        a[a.len() - 2..],
        ["--compilation-config", r#"{"cudagraph_mode":"FULL_DECODE_ONLY"}"#]
    );

    // A user --compilation-config is updated in place, a user --enforce-eager kept.
    let user = pod_with_args(&["--compilation-config={}", "--enforce-eager"]);
    let a_pod = injected(&user, &fdo);
    let a = args(&a_pod, "vllm");
    assert_eq!(
        a[0],
        r#"--compilation-config={"cudagraph_mode":"FULL_DECODE_ONLY"}"#
    );
    assert_eq!(a[1], "--enforce-eager");
    assert_eq!(
        a.iter().filter(|t| t.starts_with("--compilation-config")).count(),
        1
    );

    // An engine stored with `full` (or anything unknown) is treated as eager.
    let mut stored = serde_json::to_value(engine("my-cacheblend", "default", json!({}))).unwrap();
    stored["spec"]["injection"]["cudagraph"] = json!("full");
    let full = decode_engine(stored).unwrap();
    assert_eq!(
        args(&injected(&pod, &full), "vllm").last(),
        Some(&"--enforce-eager")
    );
}

#[test]
fn j7_aliases_and_the_users_compilation_config() {
    let fdo = engine(
        "my-cacheblend",
        "default",
        json!({"injection": {"cudagraph": "full_decode_only"}}),
    );
    let pod = pod_with_args(&[
        "m",
        "-pp",
        "2",
        "-cc",
        r#"{"cudagraph_capture_sizes":[1,2,4]}"#,
        "--enable-chunked-prefill",
    ]);
    let got = injected(&pod, &fdo);
    let a = args(&got, "vllm");
    assert_eq!(
        a[..6],
        [
            "m",
            "-pp",
            "1",
            "-cc",
            r#"{"cudagraph_capture_sizes":[1,2,4],"cudagraph_mode":"FULL_DECODE_ONLY"}"#,
            "--no-enable-chunked-prefill",
        ]
    );
    // Neither the long spelling of a replaced alias nor a second chunked-prefill flag is added.
    for flag in [
        "--pipeline-parallel-size",
        "--compilation-config",
        "--enable-chunked-prefill",
    ] {
        assert!(!a.contains(&flag), "{flag} in {a:?}");
    }
    assert_eq!(
        a.iter().filter(|t| **t == "--no-enable-chunked-prefill").count(),
        1
    );

    // A user who already disabled chunked prefill with the current spelling keeps it.
    let pod = pod_with_args(&["m", "--disable-chunked-prefill"]);
    let a_pod = injected(&pod, &fdo);
    let a = args(&a_pod, "vllm");
    assert!(a.contains(&"--disable-chunked-prefill"));
    assert!(!a.contains(&"--no-enable-chunked-prefill"));
}

#[test]
fn b85_user_values_replaced_in_place() {
    let pod = pod_with_args(&[
        "m",
        "--block-size",
        "16",
        "--pipeline-parallel-size=4",
        "--attention-backend",
        "FLASH_ATTN",
    ]);
    let got = injected(&pod, &default_engine());
    let a = args(&got, "vllm");
    assert_eq!(
        a[..6],
        [
            "m",
            "--block-size",
            "64",
            "--pipeline-parallel-size=1",
            "--attention-backend",
            "CUSTOM"
        ]
    );
    assert_eq!(a.iter().filter(|t| t.contains("block-size")).count(), 1);
    assert_eq!(
        a.iter().filter(|t| t.contains("pipeline-parallel-size")).count(),
        1
    );
    assert_eq!(a.iter().filter(|t| t.contains("attention-backend")).count(), 1);
    assert_eq!(a[6], "--kv-transfer-config");
}

#[test]
fn b86_bare_flags_never_duplicated() {
    let pod = pod_with_args(&[
        "--enforce-eager",
        "--no-async-scheduling",
        "--no_enable_chunked_prefill",
    ]);
    let got = injected(&pod, &default_engine());
    let a = args(&got, "vllm");
    for flag in ["--enforce-eager", "--no-async-scheduling"] {
        assert_eq!(a.iter().filter(|t| **t == flag).count(), 1, "{flag}");
    }
    assert!(!a.contains(&"--no-enable-chunked-prefill"));
    assert_eq!(
        a[..3],
        [
            "--enforce-eager",
            "--no-async-scheduling",
            "--no_enable_chunked_prefill"
        ]
    );
}

#[test]
fn b87_every_match_is_set() {
    let pod = pod_with_args(&["--block-size", "16", "m", "--block-size", "32", "--block_size=8"]);
    let a_pod = injected(&pod, &default_engine());
    let a = args(&a_pod, "vllm");
    assert_eq!(
        a[..6],
        ["--block-size", "64", "m", "--block-size", "64", "--block-size=64"]
    );
}

#[test]
fn b88_shell_wrapper_gets_only_command_override() {
    let pod = template_pod(&fixture("seed/deployment-sh-c.yaml"));
    assert_skipped_only(&pod, &run(&pod, Some(&seed_engine())), "command-override");
    // An empty command is no override.
    let mut empty = pod_with_args(&["m"]);
    empty.spec.as_mut().unwrap().containers[0].command = Some(vec![]);
    assert!(matches!(
        run(&empty, Some(&default_engine())),
        Outcome::Injected(_)
    ));
}

#[test]
fn b89_existing_kv_transfer_config_skips_the_pod() {
    for args in [
        &["m", "--kv-transfer-config", "{\"kv_connector\":\"X\"}"][..],
        &["m", "--kv-transfer-config={\"kv_connector\":\"X\"}"],
        &["--kv_transfer_config", "{}"],
        &["--kv_transfer_config={}"],
        &["--kv-transfer-config"],
    ] {
        let pod = pod_with_args(args);
        assert_skipped_only(
            &pod,
            &run(&pod, Some(&default_engine())),
            "kv-transfer-config-present",
        );
    }
}

#[test]
fn b90_engine_not_found() {
    let pod = pod_with_args(&["m"]);
    assert_skipped_only(&pod, &run(&pod, None), "engine-not-found");
    // Defensive: an engine with another name or namespace, or being deleted, is not a match.
    let other_name = engine("other", "default", json!({}));
    assert_skipped_only(&pod, &run(&pod, Some(&other_name)), "engine-not-found");
    let other_ns = engine("my-cacheblend", "team-b", json!({}));
    assert_skipped_only(&pod, &run(&pod, Some(&other_ns)), "engine-not-found");
    let mut deleting = default_engine();
    deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-01-01T00:00:00Z".parse().unwrap(),
    ));
    assert_skipped_only(&pod, &run(&pod, Some(&deleting)), "engine-not-found");
    // A slash never names an engine in another namespace (MTT-6).
    let cross = annotate(pod_with_args(&["m"]), "lmcache.ai/cacheblend-engine", "team-a/cb");
    assert_eq!(requested_engine(&cross, Webhook::CacheBlend), Some("team-a/cb"));
    let team_a_cb = engine("cb", "team-a", json!({}));
    let outcome = lmcache_blend_injector::inject(&cross, "team-b", Some(&team_a_cb), DOMAIN);
    assert_skipped_only(&cross, &outcome, "engine-not-found");
}

#[test]
fn b91_payload_image_unset() {
    let pod = pod_with_args(&["m"]);
    for spec in [
        json!({"injection": null}),
        json!({"injection": {"payloadImage": null}}),
        json!({"injection": {"payloadImage": {"repository": null}}}),
        json!({"injection": {"payloadImage": {"repository": "   "}}}),
    ] {
        let engine = engine("my-cacheblend", "default", spec.clone());
        assert_skipped_only(&pod, &run(&pod, Some(&engine)), "payload-image-unset");
    }
}

#[test]
fn b92_target_container_not_found() {
    let annotated = annotate(
        pod_with_args(&["m"]),
        "lmcache.ai/cacheblend-container",
        "sidecar",
    );
    assert_skipped_only(
        &annotated,
        &run(&annotated, Some(&default_engine())),
        "target-container-not-found",
    );

    let main_only = pod_with(json!([{"name": "main", "image": "x"}]));
    let engine = engine(
        "my-cacheblend",
        "default",
        json!({"injection": {"targetContainer": "vllm"}}),
    );
    assert_skipped_only(
        &main_only,
        &run(&main_only, Some(&engine)),
        "target-container-not-found",
    );

    let none = pod_with(json!([]));
    assert_skipped_only(
        &none,
        &run(&none, Some(&default_engine())),
        "target-container-not-found",
    );

    // Init containers are not considered.
    let mut init_only = annotate(pod_with_args(&["m"]), "lmcache.ai/cacheblend-container", "setup");
    init_only.spec.as_mut().unwrap().init_containers = Some(vec![
        serde_json::from_value(json!({"name": "setup", "image": "x"})).unwrap(),
    ]);
    assert_skipped_only(
        &init_only,
        &run(&init_only, Some(&default_engine())),
        "target-container-not-found",
    );
}

#[test]
fn b93_target_container_selection() {
    let two = pod_with(json!([
        {"name": "proxy", "image": "envoy", "args": ["--config", "x"]},
        {"name": "vllm", "image": "vllm", "args": ["m"]}
    ]));
    let by_annotation = annotate(two.clone(), "lmcache.ai/cacheblend-container", " vllm ");
    let by_engine = engine(
        "my-cacheblend",
        "default",
        json!({"injection": {"targetContainer": "vllm"}}),
    );
    for (pod, engine) in [(&by_annotation, default_engine()), (&two, by_engine)] {
        let got = injected(pod, &engine);
        assert_eq!(container(&got, "proxy"), container(&two, "proxy"));
        let vllm = container(&got, "vllm");
        assert!(
            vllm.args
                .as_ref()
                .unwrap()
                .contains(&"--attention-backend".to_string())
        );
        assert_eq!(vllm.env.as_ref().unwrap()[0].name, "PYTHONPATH");
        assert_eq!(vllm.volume_mounts.as_ref().unwrap()[0].name, "cb-plugin");
    }
    // The annotation wins over the engine.
    let engine_says_proxy = engine(
        "my-cacheblend",
        "default",
        json!({"injection": {"targetContainer": "proxy"}}),
    );
    let got = injected(&by_annotation, &engine_says_proxy);
    assert_eq!(container(&got, "proxy"), container(&two, "proxy"));
    // Neither: the first container.
    let got = injected(&two, &default_engine());
    assert_eq!(container(&got, "vllm"), container(&two, "vllm"));
    assert!(args(&got, "proxy").contains(&"--enforce-eager"));
}

#[test]
fn b94_first_applicable_reason_wins() {
    // Every condition at once, then remove them one by one.
    let bad_engine = engine(
        "my-cacheblend",
        "default",
        json!({"injection": {"payloadImage": null}}),
    );
    let good_engine = default_engine();
    let mut pod = annotate(
        pod_with(
            json!([{"name": "vllm", "image": "v", "command": ["sh"], "args": ["--kv-transfer-config={}"]}]),
        ),
        "lmcache.ai/cacheblend-container",
        "missing",
    );
    assert_skipped_only(&pod, &run(&pod, None), "engine-not-found");
    assert_skipped_only(&pod, &run(&pod, Some(&bad_engine)), "payload-image-unset");
    assert_skipped_only(&pod, &run(&pod, Some(&good_engine)), "target-container-not-found");
    pod.metadata
        .annotations
        .as_mut()
        .unwrap()
        .remove("lmcache.ai/cacheblend-container");
    assert_skipped_only(&pod, &run(&pod, Some(&good_engine)), "command-override");
    pod.spec.as_mut().unwrap().containers[0].command = None;
    assert_skipped_only(&pod, &run(&pod, Some(&good_engine)), "kv-transfer-config-present");
    pod.spec.as_mut().unwrap().containers[0].args = None;
    assert!(matches!(run(&pod, Some(&good_engine)), Outcome::Injected(_)));
    let reasons: Vec<_> = SkipReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(reasons[0], "engine-not-found");
}

#[test]
fn b95_already_injected_is_unchanged() {
    let first = injected(&pod_with_args(&["m"]), &default_engine());
    assert_eq!(run(&first, Some(&default_engine())), Outcome::AlreadyInjected);
    let marked = annotate(pod_with_args(&["m"]), "lmcache.ai/cacheblend-injected", " true ");
    assert_eq!(run(&marked, Some(&default_engine())), Outcome::AlreadyInjected);
    // Only exactly "true" counts.
    let other = annotate(pod_with_args(&["m"]), "lmcache.ai/cacheblend-injected", "yes");
    assert!(matches!(
        run(&other, Some(&default_engine())),
        Outcome::Injected(_)
    ));
}

#[test]
fn b96_missing_or_blank_engine_annotation_is_not_opted_in() {
    let mut pod = pod_with_args(&["m"]);
    pod.metadata.annotations = None;
    assert_eq!(run(&pod, Some(&default_engine())), Outcome::NotOptedIn);
    let blank = annotate(pod_with_args(&["m"]), "lmcache.ai/cacheblend-engine", "  ");
    assert_eq!(requested_engine(&blank, Webhook::CacheBlend), None);
    assert_eq!(run(&blank, Some(&default_engine())), Outcome::NotOptedIn);
    assert_eq!(Outcome::NotOptedIn.mutated_pod(), None);
}

#[test]
fn b97_without_the_label_nothing_happens() {
    for label in [None, Some("True"), Some("yes"), Some("")] {
        let mut pod = pod_with_args(&["m"]);
        let labels = pod.metadata.labels.as_mut().unwrap();
        match label {
            None => labels.remove("lmcache.ai/cacheblend-inject"),
            Some(v) => labels.insert("lmcache.ai/cacheblend-inject".into(), v.into()),
        };
        assert_eq!(
            run(&pod, Some(&default_engine())),
            Outcome::NotOptedIn,
            "{label:?}"
        );
    }
}

#[test]
fn b98_python_path_rules() {
    let cases = [
        (json!([]), json!([{"name": "PYTHONPATH", "value": "/cb-plugin"}])),
        (
            json!([{"name": "A", "value": "1"}, {"name": "PYTHONPATH", "value": "/app"}]),
            json!([{"name": "A", "value": "1"}, {"name": "PYTHONPATH", "value": "/cb-plugin:/app"}]),
        ),
        (
            json!([{"name": "PYTHONPATH", "value": ""}]),
            json!([{"name": "PYTHONPATH", "value": "/cb-plugin"}]),
        ),
        (
            json!([{"name": "PYTHONPATH"}]),
            json!([{"name": "PYTHONPATH", "value": "/cb-plugin"}]),
        ),
        (
            json!([{"name": "PYTHONPATH", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]),
            json!([{"name": "PYTHONPATH", "value": "/cb-plugin"}]),
        ),
        // The last of several entries is the one that counts.
        (
            json!([{"name": "PYTHONPATH", "value": "/a"}, {"name": "PYTHONPATH", "value": "/b"}]),
            json!([{"name": "PYTHONPATH", "value": "/a"}, {"name": "PYTHONPATH", "value": "/cb-plugin:/b"}]),
        ),
    ];
    for (env, want) in cases {
        let pod = pod_with(json!([{"name": "vllm", "image": "v", "env": env}]));
        let got = injected(&pod, &default_engine());
        assert_eq!(
            serde_json::to_value(&container(&got, "vllm").env).unwrap(),
            want,
            "{env}"
        );
        assert_patch_round_trips(&pod, &got);
    }
}

#[test]
fn b99_pull_secrets_merged_without_duplicates() {
    let mut pod = pod_with_args(&["m"]);
    pod.spec.as_mut().unwrap().image_pull_secrets =
        Some(serde_json::from_value(json!([{"name": "a"}])).unwrap());
    let engine = engine(
        "my-cacheblend",
        "default",
        json!({"injection": {"imagePullSecrets": [{"name": "b"}, {"name": "a"}, {"name": "b"}, {"name": ""}]}}),
    );
    let got = injected(&pod, &engine);
    let secrets = serde_json::to_value(&got.spec.as_ref().unwrap().image_pull_secrets).unwrap();
    assert_eq!(secrets, json!([{"name": "a"}, {"name": "b"}]));

    // None listed: no list created.
    let got = injected(&pod_with_args(&["m"]), &default_engine());
    assert_eq!(got.spec.as_ref().unwrap().image_pull_secrets, None);
}

#[test]
fn b100_existing_plugin_objects_not_duplicated() {
    let mut pod = pod_with(json!([{
        "name": "vllm", "image": "v",
        "volumeMounts": [{"name": "cb-plugin", "mountPath": "/elsewhere"}]
    }]));
    let spec = pod.spec.as_mut().unwrap();
    spec.volumes =
        Some(serde_json::from_value(json!([{"name": "cb-plugin", "hostPath": {"path": "/p"}}])).unwrap());
    spec.init_containers =
        Some(serde_json::from_value(json!([{"name": "cb-plugin-stage", "image": "mine"}])).unwrap());
    let got = injected(&pod, &default_engine());
    let spec = got.spec.as_ref().unwrap();
    assert_eq!(spec.volumes, pod.spec.as_ref().unwrap().volumes);
    assert_eq!(spec.init_containers, pod.spec.as_ref().unwrap().init_containers);
    assert_eq!(
        container(&got, "vllm").volume_mounts,
        container(&pod, "vllm").volume_mounts
    );
    assert_eq!(spec.host_ipc, Some(true));
}

#[test]
fn injection_appends_after_existing_objects_and_overrides_host_ipc_false() {
    let mut pod = pod_with(
        json!([{"name": "vllm", "image": "v", "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]),
    );
    let spec = pod.spec.as_mut().unwrap();
    spec.host_ipc = Some(false);
    spec.volumes = Some(serde_json::from_value(json!([{"name": "data", "emptyDir": {}}])).unwrap());
    spec.init_containers = Some(serde_json::from_value(json!([{"name": "download", "image": "d"}])).unwrap());
    let got = injected(&pod, &default_engine());
    let spec = got.spec.as_ref().unwrap();
    assert_eq!(spec.host_ipc, Some(true));
    let names = |v: Vec<&str>| v.into_iter().map(String::from).collect::<Vec<_>>();
    assert_eq!(
        spec.volumes
            .as_ref()
            .unwrap()
            .iter()
            .map(|v| v.name.clone())
            .collect::<Vec<_>>(),
        names(vec!["data", "cb-plugin"])
    );
    assert_eq!(
        spec.init_containers
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>(),
        names(vec!["download", "cb-plugin-stage"])
    );
    let mounts = container(&got, "vllm").volume_mounts.as_ref().unwrap();
    assert_eq!(mounts[1].read_only, Some(true));
    assert_patch_round_trips(&pod, &got);
}

#[test]
fn stage_container_uses_the_payload_pull_policy() {
    let engine = engine(
        "my-cacheblend",
        "default",
        json!({"injection": {"payloadImage": {"repository": " reg/p ", "tag": "2", "pullPolicy": "Always"}}}),
    );
    let got = injected(&pod_with_args(&["m"]), &engine);
    let stage = &got.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0];
    assert_eq!(stage.image.as_deref(), Some("reg/p:2"));
    assert_eq!(stage.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(stage.command, None);
    assert_eq!(stage.args, None);
}

#[test]
fn injection_removes_a_stale_skip_reason() {
    let pod = annotate(
        pod_with_args(&["m"]),
        "lmcache.ai/cacheblend-skip-reason",
        "engine-not-found",
    );
    let got = injected(&pod, &default_engine());
    let annotations = got.metadata.annotations.as_ref().unwrap();
    assert!(!annotations.contains_key("lmcache.ai/cacheblend-skip-reason"));
    assert_eq!(annotations["lmcache.ai/cacheblend-injected"], "true");
    assert_patch_round_trips(&pod, &got);
}

#[test]
fn skip_creates_the_annotations_map() {
    let mut pod = pod_with_args(&["m"]);
    // Bound through the annotation, so it exists; build a pod whose only annotation is it and
    // check the skip adds exactly one key.
    pod.metadata.annotations = Some([("lmcache.ai/cacheblend-engine".to_string(), "x".to_string())].into());
    let outcome = run(&pod, None);
    assert_skipped_only(&pod, &outcome, "engine-not-found");
    assert_patch_round_trips(&pod, outcome.mutated_pod().unwrap());
}

#[test]
fn mtt4_same_pod_name_in_two_namespaces_gets_its_own_engine() {
    let a = engine(
        "cb",
        "team-a",
        json!({"injection": {"payloadImage": {"repository": "reg/a", "tag": "1"}}}),
    );
    let b = engine(
        "cb",
        "team-b",
        json!({"server": {"port": 6555}, "prometheus": {"port": 9091}, "injection": {"payloadImage": {"repository": "reg/b", "tag": "2"}}}),
    );
    let mut pod = annotate(pod_with_args(&["m"]), "lmcache.ai/cacheblend-engine", "cb");
    pod.metadata.name = Some("vllm-0".into());
    for (ns, engine, image, host, port) in [
        (
            "team-a",
            &a,
            "reg/a:1",
            "tcp://cb.team-a.svc.cluster.local",
            "\"5555\"",
        ),
        (
            "team-b",
            &b,
            "reg/b:2",
            "tcp://cb.team-b.svc.cluster.local",
            "\"6555\"",
        ),
    ] {
        let Outcome::Injected(got) = lmcache_blend_injector::inject(&pod, ns, Some(engine), DOMAIN) else {
            panic!("not injected in {ns}")
        };
        let stage = &got.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0];
        assert_eq!(stage.image.as_deref(), Some(image));
        let kv = args(&got, "vllm")[4];
        assert!(kv.contains(host) && kv.contains(port), "{kv}");
    }
}
