//! `cargo xtask manifests [--check]`: deploy/install.yaml (self-managed webhook TLS),
//! deploy/install-cert-manager.yaml (cert-manager issues the webhook's certificate), the
//! kustomize layout under deploy/kustomize/ and the Helm chart's generated files, all from one
//! set of build variables (namespace, images, domain, TLS mode).
//!
//! The operator namespace appears in these generated files only; the programs read theirs from
//! `POD_NAMESPACE` (multitenancy.md MT-9).

use crate::util::{root, write_or_check};
use anyhow::bail;
use serde_json::{Value, json};

/// Build variables of the install manifest.
pub struct Vars {
    pub namespace: String,
    pub operator_image: String,
    pub webhook_image: String,
    pub cluster_domain: String,
    pub tls: Tls,
}

/// Where the webhook's serving certificate comes from in a generated install file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tls {
    /// The webhook issues its own CA and certificate into a Secret and publishes the CA in its
    /// MutatingWebhookConfiguration (`--tls=self-managed`); nothing to install first.
    SelfManaged,
    /// cert-manager's self-signed Issuer and a Certificate; cert-manager injects the CA.
    CertManager,
}

impl Default for Vars {
    fn default() -> Self {
        let version = env!("CARGO_PKG_VERSION");
        Self {
            namespace: "lmcache-operator-system".into(),
            operator_image: format!("lmcache/lmcache-operator:{version}"),
            webhook_image: format!("lmcache/lmcache-webhook:{version}"),
            cluster_domain: "cluster.local".into(),
            tls: Tls::SelfManaged,
        }
    }
}

const PREFIX: &str = "lmcache-operator";
const CERT_DIR: &str = "/tmp/k8s-webhook-server/serving-certs";
/// The MutatingWebhookConfiguration; it keeps its first name (see [`webhook_entries`]).
pub const WEBHOOK_CONFIGURATION: &str = "lmcache-operator-cacheblend-injector";
/// The Secret the self-managed webhook keeps its CA and serving certificate in.
pub const SELF_MANAGED_SECRET: &str = "lmcache-operator-webhook-tls";

fn labels(component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": PREFIX,
        "app.kubernetes.io/part-of": PREFIX,
        "app.kubernetes.io/component": component,
    })
}

fn selector(component: &str) -> Value {
    json!({"app.kubernetes.io/name": PREFIX, "app.kubernetes.io/component": component})
}

