//! `cargo xtask cluster up|down|status`: a real local control plane without Docker.
//!
//! etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as local
//! processes on 127.0.0.1 (binaries from `xtask/scripts/build-control-plane.sh`, cached outside
//! the clone). State lives in `target/cluster/`: `kubeconfig`, `pki/`, `logs/<proc>.log`,
//! `pids` and `e2e.env` (what the e2e harness reads). kwok fakes 3 GPU nodes and 1 CPU node and
//! makes bound pods Running/Ready; pods never run and nothing dials a pod or Service IP.

pub mod client;
pub mod pki;
pub mod proc;

use crate::util::root;
use anyhow::{Context, bail};
use pki::ClusterPki;
use proc::{Proc, State};
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const K8S_VERSION: &str = "v1.35.4";
pub const ETCD_VERSION: &str = "v3.6.14";
pub const KWOK_VERSION: &str = "v0.8.0";

/// Fake nodes: (name, has GPUs).
pub const NODES: [(&str, bool); 4] = [
    ("gpu-node-0", true),
    ("gpu-node-1", true),
    ("gpu-node-2", true),
    ("cpu-node-0", false),
];

/// `cargo xtask cluster <action>`.
#[derive(Clone, Copy, Debug, clap::Subcommand)]
pub enum Action {
    /// Build (once) and start the control plane; a no-op when it is already healthy.
    Up,
    /// Stop every recorded process (newest first); safe to repeat.
    Down,
    /// Print each process' state and the nodes.
    Status,
}

pub fn run(action: Action) -> anyhow::Result<()> {
    let layout = Layout::new();
    let _lock = layout.lock()?;
    match action {
        Action::Up => up(&layout).map(|_| ()),
        Action::Down => down(&layout),
        Action::Status => status(&layout),
    }
}

/// Files of the running cluster under `target/cluster/`.
pub struct Layout {
    pub dir: PathBuf,
    pub profile: Profile,
}

/// How the control plane's own controllers are tuned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// kube-controller-manager and kube-scheduler with their default client limits, as a user's
    /// cluster (tests, demo).
    Default,
    /// Client limits and DaemonSet concurrency raised so the control plane's controllers are not
    /// the bottleneck of a benchmark that means to measure the operator.
    Bench,
}

impl Profile {
    /// Flags added to kube-controller-manager.
    fn controller_manager_flags(self) -> &'static [&'static str] {
        match self {
            Self::Default => &[],
            Self::Bench => &[
                "--kube-api-qps=1000",
                "--kube-api-burst=2000",
                "--concurrent-daemonset-syncs=16",
                "--concurrent-gc-syncs=40",
            ],
        }
    }
    /// Flags added to kube-scheduler.
    fn scheduler_flags(self) -> &'static [&'static str] {
        match self {
            Self::Default => &[],
            Self::Bench => &["--kube-api-qps=1000", "--kube-api-burst=2000"],
        }
    }
    fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Bench => "bench",
        }
    }
}

impl Layout {
    pub fn new() -> Self {
        Self {
            dir: root().join("target/cluster"),
            profile: Profile::Default,
        }
    }
    /// Records the profile the running cluster was started with.
    fn profile_file(&self) -> PathBuf {
        self.dir.join("profile")
    }
    /// The admin kubeconfig (control plane, kubectl, tests).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }
    /// The kubeconfig of identity `short` (`operator`, `webhook`; see `pki::USERS`).
    pub fn kubeconfig_for(&self, short: &str) -> PathBuf {
        if short == "admin" {
            self.kubeconfig()
        } else {
            self.dir.join(format!("kubeconfig-{short}"))
        }
    }
    /// Metadata-level audit log of the operator's and the webhook's requests.
    pub fn audit_log(&self) -> PathBuf {
        self.logs().join("audit.log")
    }
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn pids(&self) -> PathBuf {
        self.dir.join("pids")
    }
    /// Processes `cargo xtask e2e` starts on top of the cluster (operator, webhook).
    pub fn e2e_pids(&self) -> PathBuf {
        self.dir.join("e2e-pids")
    }
    pub fn pki(&self) -> PathBuf {
        self.dir.join("pki")
    }
    /// Unix socket of the API server's "cluster" egress proxy (see `egress_selector`).
    pub fn egress_socket(&self) -> PathBuf {
        self.dir.join("egress.sock")
    }
    pub fn env_file(&self) -> PathBuf {
        self.dir.join("e2e.env")
    }

