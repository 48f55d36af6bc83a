//! The install test's checks (numbered as in the module above) and the polling they share.

use crate::cluster::Kubectl;
use crate::cluster::client::engine_resource;
use anyhow::{Context, bail, ensure};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const NS: &str = "lmcache-operator-system";
const CONTROLLER: &str = "lmcache-operator-controller";
const WEBHOOK: &str = "lmcache-operator-webhook";
const CONFIGURATION: &str = "lmcache-operator-cacheblend-injector";
const SECRET: &str = "lmcache-operator-webhook-tls";
const LEASE: &str = "lmcache-operator-controller-leader";
const PART_OF: &str = "app.kubernetes.io/part-of=lmcache-operator";
/// How long the rotation window admits pods: three serving lifetimes, past the CA's renewal.
const ROTATION_WINDOW: Duration = Duration::from_secs(85);

pub fn step(text: &str) {
    eprintln!("[install-test] {text}");
}

/// Polls `check` every 500 ms until it returns `Some`, or fails after `timeout` with the last
/// reason it gave.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(reason) if Instant::now() >= deadline => {
                bail!("{what}: not within {} s (last: {reason})", timeout.as_secs())
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The pods of a Deployment that are not being deleted: (name, pod IP).
async fn pods_of(client: &Client, deployment: &str) -> Vec<(String, String)> {
    let component = deployment.trim_start_matches("lmcache-operator-");
    let selector = format!("app.kubernetes.io/name=lmcache-operator,app.kubernetes.io/component={component}");
    let pods = Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    pods.into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.clone()?;
            Some((p.name_any(), ip))
        })
        .collect()
}

/// `/readyz` of a pod's process on its health port (8081 at the pod IP).
async fn ready(ip: &str) -> Result<(), String> {
    let addr: SocketAddr = format!("{ip}:8081").parse().map_err(|e| format!("{e}"))?;
    let answer = tokio::task::spawn_blocking(move || cluster_http_get(addr))
        .await
        .map_err(|e| e.to_string())?;
    match answer {
        Ok((200, _)) => Ok(()),
        Ok((code, body)) => Err(format!("{ip}: /readyz {code} {}", body.trim())),
        Err(e) => Err(format!("{ip}: {e:#}")),
    }
}

fn cluster_http_get(addr: SocketAddr) -> anyhow::Result<(u16, String)> {
    crate::cluster::proc::http_get(addr, "/readyz")
}

/// Every pod of `deployment` (as many as `replicas`) has a ready process.
async fn deployment_ready(client: &Client, deployment: &str) -> anyhow::Result<Vec<(String, String)>> {
    let want = Api::<Deployment>::namespaced(client.clone(), NS)
        .get(deployment)
        .await?
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or(1) as usize;
    eventually(
        &format!("{deployment}: {want} ready processes"),
        Duration::from_secs(120),
        || async {
            let pods = pods_of(client, deployment).await;
            if pods.len() != want {
                return Err(format!("{} pods, want {want}", pods.len()));
            }
            for (_, ip) in &pods {
                ready(ip).await?;
            }
            Ok(pods)
        },
    )
    .await
}

/// The webhook configuration's entries all carry exactly the Secret's CA bundle.
async fn ca_published(client: &Client) -> Result<Vec<u8>, String> {
    let secret = Api::<Secret>::namespaced(client.clone(), NS)
        .get_opt(SECRET)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no Secret yet")?;
    let bundle = secret
        .data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .map(|b| b.0.clone())
        .ok_or("Secret without ca.crt")?;
    let config = Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get(CONFIGURATION)
        .await
        .map_err(|e| e.to_string())?;
    let hooks = config.webhooks.unwrap_or_default();
    if hooks.len() != 2 {
        return Err(format!("{} webhook entries", hooks.len()));
    }
    for hook in &hooks {
        if hook.client_config.ca_bundle.as_ref().map(|b| &b.0) != Some(&bundle) {
            return Err(format!("{}: caBundle is not the Secret's ca.crt", hook.name));
        }
    }
    Ok(bundle)
}

