//! Acceptance through the built binary: `lmcache-webhook inject` on the §13 seed Deployment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use std::io::Write;
use std::process::{Command, Stdio};
use support::*;

fn run_inject(input: &str, extra: &[&str]) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lmcache-webhook"))
        .args(["inject", "--engine"])
        .arg(fixture_path("seed/engine.yaml"))
        .args(["-f", "-"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

fn template(deployment_yaml: &str) -> Pod {
    let deployment: Deployment = serde_saphyr::from_str(deployment_yaml).unwrap();
    let template = deployment.spec.unwrap().template;
    Pod {
        metadata: template.metadata.unwrap(),
        spec: template.spec,
        status: None,
    }
}

#[test]
fn seed_deployment_gets_exactly_the_seed_injection() {
    let (stdout, stderr) = run_inject(&fixture("seed/deployment.yaml"), &[]);
    assert_eq!(
        stderr.trim(),
        "Deployment default/vllm-cacheblend: cacheblend: injected (engine my-cacheblend)"
    );
    let want: Pod = serde_saphyr::from_str(&fixture("seed/expected-pod.yaml")).unwrap();
    assert_eq!(template(&stdout), want, "\n{stdout}");
    // Everything outside the template is unchanged.
    let before: Deployment = serde_saphyr::from_str(&fixture("seed/deployment.yaml")).unwrap();
    let after: Deployment = serde_saphyr::from_str(&stdout).unwrap();
    assert_eq!(after.metadata, before.metadata);
    assert_eq!(
        after.spec.as_ref().unwrap().selector,
        before.spec.as_ref().unwrap().selector
    );
}

#[test]
fn shell_wrapped_deployment_gets_only_command_override() {
    let input = fixture("seed/deployment-sh-c.yaml");
    let (stdout, stderr) = run_inject(&input, &[]);
    assert_eq!(
        stderr.trim(),
        "Deployment default/vllm-cacheblend: cacheblend: skipped: command-override (engine my-cacheblend)"
    );
    let mut want = template(&input);
    want.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(
            "lmcache.ai/cacheblend-skip-reason".into(),
            "command-override".into(),
        );
    assert_eq!(template(&stdout), want);
}

#[test]
fn other_namespace_and_file_input() {
    // The engine lives in `default`; the same Deployment admitted in team-b does not see it.
    let input = fixture("seed/deployment.yaml").replace("namespace: default", "namespace: team-b");
    let (_, stderr) = run_inject(&input, &[]);
    assert!(stderr.contains("skipped: engine-not-found"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_lmcache-webhook"))
        .args(["inject", "--engine"])
        .arg(fixture_path("seed/engine.yaml"))
        .arg("-f")
        .arg(fixture_path("seed/deployment.yaml"))
        .args(["--cluster-domain", "corp.example"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("tcp://my-cacheblend.default.svc.corp.example"),
        "{stdout}"
    );

    let missing = Command::new(env!("CARGO_BIN_EXE_lmcache-webhook"))
        .args(["inject", "--engine", "/nonexistent/engines.yaml", "-f", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/engines.yaml"));
}
