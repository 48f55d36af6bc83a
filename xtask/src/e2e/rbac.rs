//! Real permissions for the product processes of `cargo xtask e2e` and `cargo xtask demo`.
//!
//! Applies the RBAC documents of install.yaml (generated for the e2e operator namespace) and
//! writes one kubeconfig per ServiceAccount with a TokenRequest token, so the operator and the
//! webhook run with exactly the verbs install.yaml grants: a missing verb fails the tests.

use crate::cluster::{Kubectl, Layout};
use crate::release::manifests::{self, Vars};
use anyhow::{Context, bail};
use std::path::PathBuf;

/// ServiceAccount of the operator (controller) in install.yaml.
pub const CONTROLLER_SA: &str = "lmcache-operator-controller";
/// ServiceAccount of the webhook in install.yaml.
pub const WEBHOOK_SA: &str = "lmcache-operator-webhook";
/// Lifetime of the minted tokens: longer than any e2e run or benchmark.
const TOKEN_DURATION: &str = "2h";

/// The `rbac` documents of install.yaml for `namespace`, as one `kind: List` (JSON).
pub fn rbac_list(namespace: &str) -> anyhow::Result<String> {
    let vars = Vars {
        namespace: namespace.to_string(),
        ..Vars::default()
    };
    let items: Vec<serde_json::Value> = manifests::documents(&vars)?
        .into_iter()
        .filter(|(part, _)| *part == "rbac")
        .map(|(_, doc)| doc)
        .collect();
    Ok(serde_json::to_string(
        &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}),
    )?)
}

/// Applies the ServiceAccounts, ClusterRoles, bindings and the leader-election Role of
/// install.yaml in `namespace` (which must exist).
pub fn apply(kubectl: &Kubectl, namespace: &str) -> anyhow::Result<()> {
    kubectl.force_apply("lmcache-e2e", &rbac_list(namespace)?)?;
    eprintln!("[e2e] install.yaml RBAC applied for namespace {namespace}");
    Ok(())
}

/// Mints a token for `sa` and writes `target/cluster/kubeconfig-sa-<sa>` using it.
pub fn token_kubeconfig(
    layout: &Layout,
    kubectl: &Kubectl,
    namespace: &str,
    sa: &str,
) -> anyhow::Result<PathBuf> {
    let token = kubectl
        .ok(
            &[
                "create",
                "token",
                sa,
                "-n",
                namespace,
                &format!("--duration={TOKEN_DURATION}"),
            ],
            None,
        )
        .with_context(|| format!("minting a token for {namespace}/{sa}"))?;
    let token = token.trim();
    if token.is_empty() {
        bail!("kubectl create token {sa} printed nothing");
    }
    let server = kubectl.ok(
        &[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
        None,
    )?;
    let ca = layout.pki().join("ca.crt");
    let text = kubeconfig(server.trim(), &ca.display().to_string(), sa, token);
    let path = layout.dir.join(format!("kubeconfig-sa-{sa}"));
    crate::cluster::pki::write(&path, &text)?;
    Ok(path)
}

fn kubeconfig(server: &str, ca_file: &str, user: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: lmcache-e2e\n  cluster:\n    server: {server}\n    \
         certificate-authority: {ca_file}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n\
         - name: lmcache-e2e\n  context:\n    cluster: lmcache-e2e\n    user: {user}\ncurrent-context: lmcache-e2e\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rbac_list_holds_the_install_yaml_accounts_roles_and_bindings_only() {
        let list: serde_json::Value = serde_json::from_str(&rbac_list("ns-x").unwrap()).unwrap();
        let kinds: Vec<(&str, &str)> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["kind"].as_str().unwrap(),
                    i["metadata"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        for wanted in [
            ("ServiceAccount", CONTROLLER_SA),
            ("ServiceAccount", WEBHOOK_SA),
            ("ClusterRole", CONTROLLER_SA),
            ("ClusterRole", WEBHOOK_SA),
            ("ClusterRoleBinding", CONTROLLER_SA),
            ("ClusterRoleBinding", WEBHOOK_SA),
            ("Role", "lmcache-operator-leader-election"),
            ("RoleBinding", "lmcache-operator-leader-election"),
        ] {
            assert!(kinds.contains(&wanted), "{wanted:?} missing in {kinds:?}");
        }
        for kind in [
            "Deployment",
            "Service",
            "Namespace",
            "MutatingWebhookConfiguration",
            "Issuer",
        ] {
            assert!(
                kinds.iter().all(|(k, _)| *k != kind),
                "{kind} must not be applied"
            );
        }
        let binding = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["kind"] == "RoleBinding")
            .unwrap();
        assert_eq!(binding["metadata"]["namespace"], "ns-x");
        assert_eq!(binding["subjects"][0]["namespace"], "ns-x");
    }

    #[test]
    fn the_token_kubeconfig_uses_the_token_and_no_client_certificate() {
        let text = kubeconfig("https://127.0.0.1:6443", "/pki/ca.crt", "sa", "TOKEN");
        let value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(value["users"][0]["user"]["token"], "TOKEN");
        assert_eq!(
            value["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        assert!(!text.contains("client-certificate"));
    }
}