fn meta(name: &str, namespace: Option<&str>, component: &str) -> Value {
    let mut m = json!({"name": name, "labels": labels(component)});
    if let Some(ns) = namespace {
        m["namespace"] = ns.into();
    }
    m
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

const KINDS: [&str; 3] = ["lmcacheengines", "cacheblendengines", "lmcachecoordinators"];

fn with_suffix(suffix: &str) -> Vec<String> {
    KINDS.iter().map(|k| format!("{k}{suffix}")).collect()
}

/// Least-privilege rules of the controller (operations.md §5.1).
pub fn controller_rules() -> Vec<Value> {
    let group = lmcache_api::constants::GROUP;
    let status = with_suffix("/status");
    let finalizers = with_suffix("/finalizers");
    let status: Vec<&str> = status.iter().map(String::as_str).collect();
    let finalizers: Vec<&str> = finalizers.iter().map(String::as_str).collect();
    vec![
        rule(&[group], &KINDS, &["get", "list", "watch"]),
        rule(&[group], &status, &["get", "update", "patch"]),
        rule(&[group], &finalizers, &["update"]),
        rule(
            &["apps"],
            &["daemonsets", "deployments"],
            &["get", "list", "watch", "create", "patch"],
        ),
        rule(
            &[""],
            &["services"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        rule(
            &[""],
            &["configmaps"],
            &["get", "list", "watch", "create", "patch"],
        ),
        rule(&[""], &["pods"], &["get", "list", "watch"]),
        // Client restarts (`updateStrategy.restartClients`): the Eviction API respects the
        // clients' PodDisruptionBudgets; the operator never deletes a pod.
        rule(&[""], &["pods/eviction"], &["create"]),
        rule(&["", "events.k8s.io"], &["events"], &["create", "patch"]),
        rule(
            &["monitoring.coreos.com"],
            &["servicemonitors"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
    ]
}

/// The webhook reads the two engine kinds (operations.md §5.3, connection-webhook.md §5); with
/// self-managed TLS it also reads and patches its own MutatingWebhookConfiguration, by name,
/// to publish its CA.
pub fn webhook_rules(tls: Tls) -> Vec<Value> {
    let mut rules = vec![rule(
        &[lmcache_api::constants::GROUP],
        &["cacheblendengines", "lmcacheengines"],
        &["get", "list", "watch"],
    )];
    if tls == Tls::SelfManaged {
        let mut own = rule(
            &["admissionregistration.k8s.io"],
            &["mutatingwebhookconfigurations"],
            &["get", "patch"],
        );
        own["resourceNames"] = json!([WEBHOOK_CONFIGURATION]);
        rules.push(own);
    }
    rules
}

/// Role of the self-managed webhook in its own namespace: its one Secret. `create` cannot be
/// limited by name (the authorizer does not know the name of an object being created), so it
/// covers Secrets of this namespace; reading and replacing are limited to the one name.
pub fn webhook_tls_rules() -> Vec<Value> {
    let mut own = rule(&[""], &["secrets"], &["get", "update"]);
    own["resourceNames"] = json!([SELF_MANAGED_SECRET]);
    vec![own, rule(&[""], &["secrets"], &["create"])]
}

/// Role for the leader-election Lease in the operator namespace (operations.md §5.2).
pub fn leader_election_rules() -> Vec<Value> {
    vec![rule(
        &["coordination.k8s.io"],
        &["leases"],
        &["get", "create", "update"],
    )]
}

/// Memory of one container: what it asks for and where it is stopped. Sized from
/// `cargo xtask bench` (docs/benchmarks.md): the operator's RSS is ≈ 13 MiB plus ≈ 27 KiB per
/// engine (40 MiB at 1000 engines with 3000 pods), so 64Mi requested covers 1000 engines with
/// 1.5× headroom and the 128Mi limit ≈ 4000; the webhook's is ≈ 12 MiB plus ≈ 4 KiB per cached
/// engine and flat under load, so 32Mi requested covers 2000 cached engines and 128Mi leaves
/// room for bursts of large admission bodies.
struct Memory {
    request: &'static str,
    limit: &'static str,
}

/// Both programs' allocator settings, in install.yaml and in every process `cargo xtask bench`
/// measures (docs/benchmarks.md, "Heap profile").
///
/// * `MALLOC_ARENA_MAX=2`: glibc's malloc gives each thread that allocates its own arena (up to
///   8 per CPU: on a 96-CPU node hundreds), and each keeps its own free memory. Two, one per
///   runtime thread (`--worker-threads`), avoid lock contention: at 1000 engines the restarted
///   controller measured 39.5 MiB against 41.4 with glibc's default, the webhook with 2000
///   cached engines 21.0 against 22.1. One arena measured 37.4 MiB for the controller but made
///   the restart's initial lists slower (change latency p99 under load 1.8 → 5.7 s).
/// * `MALLOC_MMAP_THRESHOLD_=131072`: glibc's default threshold (128 KiB), pinned. Left alone,
///   glibc raises it to the size of every larger block freed (up to 32 MiB), so after the first
///   list page (≈ 0.5 MiB of response) every later page, watch body and serialised object above
///   128 KiB is carved out of an arena, and the holes it leaves stay resident. Pinned, each such
///   buffer is its own mapping, returned whole when freed: the restarted controller at 1000
///   engines measured 37.1–37.9 MiB (9 restarts) against 38.4–40.1 (6) without it; over a whole
///   convergence no CPU cost was visible (docs/benchmarks.md); the webhook 0.4 MiB less.
pub const ALLOCATOR_ENV: [(&str, &str); 2] =
    [("MALLOC_ARENA_MAX", "2"), ("MALLOC_MMAP_THRESHOLD_", "131072")];

const CONTROLLER_MEMORY: Memory = Memory {
    request: "64Mi",
    limit: "128Mi",
};
const WEBHOOK_MEMORY: Memory = Memory {
    request: "32Mi",
    limit: "128Mi",
};

/// `POD_NAMESPACE` and the allocator settings ([`ALLOCATOR_ENV`]).
fn container_env() -> Value {
    let namespace =
        json!({"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}});
    let allocator = ALLOCATOR_ENV
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value}));
    Value::Array(std::iter::once(namespace).chain(allocator).collect())
}

fn hardened_container(name: &str, image: &str, args: Vec<String>, ports: Value, memory: &Memory) -> Value {
    json!({
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "ports": ports,
        "env": container_env(),
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "health"}, "initialDelaySeconds": 15, "periodSeconds": 20},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "health"}, "initialDelaySeconds": 5, "periodSeconds": 10},
        "resources": {
            "requests": {"cpu": "50m", "memory": memory.request},
            "limits": {"cpu": "500m", "memory": memory.limit},
        },
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    })
}