    /// An exclusive lock on `target/cluster.lock`, held for the whole command, so concurrent
    /// `cluster`/`e2e` invocations in one tree take turns instead of racing.
    pub fn lock(&self) -> anyhow::Result<File> {
        let parent = self.dir.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent)?;
        let path = parent.join("cluster.lock");
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                eprintln!(
                    "[cluster] waiting for {} (another cluster/e2e command runs in this tree)",
                    path.display()
                );
                file.lock()?;
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
        }
        Ok(file)
    }
}

impl Default for Layout {
    fn default() -> Self {
        Self::new()
    }
}

/// The cached control-plane binaries.
pub struct Binaries {
    pub apiserver: PathBuf,
    pub controller_manager: PathBuf,
    pub scheduler: PathBuf,
    pub kubectl: PathBuf,
    pub etcd: PathBuf,
    pub kwok: PathBuf,
    pub kwok_stages: PathBuf,
}

impl Binaries {
    pub fn locate() -> Self {
        let cache = cache_dir();
        let k8s = cache.join(format!("k8s-{K8S_VERSION}/bin"));
        let kwok = cache.join(format!("kwok-{KWOK_VERSION}"));
        Self {
            apiserver: k8s.join("kube-apiserver"),
            controller_manager: k8s.join("kube-controller-manager"),
            scheduler: k8s.join("kube-scheduler"),
            kubectl: k8s.join("kubectl"),
            etcd: cache.join(format!("etcd-{ETCD_VERSION}/etcd")),
            kwok: kwok.join("bin/kwok"),
            kwok_stages: kwok.join("stages.yaml"),
        }
    }

    /// Runs the (idempotent) build script; it returns at once when everything is cached.
    pub fn build() -> anyhow::Result<Self> {
        let started = Instant::now();
        run_build_script(
            "build-control-plane.sh",
            &[
                ("K8S_VERSION", K8S_VERSION),
                ("ETCD_VERSION", ETCD_VERSION),
                ("KWOK_VERSION", KWOK_VERSION),
            ],
        )?;
        let bins = Self::locate();
        for path in [
            &bins.apiserver,
            &bins.controller_manager,
            &bins.scheduler,
            &bins.kubectl,
            &bins.etcd,
            &bins.kwok,
            &bins.kwok_stages,
        ] {
            if !path.exists() {
                bail!("{} is missing after the build script", path.display());
            }
        }
        eprintln!(
            "[cluster] control-plane binaries ready in {:.1}s ({})",
            started.elapsed().as_secs_f64(),
            cache_dir().display()
        );
        Ok(bins)
    }
}

/// `$LMCACHE_CACHE_DIR`, else `${XDG_CACHE_HOME:-~/.cache}/lmcache-operator`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LMCACHE_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| root().join("target"));
    base.join("lmcache-operator")
}

/// Runs one of `xtask/scripts/` (idempotent builds cached under `cache_dir`) with `env`, stdin
/// closed; fails when it does.
pub fn run_build_script(script: &str, env: &[(&str, &str)]) -> anyhow::Result<()> {
    let script = root().join("xtask/scripts").join(script);
    let status = Command::new("bash")
        .arg(&script)
        .envs(env.iter().copied())
        .env("LMCACHE_CACHE_DIR", cache_dir())
        .stdin(std::process::Stdio::null())
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} failed with {status}", script.display());
    }
    Ok(())
}

/// A kubectl bound to the cluster's kubeconfig.
pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn new(layout: &Layout) -> Self {
        Self {
            bin: Binaries::locate().kubectl,
            kubeconfig: layout.kubeconfig(),
        }
    }

    /// Runs kubectl with optional stdin; never fails on a non-zero exit (see [`Self::ok`]).
    pub fn output(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Output> {
        let mut child = Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use std::io::Write;
            pipe.write_all(input.as_bytes())?;
        }
        Ok(child.wait_with_output()?)
    }

    /// Runs kubectl and returns stdout, failing with stderr on a non-zero exit.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let out = self.output(args, stdin)?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn readyz(&self) -> bool {
        self.output(&["get", "--raw=/readyz", "--request-timeout=5s"], None)
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

