//! install.yaml and install-cert-manager.yaml against the real API server (server-side dry-run;
//! `cargo xtask install-test` installs them for real) and the permissions the
//! product runs with under `cargo xtask e2e`: H113 (least privilege, via `kubectl auth can-i`),
//! H114 (leader Lease) and the registered MutatingWebhookConfiguration (cacheblend.md §11).

use lmcache_e2e::{Cluster, TIMEOUT, settings, wait};
use serde_json::Value;
use std::path::PathBuf;

/// Minimal permissive CRDs for the two cert-manager kinds install-cert-manager.yaml uses, so a dry-run can
/// accept the Issuer and Certificate without cert-manager (nothing reconciles them).
fn cert_manager_crds() -> String {
    let mut out = String::new();
    for (plural, kind) in [("issuers", "Issuer"), ("certificates", "Certificate")] {
        out.push_str(&format!(
            "---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  \
             name: {plural}.cert-manager.io\nspec:\n  group: cert-manager.io\n  scope: Namespaced\n  \
             names:\n    plural: {plural}\n    singular: {singular}\n    kind: {kind}\n    listKind: {kind}List\n  \
             versions:\n    - name: v1\n      served: true\n      storage: true\n      schema:\n        \
             openAPIV3Schema:\n          type: object\n          x-kubernetes-preserve-unknown-fields: true\n",
            singular = kind.to_lowercase(),
        ));
    }
    out
}

fn install_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(name)
}

/// The namespace install.yaml installs into (its first document).
fn install_namespace(text: &str) -> anyhow::Result<String> {
    let first: Value = serde_saphyr::from_str(
        text.split("\n---\n")
            .find(|doc| doc.contains("kind: Namespace"))
            .ok_or_else(|| anyhow::anyhow!("install.yaml has no Namespace"))?,
    )?;
    first["metadata"]["name"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("Namespace without a name"))
}

/// What every install file holds, whatever its TLS mode.
const COMMON: [&str; 11] = [
    "namespace/",
    "customresourcedefinition.apiextensions.k8s.io/lmcacheengines.lmcache.lmcache.ai",
    "serviceaccount/lmcache-operator-controller",
    "clusterrole.rbac.authorization.k8s.io/lmcache-operator-controller",
    "role.rbac.authorization.k8s.io/lmcache-operator-leader-election",
    "role.rbac.authorization.k8s.io/lmcache-operator-webhook-readiness",
    "service/lmcache-operator-webhook",
    "deployment.apps/lmcache-operator-controller",
    "deployment.apps/lmcache-operator-webhook",
    "poddisruptionbudget.policy/",
    "mutatingwebhookconfiguration.admissionregistration.k8s.io/",
];

/// Server-side dry-run of `deploy/<file>`: admission and validation run, nothing is stored or
/// registered, so the MutatingWebhookConfiguration's Service is never called. Returns the
/// objects kubectl reports.
async fn dry_run(cluster: &Cluster, file: &str) -> anyhow::Result<Vec<String>> {
    let kubectl = &cluster.kubectl;
    // A dry-run Namespace is not persisted, so its namespaced objects would be rejected by
    // NamespaceLifecycle: the (empty) namespace itself must exist for real.
    let path = install_file(file);
    let text = std::fs::read_to_string(&path)?;
    let ns = install_namespace(&text)?;
    // Both install files name the same namespace and their tests run in parallel: the other
    // test may create it between our look and our create.
    let exists = kubectl.run(&["get", "namespace", &ns]).await?;
    if !exists.success {
        let created = kubectl.run(&["create", "namespace", &ns]).await?;
        if !created.stderr.contains("AlreadyExists") {
            created.ok()?;
        }
    }
    let out = kubectl
        .run(&["apply", "--dry-run=server", "-f", &path.display().to_string()])
        .await?;
    assert!(
        out.success,
        "{file}: dry-run failed:\n{}\n{}",
        out.stdout, out.stderr
    );
    // Nothing was created: the install Deployments do not exist afterwards.
    let after = kubectl
        .run(&["get", "deployment", "lmcache-operator-controller", "-n", &ns])
        .await?;
    assert!(!after.success, "a dry-run must not create the Deployment");
    Ok(out
        .stdout
        .lines()
        .filter(|l| l.ends_with("(server dry run)"))
        .map(str::to_string)
        .collect())
}