fn admin_ports(extra: Option<Value>) -> Value {
    let mut ports = Vec::new();
    if let Some(p) = extra {
        ports.push(p);
    }
    ports.push(json!({"name": "metrics", "containerPort": 8080, "protocol": "TCP"}));
    ports.push(json!({"name": "health", "containerPort": 8081, "protocol": "TCP"}));
    Value::Array(ports)
}

fn pod_security_context() -> Value {
    json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}})
}

/// A namespaced Role `name` with `rules` and its RoleBinding to ServiceAccount `sa`.
fn role_and_binding(
    name: &str,
    ns: &str,
    component: &str,
    rules: Vec<Value>,
    sa: &str,
) -> [(&'static str, Value); 2] {
    [
        (
            "rbac",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": meta(name, Some(ns), component), "rules": rules}),
        ),
        (
            "rbac",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta(name, Some(ns), component),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]}),
        ),
    ]
}

/// Every document of install.yaml, in apply order (operations.md §2).
pub fn documents(v: &Vars) -> anyhow::Result<Vec<(&'static str, Value)>> {
    let ns = v.namespace.as_str();
    let webhook = format!("{PREFIX}-webhook");
    let mut docs: Vec<(&'static str, Value)> = Vec::new();

    docs.push((
        "namespace",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": ns,
            "labels": {"app.kubernetes.io/name": PREFIX, "app.kubernetes.io/part-of": PREFIX,
                       "pod-security.kubernetes.io/enforce": "restricted"}}}),
    ));
    for crd in lmcache_api::crds() {
        docs.push(("crds", serde_json::to_value(crd)?));
    }
    docs.extend(rbac_documents(v));
    if v.tls == Tls::SelfManaged {
        let tls_role = format!("{PREFIX}-webhook-tls");
        docs.extend(role_and_binding(
            &tls_role,
            ns,
            "webhook",
            webhook_tls_rules(),
            &webhook,
        ));
    } else {
        docs.extend(cert_manager_documents(ns, &webhook, &v.cluster_domain));
    }
    docs.push((
        "webhook",
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": meta(&webhook, Some(ns), "webhook"),
        "spec": {"selector": selector("webhook"),
                 "ports": [{"name": "https", "port": 443, "targetPort": "webhook", "protocol": "TCP"}]}}),
    ));
    docs.push(("controller", controller_deployment(v)));
    docs.push(("webhook", webhook_deployment(v)));
    docs.push((
        "webhook",
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": meta(&webhook, Some(ns), "webhook"),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": selector("webhook")}}}),
    ));
    docs.push(("webhook", mutating_webhook_configuration(v)));
    Ok(docs)
}