/// Polls `check` every 500 ms until it returns true; fails after `timeout` or when a watched
/// process dies (with the tail of its log).
pub fn wait_until(
    what: &str,
    timeout: Duration,
    watched: &[(&Proc, PathBuf)],
    mut check: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if check() {
            eprintln!("[cluster] {what} after {:.1}s", started.elapsed().as_secs_f64());
            return Ok(());
        }
        for (proc, log) in watched {
            if proc.state() == State::Gone {
                bail!(
                    "{} (pid {}) exited while waiting for {what}; last log lines ({}):\n{}",
                    proc.name,
                    proc.pid,
                    log.display(),
                    proc::log_tail(log, 30)
                );
            }
        }
        if started.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The recorded processes and whether all of them run and the apiserver is ready.
fn health(layout: &Layout) -> anyhow::Result<(Vec<Proc>, bool)> {
    let procs = proc::read_pids(&layout.pids())?;
    let all_running = !procs.is_empty() && procs.iter().all(|p| p.state() == State::Running);
    // A cluster started by an older xtask may lack files this one relies on: restart it then.
    let complete = pki::USERS
        .iter()
        .map(|(short, _)| layout.kubeconfig_for(short))
        .chain([layout.env_file()])
        .all(|path| path.exists())
        // The audit policy is read at apiserver start: a changed policy needs a restart.
        && std::fs::read_to_string(layout.pki().join("audit-policy.yaml")).is_ok_and(|p| p == AUDIT_POLICY)
        && std::fs::read_to_string(layout.profile_file()).is_ok_and(|p| p == layout.profile.name());
    if all_running && !complete {
        eprintln!("[cluster] the running cluster lacks files of this xtask version or runs another profile");
    }
    let healthy = all_running && complete && Kubectl::new(layout).readyz();
    Ok((procs, healthy))
}

/// Whether a healthy cluster is recorded in `layout`.
pub fn is_up(layout: &Layout) -> anyhow::Result<bool> {
    Ok(health(layout)?.1)
}

/// Starts the cluster unless it is already healthy; returns true when it started one.
/// The caller holds the layout lock.
pub fn up(layout: &Layout) -> anyhow::Result<bool> {
    let started = Instant::now();
    let (procs, healthy) = health(layout)?;
    if healthy {
        eprintln!(
            "[cluster] already running ({} processes); KUBECONFIG={}",
            procs.len(),
            layout.kubeconfig().display()
        );
        return Ok(false);
    }
    if !procs.is_empty() {
        eprintln!("[cluster] found a partial or unhealthy cluster; restarting it");
        down(layout)?;
    }
    let bins = Binaries::build()?;
    match start(layout, &bins) {
        Ok(()) => {
            eprintln!(
                "[cluster] up in {:.1}s\n  export KUBECONFIG={}\n  kubectl: {}",
                started.elapsed().as_secs_f64(),
                layout.kubeconfig().display(),
                bins.kubectl.display()
            );
            Ok(true)
        }
        Err(e) => {
            eprintln!("[cluster] start failed; stopping what was started (logs kept)");
            if let Err(stop) = down(layout) {
                eprintln!("[cluster] cleanup also failed: {stop:#}");
            }
            Err(e)
        }
    }
}

fn start(layout: &Layout, bins: &Binaries) -> anyhow::Result<()> {
    // Fresh state: PKI, etcd data and logs of a previous run are discarded.
    if layout.dir.exists() {
        std::fs::remove_dir_all(&layout.dir).with_context(|| format!("removing {}", layout.dir.display()))?;
    }
    std::fs::create_dir_all(layout.logs())?;
    let pki = pki::write_cluster_pki(&layout.pki())?;
    let ports = proc::free_ports(3)?;
    let (etcd_port, peer_port, api_port) = (ports[0], ports[1], ports[2]);
    for (short, _) in pki::USERS {
        let config = pki::kubeconfig(api_port, &pki, short);
        pki::write(&layout.kubeconfig_for(short), &config)?;
    }
    let audit_policy = layout.pki().join("audit-policy.yaml");
    pki::write(&audit_policy, AUDIT_POLICY)?;
    let egress = layout.pki().join("egress-selector.yaml");
    pki::write(&egress, &egress_selector(&layout.egress_socket()))?;
    std::fs::write(layout.profile_file(), layout.profile.name())?;
    let logs = layout.logs();
    let pids = layout.pids();
    let log = |name: &str| logs.join(format!("{name}.log"));

    let etcd = proc::spawn(
        "etcd",
        &bins.etcd,
        &etcd_args(&layout.dir.join("etcd"), etcd_port, peer_port),
        &[],
        &logs,
        &pids,
        true,
    )?;
    let etcd_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, etcd_port));
    wait_until(
        "etcd healthy",
        Duration::from_secs(60),
        &[(&etcd, log("etcd"))],
        || {
            proc::http_get(etcd_addr, "/health")
                .map(|(code, body)| code == 200 && body.contains("\"health\":\"true\""))
                .unwrap_or(false)
        },
    )?;

    let apiserver = proc::spawn(
        "kube-apiserver",
        &bins.apiserver,
        &[
            apiserver_args(&pki, etcd_port, api_port),
            strings(&[
                &format!("--audit-policy-file={}", audit_policy.display()),
                &format!("--audit-log-path={}", layout.audit_log().display()),
                "--audit-log-maxsize=200",
                "--audit-log-maxbackup=1",
                &format!("--egress-selector-config-file={}", egress.display()),
            ]),
        ]
        .concat(),
        &[],
        &logs,
        &pids,
        true,
    )?;
    let kubectl = Kubectl::new(layout);
    wait_until(
        "kube-apiserver ready",
        Duration::from_secs(180),
        &[(&etcd, log("etcd")), (&apiserver, log("kube-apiserver"))],
        || kubectl.readyz(),
    )?;

    let kubeconfig = layout.kubeconfig().display().to_string();
    let kcm = proc::spawn(
        "kube-controller-manager",
        &bins.controller_manager,
        &[
            controller_manager_args(&kubeconfig, &pki),
            strings(layout.profile.controller_manager_flags()),
        ]
        .concat(),
        &[],
        &logs,
        &pids,
        true,
    )?;
    let scheduler = proc::spawn(
        "kube-scheduler",
        &bins.scheduler,
        &[
            strings(&[
                &format!("--kubeconfig={kubeconfig}"),
                "--leader-elect=false",
                "--secure-port=0",
                "--v=1",
            ]),
            strings(layout.profile.scheduler_flags()),
        ]
        .concat(),
        &[],
        &logs,
        &pids,
        true,
    )?;
    let kwok = proc::spawn(
        "kwok",
        &bins.kwok,
        &strings(&[
            &format!("--kubeconfig={kubeconfig}"),
            &format!("--config={}", bins.kwok_stages.display()),
            "--manage-all-nodes=true",
            "--node-lease-duration-seconds=40",
            // Fake pod and node IPs on loopback, so even a stray dial stays on this machine.
            "--cidr=127.1.0.0/16",
            "--node-ip=127.2.0.1",
        ]),
        &[],
        &logs,
        &pids,
        true,
    )?;
    let watched = [
        (&etcd, log("etcd")),
        (&apiserver, log("kube-apiserver")),
        (&kcm, log("kube-controller-manager")),
        (&scheduler, log("kube-scheduler")),
        (&kwok, log("kwok")),
    ];

    kubectl.ok(&["create", "-f", "-"], Some(&bootstrap_objects()))?;
    kubectl.ok(
        &[
            "label",
            "namespace",
            "default",
            "pod-security.kubernetes.io/enforce=privileged",
            "--overwrite",
        ],
        None,
    )?;
    let nodes: Vec<&str> = NODES.iter().map(|(n, _)| *n).collect();
    wait_until("nodes Ready", Duration::from_secs(120), &watched, || {
        nodes_ready(&kubectl, &nodes)
    })?;
    // Fake capacity (incl. GPUs) large enough for many engines at once; set after kwok's
    // node-initialize stage, which would otherwise fill in its own defaults.
    for (name, gpu) in NODES {
        kubectl.ok(
            &[
                "patch",
                "node",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                &capacity_patch(gpu),
            ],
            None,
        )?;
    }
    wait_until(
        "not-ready taints removed and default ServiceAccount created",
        Duration::from_secs(120),
        &watched,
        || {
            kubectl
                .ok(&["get", "nodes", "-o", "jsonpath={.items[*].spec.taints}"], None)
                .map(|t| t.trim().is_empty())
                .unwrap_or(false)
                && kubectl
                    .ok(&["get", "serviceaccount", "default", "-n", "default"], None)
                    .is_ok()
        },
    )?;
    write_env_file(layout, bins)?;
    Ok(())
}

