//! What the control-plane processes are started with and what the cluster is bootstrapped with:
//! their command lines, the audit policy, the egress selector configuration and the fake nodes.

use super::pki::ClusterPki;
use std::path::Path;

/// Fake nodes: (name, has GPUs).
pub const NODES: [(&str, bool); 4] = [
    ("gpu-node-0", true),
    ("gpu-node-1", true),
    ("gpu-node-2", true),
    ("cpu-node-0", false),
];

/// The API server's "cluster" egress (what it dials for Services: service-referenced webhooks,
/// aggregated APIs) goes through an HTTP CONNECT proxy on a unix socket, the local stand-in for
/// kube-proxy: `cargo xtask install-test` serves it and routes what the API server dials (a
/// Service's ClusterIP) to a pod IP in 127.1.0.0/16 (EndpointSlices cannot carry
/// loopback addresses, so `--enable-aggregator-routing` has nothing to route to). Calls to URL
/// webhooks (e2e) are "controlplane" egress and stay direct.
pub fn egress_selector(socket: &Path) -> String {
    format!(
        "apiVersion: apiserver.k8s.io/v1beta1\nkind: EgressSelectorConfiguration\negressSelections:\n\
         - name: cluster\n  connection:\n    proxyProtocol: HTTPConnect\n    transport:\n      \
         uds:\n        udsName: {}\n",
        socket.display()
    )
}

/// Audits only the product's identities: the client-cert users and the install.yaml
/// ServiceAccounts e2e runs the processes as (Metadata level, one event per request), so tests can
/// count the requests the operator or the webhook sends (e.g. behaviour F101).
pub const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    users:
      - lmcache-e2e-operator
      - lmcache-e2e-webhook
      - system:serviceaccount:lmcache-e2e-system:lmcache-operator-controller
      - system:serviceaccount:lmcache-e2e-system:lmcache-operator-webhook
  - level: None
";

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

pub fn etcd_args(data: &Path, client: u16, peer: u16) -> Vec<String> {
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    strings(&[
        "--name=e2e",
        &format!("--data-dir={}", data.display()),
        &format!("--listen-client-urls={client_url}"),
        &format!("--advertise-client-urls={client_url}"),
        &format!("--listen-peer-urls={peer_url}"),
        &format!("--initial-advertise-peer-urls={peer_url}"),
        &format!("--initial-cluster=e2e={peer_url}"),
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ])
}

pub fn apiserver_args(pki: &ClusterPki, etcd: u16, port: u16) -> Vec<String> {
    strings(&[
        &format!("--etcd-servers=http://127.0.0.1:{etcd}"),
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        // The `kubernetes` Endpoints would carry 127.0.0.1, which Endpoints validation rejects.
        "--endpoint-reconciler-type=none",
        &format!("--secure-port={port}"),
        &format!("--tls-cert-file={}", pki.apiserver_crt.display()),
        &format!("--tls-private-key-file={}", pki.apiserver_key.display()),
        &format!("--client-ca-file={}", pki.ca_crt.display()),
        "--authorization-mode=RBAC",
        &format!("--service-account-issuer=https://127.0.0.1:{port}"),
        &format!("--service-account-key-file={}", pki.sa_pub.display()),
        &format!("--service-account-signing-key-file={}", pki.sa_key.display()),
        // Never dialled: only ClusterIPs are allocated from it.
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        // As envtest: no token volumes injected; the serviceaccount controller still creates
        // `default` ServiceAccounts, and TokenRequest works for RBAC tests.
        "--disable-admission-plugins=ServiceAccount",
        "--profiling=false",
        "--v=1",
    ])
}

pub fn controller_manager_args(kubeconfig: &str, pki: &ClusterPki) -> Vec<String> {
    strings(&[
        &format!("--kubeconfig={kubeconfig}"),
        "--leader-elect=false",
        "--secure-port=0",
        // What the product's behaviours rely on, as in a real cluster: pods of a deleted node
        // are collected (podgc), PodDisruptionBudgets get a status (disruption, for evictions),
        // Services get EndpointSlices, ResourceQuotas get their usage.
        "--controllers=daemonset-controller,replicaset-controller,deployment-controller,\
         garbage-collector-controller,namespace-controller,node-lifecycle-controller,\
         serviceaccount-controller,pod-garbage-collector-controller,disruption-controller,\
         endpointslice-controller,resourcequota-controller",
        &format!("--root-ca-file={}", pki.ca_crt.display()),
        &format!("--service-account-private-key-file={}", pki.sa_key.display()),
        "--v=1",
    ])
}