/// The ServiceAccounts, ClusterRoles and their bindings, and the controller's Roles (the
/// webhook's own Role depends on the TLS mode).
fn rbac_documents(v: &Vars) -> Vec<(&'static str, Value)> {
    let ns = v.namespace.as_str();
    let controller = format!("{PREFIX}-controller");
    let webhook = format!("{PREFIX}-webhook");
    let mut docs: Vec<(&'static str, Value)> = Vec::new();
    for (name, component) in [(&controller, "controller"), (&webhook, "webhook")] {
        docs.push((
            "rbac",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name, Some(ns), component)}),
        ));
    }
    docs.extend(cluster_roles(v.tls).into_iter().map(|role| ("rbac", role)));
    for (name, component) in [(&controller, "controller"), (&webhook, "webhook")] {
        docs.push((
            "rbac",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": meta(name, None, component),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}),
        ));
    }
    let le = format!("{PREFIX}-leader-election");
    docs.extend(role_and_binding(
        &le,
        ns,
        "controller",
        leader_election_rules(),
        &controller,
    ));
    // The missed-injection watchdog repairs only while the webhook's Service has a ready
    // endpoint, read from its EndpointSlices (never by dialling the webhook).
    docs.extend(role_and_binding(
        &format!("{PREFIX}-webhook-readiness"),
        ns,
        "controller",
        vec![rule(&["discovery.k8s.io"], &["endpointslices"], &["list"])],
        &controller,
    ));
    docs
}

/// The controller's and the webhook's ClusterRoles, and the edit and view roles aggregated into
/// the cluster's own.
fn cluster_roles(tls: Tls) -> Vec<Value> {
    let controller = format!("{PREFIX}-controller");
    let webhook = format!("{PREFIX}-webhook");
    let group = lmcache_api::constants::GROUP;
    let mut edit_meta = meta(&format!("{PREFIX}-edit"), None, "rbac");
    edit_meta["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] = "true".into();
    edit_meta["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] = "true".into();
    let mut view_meta = meta(&format!("{PREFIX}-view"), None, "rbac");
    view_meta["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] = "true".into();
    let mut viewable: Vec<String> = KINDS.iter().map(|k| k.to_string()).collect();
    viewable.extend(with_suffix("/status"));
    let viewable: Vec<&str> = viewable.iter().map(String::as_str).collect();
    vec![
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": meta(&controller, None, "controller"), "rules": controller_rules()}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": meta(&webhook, None, "webhook"), "rules": webhook_rules(tls)}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": edit_meta, "rules": [rule(&[group], &KINDS,
            &["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"])]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": view_meta, "rules": [rule(&[group], &viewable, &["get", "list", "watch"])]}),
    ]
}

fn controller_deployment(v: &Vars) -> Value {
    let ns = v.namespace.as_str();
    let controller = format!("{PREFIX}-controller");
    let webhook = format!("{PREFIX}-webhook");
    let controller_args = vec![
        "run".to_string(),
        "--leader-elect".into(),
        "--metrics-bind-address=:8080".into(),
        "--health-probe-bind-address=:8081".into(),
        format!("--cluster-domain={}", v.cluster_domain),
        format!("--webhook-service={ns}/{webhook}"),
        "--log-level=info".into(),
    ];
    let controller_container = hardened_container(
        "controller",
        &v.operator_image,
        controller_args,
        admin_ports(None),
        &CONTROLLER_MEMORY,
    );
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": meta(&controller, Some(ns), "controller"),
    "spec": {"replicas": 1, "selector": {"matchLabels": selector("controller")},
        "template": {"metadata": {"labels": labels("controller")},
            // Above the controller's own shutdown: at most 5 s drain + 2 s Lease release.
            "spec": {"serviceAccountName": controller, "terminationGracePeriodSeconds": 10,
                "securityContext": pod_security_context(),
                "containers": [controller_container]}}}})
}

