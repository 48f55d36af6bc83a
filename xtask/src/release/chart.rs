//! `cargo xtask chart`: the Helm chart `deploy/charts/lmcache-operator` is linted, rendered and
//! compared with the install files object by object, so the chart and install.yaml cannot drift.
//!
//! helm is built from the Go module proxy by `xtask/scripts/build-helm.sh` and cached by
//! version next to the control plane (`~/.cache/lmcache-operator/helm-<version>/`).
//!
//! Checks: `helm lint --strict` in every TLS mode; the default values render exactly
//! install.yaml's objects (without its Namespace: a chart installs into the release namespace)
//! and `webhook.tls.mode=cert-manager` exactly install-cert-manager.yaml's, up to Helm's own
//! labels and the CRDs' keep annotation; the values that have no install-file counterpart
//! (webhook off, no leader election, digests, scheduling, `files` TLS, replicas) change what
//! they claim and nothing else; settings that cannot work together fail the render.

use crate::cluster::{K8S_VERSION, cache_dir, run_build_script};
use crate::util::{root, yaml_documents};
use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const HELM_VERSION: &str = "v3.22.0";
/// The release namespace used for every comparison: install.yaml's.
const NAMESPACE: &str = "lmcache-operator-system";
/// Labels Helm charts add to object metadata that the install files do not carry.
const HELM_LABELS: [&str; 4] = [
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
    "helm.sh/chart",
];

/// The chart directory.
pub fn chart_dir() -> PathBuf {
    root().join("deploy/charts/lmcache-operator")
}

/// Builds helm when it is not cached and returns its path.
pub fn helm() -> anyhow::Result<PathBuf> {
    run_build_script(
        "build-helm.sh",
        &[("HELM_VERSION", HELM_VERSION), ("K8S_VERSION", K8S_VERSION)],
    )?;
    let helm = cache_dir().join(format!("helm-{HELM_VERSION}/helm"));
    ensure!(
        helm.exists(),
        "{} is missing after the build script",
        helm.display()
    );
    Ok(helm)
}

/// `helm template` of the chart with `--set` values; the objects rendered, or helm's error.
pub fn render(helm: &PathBuf, set: &[&str]) -> anyhow::Result<Result<Vec<Value>, String>> {
    let chart = chart_dir().display().to_string();
    let mut args = vec![
        "template",
        "lmcache-operator",
        chart.as_str(),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        K8S_VERSION,
    ];
    for s in set {
        args.extend(["--set", s]);
    }
    let out = Command::new(helm)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {}", helm.display()))?;
    if !out.status.success() {
        return Ok(Err(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    Ok(Ok(yaml_documents(&String::from_utf8(out.stdout)?)?))
}

fn render_ok(helm: &PathBuf, set: &[&str]) -> anyhow::Result<Vec<Value>> {
    render(helm, set)?.map_err(|e| anyhow::anyhow!("helm template --set {set:?} failed: {e}"))
}

/// `group/kind namespace/name` of an object.
fn key(doc: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    format!(
        "{} {} {}/{}",
        s(&doc["apiVersion"]),
        s(&doc["kind"]),
        s(&doc["metadata"]["namespace"]),
        s(&doc["metadata"]["name"])
    )
}

/// A rendered object without what only Helm adds.
fn without_helm_additions(mut doc: Value) -> Value {
    if let Some(labels) = doc["metadata"]["labels"].as_object_mut() {
        for label in HELM_LABELS {
            labels.remove(label);
        }
    }
    if let Some(annotations) = doc["metadata"]["annotations"].as_object_mut() {
        annotations.remove("helm.sh/resource-policy");
        if annotations.is_empty()
            && let Some(meta) = doc["metadata"].as_object_mut()
        {
            meta.remove("annotations");
        }
    }
    doc
}

/// Paths where two JSON values differ (at most a few, for a readable report).
fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if out.len() >= 8 || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                differences(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), p, q, out);
            }
        }
        _ => out.push(format!("{path}: install file {a} / chart {b}")),
    }
}

/// Compares the chart's objects with an install file's; every mismatch, or none.
fn compare(install: &[Value], chart: &[Value]) -> Vec<String> {
    let expected: BTreeMap<String, &Value> = install
        .iter()
        .filter(|d| d["kind"] != "Namespace")
        .map(|d| (key(d), d))
        .collect();
    let mut rendered: BTreeMap<String, Value> = BTreeMap::new();
    let mut problems = Vec::new();
    for doc in chart {
        let k = key(doc);
        if rendered
            .insert(k.clone(), without_helm_additions(doc.clone()))
            .is_some()
        {
            problems.push(format!("{k}: rendered twice"));
        }
    }
    for (k, want) in &expected {
        match rendered.get(k) {
            None => problems.push(format!("{k}: in the install file, not in the chart")),
            Some(got) => {
                let mut diffs = Vec::new();
                differences("", want, got, &mut diffs);
                problems.extend(diffs.into_iter().map(|d| format!("{k}: {d}")));
            }
        }
    }
    for k in rendered.keys() {
        if !expected.contains_key(k) {
            problems.push(format!("{k}: in the chart, not in the install file"));
        }
    }
    problems
}