/// The API server's "cluster" egress (what it dials for Services: service-referenced webhooks,
/// aggregated APIs) goes through an HTTP CONNECT proxy on a unix socket, the local stand-in for
/// kube-proxy: `cargo xtask install-test` serves it and routes what the API server dials (a
/// Service's ClusterIP) to a pod IP in 127.1.0.0/16 (EndpointSlices cannot carry
/// loopback addresses, so `--enable-aggregator-routing` has nothing to route to). Calls to URL
/// webhooks (e2e) are "controlplane" egress and stay direct.
fn egress_selector(socket: &Path) -> String {
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
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
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

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn etcd_args(data: &Path, client: u16, peer: u16) -> Vec<String> {
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

fn apiserver_args(pki: &ClusterPki, etcd: u16, port: u16) -> Vec<String> {
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

fn controller_manager_args(kubeconfig: &str, pki: &ClusterPki) -> Vec<String> {
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

/// Nodes, the `nvidia` RuntimeClass, as one YAML list for `kubectl create`.
fn bootstrap_objects() -> String {
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

fn capacity_patch(gpu: bool) -> String {
    let gpus = if gpu { r#","nvidia.com/gpu":"8""# } else { "" };
    let resources = format!(r#"{{"cpu":"1000","memory":"64Ti","pods":"1000"{gpus}}}"#);
    format!(r#"{{"status":{{"capacity":{resources},"allocatable":{resources}}}}}"#)
}

fn nodes_ready(kubectl: &Kubectl, nodes: &[&str]) -> bool {
    let Ok(out) = kubectl.ok(
        &[
            "get",
            "nodes",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
        ],
        None,
    ) else {
        return false;
    };
    nodes
        .iter()
        .all(|n| out.lines().any(|l| l == format!("{n}=True")))
}

/// `e2e.env`: what the e2e harness needs to find the cluster without the user's KUBECONFIG.
fn write_env_file(layout: &Layout, bins: &Binaries) -> anyhow::Result<()> {
    let content = format!(
        "LMCACHE_E2E_KUBECONFIG={}\nLMCACHE_E2E_KUBECTL={}\nLMCACHE_E2E_AUDIT_LOG={}\n",
        layout.kubeconfig().display(),
        bins.kubectl.display(),
        layout.audit_log().display()
    );
    pki::write(&layout.env_file(), &content)
}

/// Stops e2e processes, then the cluster (newest first), and removes etcd data. Idempotent.
pub fn down(layout: &Layout) -> anyhow::Result<()> {
    let stopped = proc::stop_all(&layout.e2e_pids())? + proc::stop_all(&layout.pids())?;
    for path in [layout.dir.join("etcd"), layout.env_file()] {
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else if path.exists() {
            std::fs::remove_file(&path)?;
        }
    }
    if stopped == 0 {
        eprintln!("[cluster] nothing running");
    } else {
        eprintln!(
            "[cluster] stopped {stopped} processes; logs kept in {}",
            layout.logs().display()
        );
    }
    Ok(())
}

fn status(layout: &Layout) -> anyhow::Result<()> {
    let procs = proc::read_pids(&layout.pids())?;
    let e2e = proc::read_pids(&layout.e2e_pids())?;
    if procs.is_empty() && e2e.is_empty() {
        println!(
            "cluster: down (no processes recorded in {})",
            layout.pids().display()
        );
        return Ok(());
    }
    for proc in procs.iter().chain(&e2e) {
        let state = match proc.state() {
            State::Running => "running",
            State::Gone => "GONE",
        };
        println!("{:<26} pid {:<8} {state}", proc.name, proc.pid);
    }
    let kubectl = Kubectl::new(layout);
    println!("KUBECONFIG={}", layout.kubeconfig().display());
    if kubectl.readyz() {
        print!("{}", kubectl.ok(&["get", "nodes", "-o", "wide"], None)?);
    } else {
        println!("kube-apiserver: not ready");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_objects_are_a_yaml_list_of_nodes_and_the_runtime_class() {
        let list: serde_yaml::Value = serde_yaml::from_str(&bootstrap_objects()).unwrap();
        let items = list["items"].as_sequence().unwrap();
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