fn webhook_deployment(v: &Vars) -> Value {
    let ns = v.namespace.as_str();
    let webhook = format!("{PREFIX}-webhook");
    let mut webhook_container = hardened_container(
        "webhook",
        &v.webhook_image,
        webhook_args(v),
        admin_ports(Some(
            json!({"name": "webhook", "containerPort": 9443, "protocol": "TCP"}),
        )),
        &WEBHOOK_MEMORY,
    );
    // Above the webhook's own shutdown: 3 s unready delay + at most 10 s drain.
    let mut webhook_pod = json!({"serviceAccountName": webhook, "terminationGracePeriodSeconds": 20,
        "securityContext": pod_security_context(),
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": selector("webhook")}}}]}}});
    if v.tls == Tls::CertManager {
        webhook_container["volumeMounts"] =
            json!([{"name": "cert", "mountPath": CERT_DIR, "readOnly": true}]);
        webhook_pod["volumes"] = json!([{"name": "cert", "secret": {"secretName": CERT_MANAGER_SECRET}}]);
    }
    webhook_pod["containers"] = json!([webhook_container]);
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": meta(&webhook, Some(ns), "webhook"),
    "spec": {"replicas": 2, "selector": {"matchLabels": selector("webhook")},
        "template": {"metadata": {"labels": labels("webhook")}, "spec": webhook_pod}}})
}

fn webhook_args(v: &Vars) -> Vec<String> {
    let webhook = format!("{PREFIX}-webhook");
    let tls_args = match v.tls {
        Tls::SelfManaged => vec![
            "--tls=self-managed".to_string(),
            format!("--tls-secret={SELF_MANAGED_SECRET}"),
            format!("--webhook-configuration={WEBHOOK_CONFIGURATION}"),
            format!("--service-name={webhook}"),
        ],
        Tls::CertManager => vec!["--tls=cert-manager".to_string(), format!("--cert-dir={CERT_DIR}")],
    };
    let mut webhook_args = vec!["serve".to_string(), "--port=9443".into()];
    webhook_args.extend(tls_args);
    webhook_args.extend([
        "--metrics-bind-address=:8080".into(),
        "--health-probe-bind-address=:8081".into(),
        format!("--cluster-domain={}", v.cluster_domain),
        "--log-level=info".into(),
    ]);
    webhook_args
}

/// [`webhook_entries`] calling the webhook's Service; with cert-manager, which injects the CA.
fn mutating_webhook_configuration(v: &Vars) -> Value {
    let ns = v.namespace.as_str();
    let webhook = format!("{PREFIX}-webhook");
    let mut mwc_meta = meta(WEBHOOK_CONFIGURATION, None, "webhook");
    if v.tls == Tls::CertManager {
        mwc_meta["annotations"] =
            json!({"cert-manager.io/inject-ca-from": format!("{ns}/{CERT_MANAGER_SECRET}")});
    }
    let hooks: Vec<Value> = webhook_entries(ns)
        .into_iter()
        .map(|(mut hook, path)| {
            hook["clientConfig"] =
                json!({"service": {"name": webhook, "namespace": ns, "path": path, "port": 443}});
            hook
        })
        .collect();
    json!({"apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "MutatingWebhookConfiguration", "metadata": mwc_meta, "webhooks": hooks})
}

/// The Certificate (and its Secret) cert-manager issues for the webhook.
const CERT_MANAGER_SECRET: &str = "lmcache-operator-webhook-cert";

/// cert-manager's self-signed Issuer and the webhook's Certificate for its Service names.
fn cert_manager_documents(ns: &str, service: &str, domain: &str) -> Vec<(&'static str, Value)> {
    let issuer = format!("{PREFIX}-selfsigned-issuer");
    vec![
        (
            "certificates",
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
            "metadata": meta(&issuer, Some(ns), "webhook"), "spec": {"selfSigned": {}}}),
        ),
        (
            "certificates",
            json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": meta(CERT_MANAGER_SECRET, Some(ns), "webhook"),
            "spec": {"secretName": CERT_MANAGER_SECRET,
                     "dnsNames": [format!("{service}.{ns}.svc"), format!("{service}.{ns}.svc.{domain}")],
                     "issuerRef": {"kind": "Issuer", "name": issuer}}}),
        ),
    ]
}