pub async fn installed(client: &Client) -> anyhow::Result<()> {
    let controllers = deployment_ready(client, CONTROLLER).await?;
    let webhooks = deployment_ready(client, WEBHOOK).await?;
    step(&format!(
        "processes ready: controller {controllers:?}, webhook {webhooks:?}"
    ));
    eventually(
        "the self-managed CA in both webhook entries",
        Duration::from_secs(60),
        || ca_published(client),
    )
    .await?;
    let secrets = Api::<Secret>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await?;
    let tls: Vec<String> = secrets
        .items
        .iter()
        .map(ResourceExt::name_any)
        .filter(|n| n.contains("webhook"))
        .collect();
    ensure!(
        tls == [SECRET],
        "the two replicas must share one Secret, found {tls:?}"
    );
    step("one self-managed Secret; its CA is the caBundle of both webhook entries");
    Ok(())
}

fn engine_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &engine_resource())
}

fn opted_in_pod(engine: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "vllm-", "labels": {"lmcache.ai/lmcache-inject": "true"},
                     "annotations": {"lmcache.ai/lmcache-engine": engine}},
        "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.33.0",
                                 "args": ["vllm", "serve", "Qwen/Qwen3-8B"]}]}
    }))
    .unwrap_or_default()
}

fn injected(pod: &Pod) -> bool {
    pod.annotations()
        .get("lmcache.ai/lmcache-injected")
        .map(String::as_str)
        == Some("true")
        && pod.spec.as_ref().and_then(|s| s.host_ipc) == Some(true)
}

/// A minimal engine reaches Running and an opted-in pod is injected; returns the engine's
/// (namespace, name).
pub async fn engine_runs_and_injects(
    client: &Client,
    kubectl: &Kubectl,
    ns: &str,
) -> anyhow::Result<(String, String)> {
    kubectl.ok(&["create", "namespace", ns], None)?;
    kubectl.ok(
        &[
            "label",
            "namespace",
            ns,
            "pod-security.kubernetes.io/enforce=privileged",
        ],
        None,
    )?;
    let engine: DynamicObject = serde_json::from_value(json!({
        "apiVersion": lmcache_api::constants::API_VERSION, "kind": "LMCacheEngine",
        "metadata": {"name": "cache", "namespace": ns}, "spec": {"l1": {"sizeGB": 4}}
    }))?;
    let engines = engine_api(client, ns);
    engines.create(&PostParams::default(), &engine).await?;
    eventually("the engine reaches Running", Duration::from_secs(120), || async {
        let e = engines.get("cache").await.map_err(|e| e.to_string())?;
        match e.data["status"]["phase"].as_str() {
            Some("Running") => Ok(()),
            other => Err(format!("phase {other:?}")),
        }
    })
    .await?;
    step(&format!("LMCacheEngine {ns}/cache is Running"));
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let pod = eventually("an opted-in pod is injected", Duration::from_secs(30), || async {
        let pod = pods
            .create(&PostParams::default(), &opted_in_pod("cache"))
            .await
            .map_err(|e| e.to_string())?;
        if injected(&pod) {
            Ok(pod)
        } else {
            let _ = pods.delete(&pod.name_any(), &DeleteParams::default()).await;
            Err(format!(
                "{} admitted without injection: {:?}",
                pod.name_any(),
                pod.annotations()
            ))
        }
    })
    .await?;
    step(&format!(
        "pod {ns}/{} injected through the Service",
        pod.name_any()
    ));
    Ok((ns.to_string(), "cache".to_string()))
}

async fn lease_holder(client: &Client) -> String {
    Api::<Lease>::namespaced(client.clone(), NS)
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
        .unwrap_or_default()
}

pub async fn leader_election(client: &Client, (ns, name): &(String, String)) -> anyhow::Result<()> {
    let old = pods_of(client, CONTROLLER).await;
    let (old_pod, _) = old.first().context("no controller pod")?.clone();
    let holder = lease_holder(client).await;
    ensure!(
        holder.starts_with(&old_pod),
        "Lease held by {holder:?}, not the controller pod {old_pod}"
    );
    step(&format!(
        "controller pod {old_pod} holds the Lease; deleting the pod"
    ));
    Api::<Pod>::namespaced(client.clone(), NS)
        .delete(&old_pod, &DeleteParams::default())
        .await?;
    let new_pod = eventually(
        "a new controller pod holds the Lease",
        Duration::from_secs(90),
        || async {
            let holder = lease_holder(client).await;
            let pods = pods_of(client, CONTROLLER).await;
            match pods
                .iter()
                .find(|(p, _)| p != &old_pod && holder.starts_with(p.as_str()))
            {
                Some((p, _)) => Ok(p.clone()),
                None => Err(format!("holder {holder:?}, pods {pods:?}")),
            }
        },
    )
    .await?;
    let engines = engine_api(client, ns);
    let patched = engines
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"l1": {"sizeGB": 5}}})),
        )
        .await?;
    let generation = patched.metadata.generation.unwrap_or_default();
    eventually(
        "the new leader reconciles a spec change",
        Duration::from_secs(60),
        || async {
            let e = engines.get(name).await.map_err(|e| e.to_string())?;
            match e.data["status"]["observedGeneration"].as_i64() {
                Some(g) if g >= generation => Ok(()),
                other => Err(format!("observedGeneration {other:?}, generation {generation}")),
            }
        },
    )
    .await?;
    step(&format!(
        "{new_pod} took the Lease and reconciled generation {generation}"
    ));
    Ok(())
}