fn assert_holds(file: &str, applied: &[String], kinds: &[&str]) {
    for kind in kinds {
        assert!(
            applied.iter().any(|l| l.starts_with(kind)),
            "{file}: {kind} missing:\n{}",
            applied.join("\n")
        );
    }
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn install_yaml_passes_a_server_side_dry_run_with_all_23_objects() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let applied = dry_run(&cluster, "install.yaml").await?;
    assert_eq!(applied.len(), 23, "expected 23 objects:\n{}", applied.join("\n"));
    assert_holds("install.yaml", &applied, &COMMON);
    assert_holds(
        "install.yaml",
        &applied,
        &["role.rbac.authorization.k8s.io/lmcache-operator-webhook-tls"],
    );
    assert!(!applied.iter().any(|l| l.contains("cert-manager")), "{applied:?}");
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn install_cert_manager_yaml_passes_a_server_side_dry_run_with_all_23_objects() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let kubectl = &cluster.kubectl;
    // Idempotent: server-side apply of the stand-in CRDs, then wait until they are served.
    kubectl
        .run_with_stdin(
            &["apply", "--server-side", "--field-manager=lmcache-e2e", "-f", "-"],
            Some(&cert_manager_crds()),
        )
        .await?
        .ok()?;
    lmcache_e2e::crd::wait_established(
        &cluster,
        &["issuers.cert-manager.io", "certificates.cert-manager.io"],
    )
    .await?;
    let file = "install-cert-manager.yaml";
    let applied = dry_run(&cluster, file).await?;
    assert_eq!(applied.len(), 23, "expected 23 objects:\n{}", applied.join("\n"));
    assert_holds(file, &applied, &COMMON);
    assert_holds(
        file,
        &applied,
        &["issuer.cert-manager.io/", "certificate.cert-manager.io/"],
    );
    Ok(())
}