pub fn scheduler_args(kubeconfig: &str) -> Vec<String> {
    strings(&[
        &format!("--kubeconfig={kubeconfig}"),
        "--leader-elect=false",
        "--secure-port=0",
        "--v=1",
    ])
}

pub fn kwok_args(kubeconfig: &str, stages: &Path) -> Vec<String> {
    strings(&[
        &format!("--kubeconfig={kubeconfig}"),
        &format!("--config={}", stages.display()),
        "--manage-all-nodes=true",
        "--node-lease-duration-seconds=40",
        // Fake pod and node IPs on loopback, so even a stray dial stays on this machine.
        "--cidr=127.1.0.0/16",
        "--node-ip=127.2.0.1",
    ])
}

/// Nodes, the `nvidia` RuntimeClass, as one YAML list for `kubectl create`.
pub fn bootstrap_objects() -> String {
    let mut items = String::new();
    for (name, gpu) in NODES {
        let gpu_label = if gpu {
            "\n      nvidia.com/gpu.present: \"true\""
        } else {
            ""
        };
        items.push_str(&format!(
            "- apiVersion: v1\n  kind: Node\n  metadata:\n    name: {name}\n    labels:\n      \
             e2e.kwok/fake: \"true\"\n      kubernetes.io/hostname: {name}\n      \
             kubernetes.io/os: linux\n      kubernetes.io/arch: amd64{gpu_label}\n    \
             annotations:\n      node.alpha.kubernetes.io/ttl: \"0\"\n      \
             kwok.x-k8s.io/node: fake\n  spec: {{}}\n"
        ));
    }
    items.push_str(
        "- apiVersion: node.k8s.io/v1\n  kind: RuntimeClass\n  metadata:\n    name: nvidia\n  \
         handler: runc\n",
    );
    format!("apiVersion: v1\nkind: List\nitems:\n{items}")
}

pub fn capacity_patch(gpu: bool) -> String {
    let gpus = if gpu { r#","nvidia.com/gpu":"8""# } else { "" };
    let resources = format!(r#"{{"cpu":"1000","memory":"64Ti","pods":"1000"{gpus}}}"#);
    format!(r#"{{"status":{{"capacity":{resources},"allocatable":{resources}}}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_objects_are_a_yaml_list_of_nodes_and_the_runtime_class() {
        let list: serde_json::Value = serde_saphyr::from_str(&bootstrap_objects()).unwrap();
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 5);
        let gpu: Vec<&str> = items
            .iter()
            .filter(|i| i["metadata"]["labels"]["nvidia.com/gpu.present"] == "true")
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(gpu, ["gpu-node-0", "gpu-node-1", "gpu-node-2"]);
        assert_eq!(items[4]["kind"], "RuntimeClass");
        assert_eq!(items[4]["handler"], "runc");
    }

    #[test]
    fn capacity_patch_is_json_with_gpus_only_on_gpu_nodes() {
        let gpu: serde_json::Value = serde_json::from_str(&capacity_patch(true)).unwrap();
        assert_eq!(gpu["status"]["allocatable"]["nvidia.com/gpu"], "8");
        let cpu: serde_json::Value = serde_json::from_str(&capacity_patch(false)).unwrap();
        assert!(cpu["status"]["capacity"].get("nvidia.com/gpu").is_none());
    }

    #[test]
    fn every_listen_and_advertise_flag_is_loopback() {
        let pki = ClusterPki::in_dir(Path::new("/p"));
        let args = [etcd_args(Path::new("/d"), 1, 2), apiserver_args(&pki, 1, 3)].concat();
        for arg in args.iter().filter(|a| a.contains("://") || a.contains("address")) {
            assert!(arg.contains("127.0.0.1"), "{arg}");
        }
    }
}