/// The webhook's serving and CA certificates rotate while every admission is injected.
pub async fn rotation(client: &Client, kubectl: &Kubectl, ns: &str) -> anyhow::Result<()> {
    step("webhook with a 30 s serving and a 90 s CA lifetime (fresh Secret)");
    short_lifetimes(client, kubectl).await?;
    let window = admit_through_rotations(client, ns).await?;
    step(&format!(
        "rotation window {} s: {} admissions injected, {} not; {} serving certificates, {} CAs seen",
        ROTATION_WINDOW.as_secs(),
        window.admitted,
        window.failed.len(),
        window.serving.len(),
        window.cas.len()
    ));
    ensure!(
        window.failed.is_empty(),
        "admissions failed during rotation:\n  {}",
        window.failed.join("\n  ")
    );
    ensure!(
        window.serving.len() >= 3,
        "expected at least 3 serving certificates in the window, saw {}",
        window.serving.len()
    );
    ensure!(
        window.cas.len() >= 2,
        "expected a CA rotation in the window, saw {} CA",
        window.cas.len()
    );
    Ok(())
}

/// Rolls the webhook with short certificate lifetimes and a fresh Secret; returns once the new
/// pods are ready and their CA is published.
async fn short_lifetimes(client: &Client, kubectl: &Kubectl) -> anyhow::Result<()> {
    let args = json!([
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--serving-lifetime-seconds=30"},
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--ca-lifetime-seconds=90"},
        {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--tls-poll-seconds=2"},
    ]);
    let webhook_pods = || async {
        pods_of(client, WEBHOOK)
            .await
            .into_iter()
            .map(|(p, _)| p)
            .collect::<BTreeSet<String>>()
    };
    let old = webhook_pods().await;
    Api::<Deployment>::namespaced(client.clone(), NS)
        .patch(
            WEBHOOK,
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(args)?),
        )
        .await?;
    eventually("the webhook rolled", Duration::from_secs(120), || async {
        let now = webhook_pods().await;
        if now.len() == 2 && now.is_disjoint(&old) {
            Ok(())
        } else {
            Err(format!("pods {now:?}"))
        }
    })
    .await?;
    // Certificates issued with the old lifetimes would not rotate within the window.
    kubectl.ok(&["-n", NS, "delete", "secret", SECRET], None)?;
    deployment_ready(client, WEBHOOK).await?;
    eventually("a new CA published", Duration::from_secs(60), || {
        ca_published(client)
    })
    .await?;
    Ok(())
}

/// What the rotation window saw.
#[derive(Default)]
struct Window {
    admitted: u32,
    failed: Vec<String>,
    /// Distinct serving certificates and CA keys in the Secret.
    serving: BTreeSet<String>,
    cas: BTreeSet<String>,
}