fn install_file(name: &str) -> anyhow::Result<Vec<Value>> {
    let path = root().join("deploy").join(name);
    yaml_documents(&std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?)
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> anyhow::Result<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .with_context(|| format!("{kind}/{name} not rendered"))
}

fn container<'a>(docs: &'a [Value], deployment: &str) -> anyhow::Result<&'a Value> {
    Ok(&find(docs, "Deployment", deployment)?["spec"]["template"]["spec"]["containers"][0])
}

fn has_arg(container: &Value, arg: &str) -> bool {
    container["args"]
        .as_array()
        .is_some_and(|args| args.iter().any(|a| a == arg))
}

const FILES_TLS: [&str; 3] = [
    "webhook.tls.mode=files",
    "webhook.tls.secretName=my-webhook-cert",
    "webhook.tls.caBundle=Q0E=",
];

/// Values without an install-file counterpart do what values.yaml says.
fn check_values(helm: &PathBuf) -> anyhow::Result<()> {
    let base = render_ok(helm, &[])?;
    check_webhook_off(helm, &base)?;
    check_without_leader_election(helm)?;
    check_images_log_level_and_replicas(helm)?;
    check_scheduling(helm)?;
    check_files_tls(helm)?;
    check_crds(helm, &base)
}

/// `webhook.enabled=false` removes the webhook and only what belongs to it.
fn check_webhook_off(helm: &PathBuf, base: &[Value]) -> anyhow::Result<()> {
    let off = render_ok(helm, &["webhook.enabled=false"])?;
    ensure!(
        off.iter()
            .all(|d| d["metadata"]["labels"]["app.kubernetes.io/component"] != "webhook"),
        "webhook.enabled=false still renders webhook objects"
    );
    // Its 9 objects, and the controller's Role (+ binding) for reading the webhook's
    // readiness, with the flag that names its Service.
    ensure!(
        off.len() == base.len() - 11
            && find(&off, "Role", "lmcache-operator-webhook-readiness").is_err()
            && !container(&off, "lmcache-operator-controller")?["args"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a.as_str().is_some_and(|a| a.starts_with("--webhook-service="))),
        "webhook.enabled=false removed other objects too, or kept the controller's webhook readiness"
    );
    Ok(())
}

/// `controller.leaderElection=false` drops the flag and the Role, and refuses two replicas.
fn check_without_leader_election(helm: &PathBuf) -> anyhow::Result<()> {
    let single = render_ok(helm, &["controller.leaderElection=false"])?;
    ensure!(
        !has_arg(
            container(&single, "lmcache-operator-controller")?,
            "--leader-elect"
        ) && find(&single, "Role", "lmcache-operator-leader-election").is_err(),
        "controller.leaderElection=false keeps --leader-elect or its Role"
    );
    match render(
        helm,
        &["controller.leaderElection=false", "controller.replicas=2"],
    )? {
        Err(e) if e.contains("needs controller.leaderElection") => {}
        other => bail!("two replicas without leader election must fail the render: {other:?}"),
    }
    Ok(())
}

/// Image digests and tags, `logLevel` and the replica counts.
fn check_images_log_level_and_replicas(helm: &PathBuf) -> anyhow::Result<()> {
    let digest = format!("sha256:{}", "a".repeat(64));
    let pinned = render_ok(
        helm,
        &[
            &format!("controller.image.digest={digest}"),
            "webhook.image.tag=9.9.9",
            "logLevel=debug",
            "controller.replicas=3",
            "webhook.replicas=4",
        ],
    )?;
    let controller = container(&pinned, "lmcache-operator-controller")?;
    ensure!(
        controller["image"] == format!("lmcache/lmcache-operator@{digest}"),
        "digest: {}",
        controller["image"]
    );
    let webhook = container(&pinned, "lmcache-operator-webhook")?;
    ensure!(
        webhook["image"] == "lmcache/lmcache-webhook:9.9.9",
        "tag: {}",
        webhook["image"]
    );
    ensure!(
        has_arg(controller, "--log-level=debug") && has_arg(webhook, "--log-level=debug"),
        "logLevel"
    );
    ensure!(
        find(&pinned, "Deployment", "lmcache-operator-controller")?["spec"]["replicas"] == 3
            && find(&pinned, "Deployment", "lmcache-operator-webhook")?["spec"]["replicas"] == 4,
        "replicas"
    );
    Ok(())
}

/// Node selectors, tolerations and image pull secrets.
fn check_scheduling(helm: &PathBuf) -> anyhow::Result<()> {
    let placed = render_ok(
        helm,
        &[
            "controller.nodeSelector.pool=system",
            "webhook.tolerations[0].key=dedicated",
            "webhook.tolerations[0].operator=Exists",
            "imagePullSecrets[0].name=regcred",
        ],
    )?;
    let pod = |name| -> anyhow::Result<Value> {
        Ok(find(&placed, "Deployment", name)?["spec"]["template"]["spec"].clone())
    };
    let (controller, webhook) = (
        pod("lmcache-operator-controller")?,
        pod("lmcache-operator-webhook")?,
    );
    ensure!(
        controller["nodeSelector"] == json!({"pool": "system"}),
        "nodeSelector: {}",
        controller["nodeSelector"]
    );
    ensure!(
        webhook["tolerations"] == json!([{"key": "dedicated", "operator": "Exists"}])
            && webhook.get("nodeSelector").is_none(),
        "tolerations: {}",
        webhook["tolerations"]
    );
    ensure!(
        webhook["imagePullSecrets"] == json!([{"name": "regcred"}]),
        "imagePullSecrets"
    );
    Ok(())
}