/// The two webhook entries of the MutatingWebhookConfiguration without `clientConfig`, each with
/// its path (cacheblend.md §11, connection-webhook.md §5); e2e registers the same entries with
/// loopback URLs. The API server calls them in this order: for a pod opted into both, the
/// CacheBlend injector runs first and the connection injector then skips it
/// (`kv-transfer-config-present`). The configuration keeps its first name
/// (`...-cacheblend-injector`), so applying a new install.yaml updates it in place instead of
/// leaving a second configuration behind.
pub fn webhook_entries(operator_namespace: &str) -> Vec<(Value, &'static str)> {
    use lmcache_api::constants::labels;
    let entry = |name: &str, label: &str| {
        json!({
            "name": name,
            "admissionReviewVersions": ["v1"],
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "reinvocationPolicy": "Never",
            "matchPolicy": "Equivalent",
            "timeoutSeconds": 5,
            "objectSelector": {"matchLabels": {label: "true"}},
            "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                "values": ["kube-system", "kube-public", operator_namespace]}]},
        })
    };
    vec![
        (
            entry("cacheblend-injector.lmcache.ai", labels::CACHEBLEND_INJECT),
            "/mutate-cacheblend-pod",
        ),
        (
            entry("lmcache-injector.lmcache.ai", labels::LMCACHE_INJECT),
            "/mutate-lmcache-pod",
        ),
    ]
}

fn to_yaml_stream(docs: &[&Value]) -> anyhow::Result<String> {
    let mut out = String::new();
    for doc in docs {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(doc)?);
    }
    Ok(out)
}

const HEADER: &str = "# Generated by `cargo xtask manifests`; do not edit.\n";
const CERT_MANAGER_HEADER: &str =
    "# Needs cert-manager (cert-manager.io/v1) installed first; install.yaml needs nothing.\n";

pub fn run(check: bool) -> anyhow::Result<()> {
    let deploy = root().join("deploy");
    let cert_manager = documents(&Vars {
        tls: Tls::CertManager,
        ..Vars::default()
    })?;
    let all: Vec<&Value> = cert_manager.iter().map(|(_, d)| d).collect();
    let mut current = write_or_check(
        &deploy.join("install-cert-manager.yaml"),
        &format!("{HEADER}{CERT_MANAGER_HEADER}{}", to_yaml_stream(&all)?),
        check,
    )?;
    let docs = documents(&Vars::default())?;
    let all: Vec<&Value> = docs.iter().map(|(_, d)| d).collect();
    current &= write_or_check(
        &deploy.join("install.yaml"),
        &format!("{HEADER}{}", to_yaml_stream(&all)?),
        check,
    )?;
    // Kustomize layout: one file per group, in install order, plus a kustomization listing them.
    let mut groups: Vec<&str> = Vec::new();
    for (group, _) in &docs {
        if !groups.contains(group) {
            groups.push(group);
        }
    }
    let mut resources = Vec::new();
    for group in &groups {
        let members: Vec<&Value> = docs.iter().filter(|(g, _)| g == group).map(|(_, d)| d).collect();
        let file = format!("{group}.yaml");
        current &= write_or_check(
            &deploy.join("kustomize").join(&file),
            &format!("{HEADER}{}", to_yaml_stream(&members)?),
            check,
        )?;
        resources.push(file);
    }
    let kustomization = json!({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources});
    current &= write_or_check(
        &deploy.join("kustomize/kustomization.yaml"),
        &format!("{HEADER}{}", serde_saphyr::to_string(&kustomization)?),
        check,
    )?;
    current &= chart_files(&deploy.join("charts").join(PREFIX), check)?;
    if !current {
        bail!("deploy/ is stale: run `cargo xtask manifests` and commit the result");
    }
    Ok(())
}

