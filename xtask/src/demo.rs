//! `cargo xtask demo`: the product on the local control plane, left running to explore.
//!
//! Brings the cluster up, installs the CRDs, starts the operator and the webhook as in
//! `cargo xtask e2e` (install.yaml ServiceAccounts, loopback webhook), applies the examples in
//! deploy/examples/ to the namespace `lmcache-demo`, waits until they run and prints what the
//! operator and the webhook made. The processes keep running (recorded in
//! `target/cluster/e2e-pids`) until `cargo xtask cluster down`; a later `cargo xtask e2e`
//! replaces them with its own.

use crate::cluster::proc;
use crate::cluster::{self, Kubectl, Layout};
use crate::e2e::product;
use crate::util::root;
use anyhow::{Context, bail};
use std::time::{Duration, Instant};

const NAMESPACE: &str = "lmcache-demo";
const EXAMPLES: [&str; 4] = [
    "deploy/examples/lmcacheengine.yaml",
    "deploy/examples/vllm-lmcache.yaml",
    "deploy/examples/cacheblendengine.yaml",
    "deploy/examples/coordinator.yaml",
];
/// (short kind, name) of every custom resource the examples create.
const RESOURCES: [(&str, &str); 4] = [
    ("lmc", "my-cache"),
    ("cbe", "my-cacheblend"),
    ("lmcc", "my-coordinator"),
    ("lmc", "my-coordinated-cache"),
];

pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let layout = Layout::new();
    let _lock = layout.lock()?;
    proc::stop_all(&layout.e2e_pids())?;
    cluster::up(&layout)?;
    let kubectl = Kubectl::new(&layout);
    product::install_crds(&kubectl, "lmcache-e2e")?;
    product::build_product()?;
    let product = product::start_product(&layout, &kubectl, true)?;
    for needed in ["LMCACHE_E2E_WEBHOOK_URL", "LMCACHE_E2E_OPERATOR_HEALTH"] {
        if !product.env.iter().any(|(k, _)| *k == needed) {
            bail!(
                "the product did not become ready; see {}",
                layout.logs().display()
            );
        }
    }

    apply_examples(&kubectl)?;
    let injected = [
        injected_pod_args(&kubectl, "vllm-lmcache", "lmcache.ai/lmcache-injected")?,
        injected_pod_args(&kubectl, "vllm-cacheblend", "lmcache.ai/cacheblend-injected")?,
    ];
    print_objects(&kubectl, &injected)?;
    let kubectl_bin = kubectl.bin.display();
    println!(
        "\nDemo ready in {:.0}s. Explore:\n  export KUBECONFIG={}\n  alias kubectl={kubectl_bin}\n  \
         kubectl get lmc,cbe,lmcc -n {NAMESPACE}\n  kubectl describe lmc my-cache -n {NAMESPACE}\n  \
         kubectl get daemonsets,deployments,services,configmaps,pods -n {NAMESPACE} -o wide\n  \
         kubectl get pods -n {NAMESPACE} -l 'app in (vllm-lmcache,vllm-cacheblend)' -o yaml\n  \
         logs: {}/lmcache-operator.log, lmcache-webhook.log\n\
         Stop everything (operator, webhook, cluster): cargo xtask cluster down",
        started.elapsed().as_secs_f64(),
        layout.kubeconfig().display(),
        layout.logs().display()
    );
    Ok(())
}

/// Applies the examples to [`NAMESPACE`] (printing kubectl's output) and waits until every
/// custom resource they create is Running.
fn apply_examples(kubectl: &Kubectl) -> anyhow::Result<()> {
    // Injected pods use hostIPC and the engines run privileged: the namespace allows it.
    kubectl.ok(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n  labels:\n    \
             pod-security.kubernetes.io/enforce: privileged\n"
        )),
    )?;
    for example in EXAMPLES {
        let path = root().join(example);
        print!(
            "{}",
            kubectl.ok(
                &["apply", "-n", NAMESPACE, "-f", &path.display().to_string()],
                None
            )?
        );
    }
    for (kind, name) in RESOURCES {
        kubectl
            .ok(
                &[
                    "wait",
                    "-n",
                    NAMESPACE,
                    "--for=jsonpath={.status.phase}=Running",
                    "--timeout=120s",
                    &format!("{kind}/{name}"),
                ],
                None,
            )
            .with_context(|| format!("{kind}/{name} did not reach Running"))?;
    }
    Ok(())
}

/// What the operator and the webhook made: the custom resources, the engine's connection
/// ConfigMap and the injected pods' args.
fn print_objects(kubectl: &Kubectl, injected: &[(String, Vec<String>)]) -> anyhow::Result<()> {
    println!("\n$ kubectl get lmc,cbe,lmcc -A");
    print!("{}", kubectl.ok(&["get", "lmc,cbe,lmcc", "-A"], None)?);
    println!("\n$ kubectl get configmap my-cache-connection -n {NAMESPACE} -o yaml");
    print!(
        "{}",
        kubectl.ok(
            &[
                "get",
                "configmap",
                "my-cache-connection",
                "-n",
                NAMESPACE,
                "-o",
                "yaml"
            ],
            None
        )?
    );
    for (name, args) in injected {
        println!("\nInjected vLLM pod ({name}), container args:");
        for arg in args {
            println!("  {arg}");
        }
    }
    Ok(())
}

/// Name and container args of the opted-in vLLM pod labelled `app=<app>`, once a webhook set
/// `injected` on it.
fn injected_pod_args(kubectl: &Kubectl, app: &str, injected: &str) -> anyhow::Result<(String, Vec<String>)> {
    let mut found = None;
    let mut last = String::new();
    cluster::wait_until(
        &format!("the injected pod {app}"),
        Duration::from_secs(120),
        &[],
        || {
            let out = kubectl.ok(
                &[
                    "get",
                    "pods",
                    "-n",
                    NAMESPACE,
                    "-l",
                    &format!("app={app}"),
                    "-o",
                    "json",
                ],
                None,
            );
            let Ok(list) = out.map(|o| serde_json::from_str::<serde_json::Value>(&o)) else {
                return false;
            };
            let Ok(list) = list else { return false };
            let Some(pod) = list["items"].as_array().and_then(|i| i.first()).cloned() else {
                return false;
            };
            last = pod["metadata"]["annotations"].to_string();
            if pod["metadata"]["annotations"][injected] != "true" {
                return false;
            }
            let args = pod["spec"]["containers"][0]["args"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            let name = pod["metadata"]["name"].as_str().unwrap_or("?").to_string();
            found = Some((name, args));
            true
        },
    )
    .with_context(|| format!("last pod annotations: {last}"))?;
    found.context("no injected pod")
}