/// `webhook.tls.mode=files`: the given Secret and CA bundle and no cert-manager or self-managed
/// object; without a Secret, or with an unknown mode, the render fails.
fn check_files_tls(helm: &PathBuf) -> anyhow::Result<()> {
    let files = render_ok(helm, &FILES_TLS)?;
    let webhook = find(&files, "Deployment", "lmcache-operator-webhook")?;
    ensure!(
        webhook["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] == "my-webhook-cert",
        "files: volume"
    );
    ensure!(
        has_arg(container(&files, "lmcache-operator-webhook")?, "--tls=files"),
        "files: --tls"
    );
    let hooks = &find(
        &files,
        "MutatingWebhookConfiguration",
        "lmcache-operator-cacheblend-injector",
    )?["webhooks"];
    ensure!(
        hooks
            .as_array()
            .is_some_and(|h| h.len() == 2 && h.iter().all(|h| h["clientConfig"]["caBundle"] == "Q0E=")),
        "files: caBundle on both entries"
    );
    ensure!(
        files
            .iter()
            .all(|d| d["kind"] != "Certificate" && d["metadata"]["name"] != "lmcache-operator-webhook-tls"),
        "files: renders cert-manager or self-managed objects"
    );
    match render(helm, &["webhook.tls.mode=files"])? {
        Err(e) if e.contains("webhook.tls.secretName") => {}
        other => bail!("files without a Secret must fail the render: {other:?}"),
    }
    match render(helm, &["webhook.tls.mode=vault"])? {
        Err(e) if e.contains("schema") => {}
        other => bail!("an unknown TLS mode must fail the schema: {other:?}"),
    }
    Ok(())
}

/// `crds.install=false` renders no CRD; by default every CRD is kept on uninstall.
fn check_crds(helm: &PathBuf, base: &[Value]) -> anyhow::Result<()> {
    let no_crds = render_ok(helm, &["crds.install=false"])?;
    ensure!(
        no_crds.iter().all(|d| d["kind"] != "CustomResourceDefinition") && no_crds.len() == base.len() - 3,
        "crds.install=false"
    );
    ensure!(
        base.iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
            .all(|d| d["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"),
        "CRDs must be kept on uninstall"
    );
    Ok(())
}

pub fn run() -> anyhow::Result<()> {
    let helm = helm()?;
    let chart = chart_dir().display().to_string();
    for set in [&[][..], &["webhook.tls.mode=cert-manager"][..], &FILES_TLS[..]] {
        let mut args = vec!["lint", "--strict", chart.as_str(), "--kube-version", K8S_VERSION];
        for s in set {
            args.extend(["--set", s]);
        }
        crate::util::run(&helm.display().to_string(), &args)?;
    }
    let mut problems = Vec::new();
    for (file, set) in [
        ("install.yaml", &[][..]),
        (
            "install-cert-manager.yaml",
            &["webhook.tls.mode=cert-manager"][..],
        ),
    ] {
        let install = install_file(file)?;
        let rendered = render_ok(&helm, set)?;
        let found = compare(&install, &rendered);
        eprintln!(
            "[chart] {} objects of {file} against the chart rendered with {set:?}: {} differences",
            install.len() - 1,
            found.len()
        );
        problems.extend(found.into_iter().map(|p| format!("{file}: {p}")));
    }
    if !problems.is_empty() {
        bail!(
            "the chart and the install files differ:\n  {}",
            problems.join("\n  ")
        );
    }
    check_values(&helm)?;
    eprintln!("[chart] lint, install-file equality and values checks passed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helm_labels_and_the_keep_annotation_are_not_differences() {
        let install = vec![json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "n", "labels": {"a": "b"}}})];
        let chart = vec![json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "n", "labels": {"a": "b", "helm.sh/chart": "c-1"},
                         "annotations": {"helm.sh/resource-policy": "keep"}}})];
        assert!(compare(&install, &chart).is_empty());
    }

    #[test]
    fn missing_extra_and_changed_objects_are_reported() {
        let svc = |name: &str, port: u16| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "n"},
                   "spec": {"ports": [{"port": port}]}})
        };
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}});
        let problems = compare(&[ns, svc("a", 1), svc("b", 1)], &[svc("a", 2), svc("c", 1)]);
        assert_eq!(
            problems,
            [
                "v1 Service n/a: .spec.ports[0].port: install file 1 / chart 2",
                "v1 Service n/b: in the install file, not in the chart",
                "v1 Service n/c: in the chart, not in the install file",
            ]
        );
    }
}