/// `kubectl auth can-i <verb> <resource> --as=<service account>` in namespace `default`.
async fn can_i(cluster: &Cluster, sa: &str, verb: &str, resource: &str) -> anyhow::Result<bool> {
    let user = format!("system:serviceaccount:{}:{sa}", settings::operator_namespace());
    let out = cluster
        .kubectl
        .run(&[
            "auth",
            "can-i",
            verb,
            resource,
            "-n",
            "default",
            &format!("--as={user}"),
        ])
        .await?;
    match out.stdout.trim() {
        "yes" => Ok(true),
        "no" => Ok(false),
        other => anyhow::bail!("can-i {verb} {resource} as {user}: {other:?} {}", out.stderr),
    }
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn h113_service_accounts_have_least_privilege() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let cases = [
        (
            "lmcache-operator-webhook",
            "list",
            "cacheblendengines.lmcache.lmcache.ai",
            true,
        ),
        ("lmcache-operator-webhook", "get", "configmaps", false),
        ("lmcache-operator-webhook", "list", "pods", false),
        // Its Secret permissions are a Role in its own namespace only.
        ("lmcache-operator-webhook", "get", "secrets", false),
        ("lmcache-operator-webhook", "create", "secrets", false),
        (
            "lmcache-operator-webhook",
            "patch",
            "mutatingwebhookconfigurations.admissionregistration.k8s.io",
            false,
        ),
        ("lmcache-operator-controller", "patch", "daemonsets.apps", true),
        ("lmcache-operator-controller", "list", "pods", true),
        ("lmcache-operator-controller", "get", "secrets", false),
        ("lmcache-operator-controller", "delete", "daemonsets.apps", false),
    ];
    let mut wrong = Vec::new();
    for (sa, verb, resource, expected) in cases {
        let allowed = can_i(&cluster, sa, verb, resource).await?;
        if allowed != expected {
            wrong.push(format!(
                "{sa} {verb} {resource}: allowed={allowed}, want {expected}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn h114_leader_lease_exists_with_a_holder() -> anyhow::Result<()> {
    settings::operator_health()?;
    let cluster = Cluster::connect().await?;
    let ns = settings::operator_namespace();
    let holder = wait::until("a holder of the leader Lease", TIMEOUT, || {
        let kubectl = cluster.kubectl.clone();
        let ns = ns.clone();
        async move {
            let lease = kubectl
                .get_json(&ns, &["lease", "lmcache-operator-controller-leader"])
                .await?;
            Ok(lease["spec"]["holderIdentity"]
                .as_str()
                .filter(|h| !h.is_empty())
                .map(str::to_string))
        }
    })
    .await?;
    assert!(!holder.is_empty());
    Ok(())
}

#[tokio::test]
#[ignore = "needs a cluster: cargo xtask e2e"]
async fn f104_registered_webhook_configuration_matches_the_spec() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let list = cluster
        .kubectl
        .get_json("default", &["mutatingwebhookconfigurations"])
        .await?;
    let all: Vec<&Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|mwc| mwc["webhooks"].as_array().into_iter().flatten())
        .collect();
    // Both injectors, CacheBlend first (K6: it runs before the connection injector).
    let cacheblend = settings::webhook_url()?;
    let lmcache = settings::lmcache_webhook_url()?;
    let position = |url: &str| all.iter().position(|h| h["clientConfig"]["url"] == url);
    assert!(position(&cacheblend) < position(&lmcache), "order of {all:?}");
    for (url, name, label) in [
        (
            &cacheblend,
            "cacheblend-injector.lmcache.ai",
            "lmcache.ai/cacheblend-inject",
        ),
        (
            &lmcache,
            "lmcache-injector.lmcache.ai",
            "lmcache.ai/lmcache-inject",
        ),
    ] {
        let hooks: Vec<&&Value> = all
            .iter()
            .filter(|hook| hook["clientConfig"]["url"] == url.as_str())
            .collect();
        assert_eq!(hooks.len(), 1, "exactly one webhook calls {url}");
        check_entry(hooks[0], name, label);
    }
    Ok(())
}

fn check_entry(hook: &Value, name: &str, label: &str) {
    assert_eq!(hook["name"], name);
    let rules = hook["rules"].as_array().cloned().unwrap_or_default();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0]["operations"], serde_json::json!(["CREATE"]));
    assert_eq!(rules[0]["resources"], serde_json::json!(["pods"]));
    assert_eq!(rules[0]["apiGroups"], serde_json::json!([""]));
    assert_eq!(rules[0]["apiVersions"], serde_json::json!(["v1"]));
    assert_eq!(hook["failurePolicy"], "Ignore");
    assert_eq!(hook["sideEffects"], "None");
    assert_eq!(hook["reinvocationPolicy"], "Never");
    assert_eq!(hook["timeoutSeconds"], 5);
    assert_eq!(hook["admissionReviewVersions"], serde_json::json!(["v1"]));
    assert_eq!(hook["objectSelector"]["matchLabels"][label], "true");
    let expr = &hook["namespaceSelector"]["matchExpressions"][0];
    assert_eq!(expr["key"], "kubernetes.io/metadata.name");
    assert_eq!(expr["operator"], "NotIn");
    let excluded: Vec<&str> = expr["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let ns = settings::operator_namespace();
    for wanted in ["kube-system", "kube-public", ns.as_str()] {
        assert!(excluded.contains(&wanted), "{wanted} not excluded: {excluded:?}");
    }
    let ca = hook["clientConfig"]["caBundle"].as_str().unwrap_or_default();
    assert!(!ca.is_empty(), "caBundle is empty");
}