/// The Helm chart's generated files: `Chart.yaml` (versions are the crate's) and
/// `templates/crds.yaml` (the CRDs, installed and upgraded with the chart and kept on uninstall).
/// Everything else in the chart is written by hand; `cargo xtask chart` renders it and compares
/// the result with install.yaml object by object.
fn chart_files(chart: &std::path::Path, check: bool) -> anyhow::Result<bool> {
    let version = env!("CARGO_PKG_VERSION");
    let chart_yaml = json!({
        "apiVersion": "v2",
        "name": PREFIX,
        "description": "Kubernetes operator for LMCache: KV-cache servers next to vLLM on GPU nodes, \
            a fleet coordinator, and the webhooks that wire vLLM pods to them",
        "type": "application",
        "version": version,
        "appVersion": version,
        "kubeVersion": ">=1.25.0-0",
        "keywords": ["lmcache", "vllm", "kv-cache", "operator"],
    });
    let mut current = write_or_check(
        &chart.join("Chart.yaml"),
        &format!("{HEADER}{}", serde_saphyr::to_string(&chart_yaml)?),
        check,
    )?;
    let mut crds = Vec::new();
    for crd in lmcache_api::crds() {
        let mut crd = serde_json::to_value(crd)?;
        crd["metadata"]["annotations"] = json!({"helm.sh/resource-policy": "keep"});
        crds.push(crd);
    }
    let refs: Vec<&Value> = crds.iter().collect();
    current &= write_or_check(
        &chart.join("templates/crds.yaml"),
        &format!(
            "{HEADER}{{{{- if .Values.crds.install }}}}\n{}{{{{- end }}}}\n",
            to_yaml_stream(&refs)?
        ),
        check,
    )?;
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &Vars) -> Vec<String> {
        documents(v)
            .unwrap()
            .iter()
            .map(|(_, d)| {
                format!(
                    "{}/{}",
                    d["kind"].as_str().unwrap(),
                    d["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    }

    const HEAD: [&str; 16] = [
        "Namespace/lmcache-operator-system",
        "CustomResourceDefinition/lmcacheengines.lmcache.lmcache.ai",
        "CustomResourceDefinition/cacheblendengines.lmcache.lmcache.ai",
        "CustomResourceDefinition/lmcachecoordinators.lmcache.lmcache.ai",
        "ServiceAccount/lmcache-operator-controller",
        "ServiceAccount/lmcache-operator-webhook",
        "ClusterRole/lmcache-operator-controller",
        "ClusterRole/lmcache-operator-webhook",
        "ClusterRole/lmcache-operator-edit",
        "ClusterRole/lmcache-operator-view",
        "ClusterRoleBinding/lmcache-operator-controller",
        "ClusterRoleBinding/lmcache-operator-webhook",
        "Role/lmcache-operator-leader-election",
        "RoleBinding/lmcache-operator-leader-election",
        "Role/lmcache-operator-webhook-readiness",
        "RoleBinding/lmcache-operator-webhook-readiness",
    ];
    const TAIL: [&str; 5] = [
        "Service/lmcache-operator-webhook",
        "Deployment/lmcache-operator-controller",
        "Deployment/lmcache-operator-webhook",
        "PodDisruptionBudget/lmcache-operator-webhook",
        "MutatingWebhookConfiguration/lmcache-operator-cacheblend-injector",
    ];

    #[test]
    fn the_yaml_stream_reads_back_as_the_documents() {
        for tls in [Tls::SelfManaged, Tls::CertManager] {
            let docs = documents(&Vars {
                tls,
                ..Vars::default()
            })
            .unwrap();
            let docs: Vec<&Value> = docs.iter().map(|(_, d)| d).collect();
            let read = crate::util::yaml_documents(&to_yaml_stream(&docs).unwrap()).unwrap();
            assert_eq!(read.iter().collect::<Vec<_>>(), docs);
        }
    }

    #[test]
    fn install_order_and_names() {
        let mut expected: Vec<&str> = HEAD.to_vec();
        expected.extend([
            "Role/lmcache-operator-webhook-tls",
            "RoleBinding/lmcache-operator-webhook-tls",
        ]);
        expected.extend(TAIL);
        assert_eq!(names(&Vars::default()), expected);

        let mut expected: Vec<&str> = HEAD.to_vec();
        expected.extend([
            "Issuer/lmcache-operator-selfsigned-issuer",
            "Certificate/lmcache-operator-webhook-cert",
        ]);
        expected.extend(TAIL);
        let cert_manager = Vars {
            tls: Tls::CertManager,
            ..Vars::default()
        };
        assert_eq!(names(&cert_manager), expected);
    }

    fn webhook_deployment(v: &Vars) -> Value {
        documents(v)
            .unwrap()
            .into_iter()
            .map(|(_, d)| d)
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "lmcache-operator-webhook")
            .unwrap()
    }

    #[test]
    fn self_managed_webhook_mounts_nothing_and_names_its_objects() {
        let d = webhook_deployment(&Vars::default());
        let pod = &d["spec"]["template"]["spec"];
        assert!(pod.get("volumes").is_none() && pod["containers"][0].get("volumeMounts").is_none());
        let args: Vec<&str> = pod["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        for arg in [
            "--tls=self-managed",
            "--tls-secret=lmcache-operator-webhook-tls",
            "--webhook-configuration=lmcache-operator-cacheblend-injector",
            "--service-name=lmcache-operator-webhook",
        ] {
            assert!(args.contains(&arg), "{arg} missing from {args:?}");
        }
        assert!(!args.iter().any(|a| a.starts_with("--cert-dir")));
        let text = serde_json::to_string(&documents(&Vars::default()).unwrap()).unwrap();
        assert!(!text.contains("cert-manager"));
    }

    #[test]
    fn cert_manager_webhook_mounts_the_certificate_secret() {
        let v = Vars {
            tls: Tls::CertManager,
            ..Vars::default()
        };
        let d = webhook_deployment(&v);
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"][0]["secret"]["secretName"],
            "lmcache-operator-webhook-cert"
        );
        assert_eq!(pod["containers"][0]["volumeMounts"][0]["mountPath"], CERT_DIR);
        let text = serde_json::to_string(&documents(&v).unwrap()).unwrap();
        assert!(text.contains("lmcache-operator-system/lmcache-operator-webhook-cert"));
        assert!(!text.contains("lmcache-operator-webhook-tls"));
    }

    #[test]
    fn namespace_is_one_variable() {
        for tls in [Tls::SelfManaged, Tls::CertManager] {
            let vars = Vars {
                namespace: "other-ns".into(),
                tls,
                ..Vars::default()
            };
            let text = serde_json::to_string(&documents(&vars).unwrap()).unwrap();
            assert!(!text.contains("lmcache-operator-system"));
            assert!(text.contains("other-ns"));
        }
    }

    #[test]
    fn secrets_and_the_webhook_configuration_only_by_name() {
        for tls in [Tls::SelfManaged, Tls::CertManager] {
            let text = serde_json::to_string(&webhook_rules(tls)).unwrap();
            assert!(!text.contains("configmaps") && !text.contains("secrets") && !text.contains("pods"));
        }
        let own = &webhook_rules(Tls::SelfManaged)[1];
        assert_eq!(own["resources"], json!(["mutatingwebhookconfigurations"]));
        assert_eq!(own["resourceNames"], json!([WEBHOOK_CONFIGURATION]));
        assert_eq!(own["verbs"], json!(["get", "patch"]));
        let tls = webhook_tls_rules();
        assert_eq!(tls[0]["resourceNames"], json!([SELF_MANAGED_SECRET]));
        assert_eq!(tls[0]["verbs"], json!(["get", "update"]));
        assert_eq!(tls[1]["verbs"], json!(["create"]));
        let text = serde_json::to_string(&controller_rules()).unwrap();
        assert!(!text.contains("secrets"));
    }
}