/// Over [`ROTATION_WINDOW`]: a dry-run opted-in pod every 250 ms, and the Secret's serving
/// certificate and CA key each time.
async fn admit_through_rotations(client: &Client, ns: &str) -> anyhow::Result<Window> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let secrets = Api::<Secret>::namespaced(client.clone(), NS);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut window = Window::default();
    let started = Instant::now();
    while started.elapsed() < ROTATION_WINDOW {
        match pods.create(&dry_run, &opted_in_pod("cache")).await {
            Ok(pod) if injected(&pod) => window.admitted += 1,
            Ok(pod) => window.failed.push(format!(
                "at {:.1} s: not injected {:?}",
                started.elapsed().as_secs_f64(),
                pod.annotations()
            )),
            Err(e) => window
                .failed
                .push(format!("at {:.1} s: {e}", started.elapsed().as_secs_f64())),
        }
        if let Ok(Some(secret)) = secrets.get_opt(SECRET).await {
            let data = secret.data.unwrap_or_default();
            let text = |k: &str| {
                data.get(k)
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                    .unwrap_or_default()
            };
            window.serving.insert(text("tls.crt"));
            window.cas.insert(text("ca.key"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(window)
}

/// After an uninstall: no operator objects but (for the chart) the CRDs and custom resources.
pub async fn nothing_left(
    client: &Client,
    kubectl: &Kubectl,
    crds_deleted: bool,
    ns: &str,
) -> anyhow::Result<()> {
    let kinds = "clusterroles,clusterrolebindings,mutatingwebhookconfigurations";
    eventually(
        "no cluster-scoped object of the operator",
        Duration::from_secs(60),
        || async {
            let left = kubectl
                .ok(&["get", kinds, "-l", PART_OF, "-o", "name"], None)
                .map_err(|e| e.to_string())?;
            if left.trim().is_empty() { Ok(()) } else { Err(left) }
        },
    )
    .await?;
    eventually("no Deployment, Service, Secret, Role or pod in the operator namespace", Duration::from_secs(120), || async {
        let left = kubectl
            .ok(&["-n", NS, "get", "deployments,services,secrets,roles,rolebindings,serviceaccounts,pods,poddisruptionbudgets", "-o", "name"], None)
            .map_err(|e| e.to_string())?;
        let left: Vec<&str> = left.lines().filter(|l| !l.ends_with("/default") && !l.contains("kube-root-ca")).collect();
        if left.is_empty() { Ok(()) } else { Err(left.join(" ")) }
    })
    .await?;
    let crds = kubectl.ok(&["get", "crds", "-o", "name"], None)?;
    let ours = crds
        .lines()
        .filter(|l| l.ends_with(".lmcache.lmcache.ai"))
        .count();
    if crds_deleted {
        ensure!(
            ours == 0,
            "CRDs left after kubectl delete -f install.yaml: {crds}"
        );
        nothing_left_of_install_yaml(kubectl, ns).await
    } else {
        ensure!(ours == 3, "helm uninstall must keep the 3 CRDs: {crds}");
        chart_kept_its_custom_resources(client, kubectl, ns).await
    }
}

/// After `kubectl delete -f install.yaml`: the namespace is gone and the engine's children in
/// `ns` are collected.
async fn nothing_left_of_install_yaml(kubectl: &Kubectl, ns: &str) -> anyhow::Result<()> {
    let namespace = kubectl.output(&["get", "namespace", NS], None)?;
    ensure!(!namespace.status.success(), "namespace {NS} still exists");
    eventually(
        "the engine's children are collected",
        Duration::from_secs(60),
        || async {
            let left = kubectl
                .ok(
                    &[
                        "-n",
                        ns,
                        "get",
                        "daemonsets,services,configmaps",
                        "-l",
                        "app.kubernetes.io/managed-by=lmcache-operator",
                        "-o",
                        "name",
                    ],
                    None,
                )
                .map_err(|e| e.to_string())?;
            if left.trim().is_empty() { Ok(()) } else { Err(left) }
        },
    )
    .await?;
    step("kubectl delete -f install.yaml left nothing behind");
    Ok(())
}

/// After `helm uninstall`: the engine in `ns` is still there; then the kept CRDs are deleted.
async fn chart_kept_its_custom_resources(client: &Client, kubectl: &Kubectl, ns: &str) -> anyhow::Result<()> {
    let engine = engine_api(client, ns).get_opt("cache").await?;
    ensure!(engine.is_some(), "helm uninstall must keep the custom resources");
    step("helm uninstall kept the CRDs and the LMCacheEngine, and nothing else of the chart");
    kubectl.ok(
        &[
            "delete",
            "crds",
            "lmcacheengines.lmcache.lmcache.ai",
            "cacheblendengines.lmcache.lmcache.ai",
            "lmcachecoordinators.lmcache.lmcache.ai",
        ],
        None,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opted_in_pod_names_its_engine_and_is_not_injected_yet() {
        let pod = opted_in_pod("cache");
        assert_eq!(
            pod.labels().get("lmcache.ai/lmcache-inject").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            pod.annotations()
                .get("lmcache.ai/lmcache-engine")
                .map(String::as_str),
            Some("cache")
        );
        assert!(!injected(&pod));
    }
}
