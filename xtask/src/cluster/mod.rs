//! `cargo xtask cluster up|down|status`: a real local control plane without Docker.
//!
//! etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as local
//! processes on 127.0.0.1 (binaries from `xtask/scripts/build-control-plane.sh`, cached outside
//! the clone). State lives in `target/cluster/`: `kubeconfig`, `pki/`, `logs/<proc>.log`,
//! `pids` and `e2e.env` (what the e2e harness reads). kwok fakes 3 GPU nodes and 1 CPU node and
//! makes bound pods Running/Ready; pods never run and nothing dials a pod or Service IP.

pub mod client;
mod config;
pub mod pki;
pub mod proc;

pub use config::NODES;

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
    /// The API server's audit policy (read at its start).
    fn audit_policy(&self) -> PathBuf {
        self.pki().join("audit-policy.yaml")
    }
    /// The API server's egress selector configuration (see `config::egress_selector`).
    fn egress_selector(&self) -> PathBuf {
        self.pki().join("egress-selector.yaml")
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

    /// Server-side applies `manifest` (YAML on stdin) as `field_manager`, taking over fields
    /// another manager holds (a rerun against a kept cluster must not conflict with itself).
    pub fn force_apply(&self, field_manager: &str, manifest: &str) -> anyhow::Result<String> {
        let field_manager = format!("--field-manager={field_manager}");
        self.ok(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                &field_manager,
                "-f",
                "-",
            ],
            Some(manifest),
        )
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
        && std::fs::read_to_string(layout.audit_policy()).is_ok_and(|p| p == config::AUDIT_POLICY)
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

/// The etcd client, etcd peer and apiserver ports of a fresh cluster.
struct Ports {
    etcd: u16,
    peer: u16,
    api: u16,
}

fn start(layout: &Layout, bins: &Binaries) -> anyhow::Result<()> {
    let (pki, ports) = fresh_state(layout)?;
    let etcd_args = config::etcd_args(&layout.dir.join("etcd"), ports.etcd, ports.peer);
    let mut started = vec![spawn(layout, "etcd", &bins.etcd, &etcd_args)?];
    let etcd_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, ports.etcd));
    wait_until(
        "etcd healthy",
        Duration::from_secs(60),
        &watching(&started),
        || {
            proc::http_get(etcd_addr, "/health")
                .map(|(code, body)| code == 200 && body.contains("\"health\":\"true\""))
                .unwrap_or(false)
        },
    )?;
    let apiserver_args = apiserver_args(layout, &pki, &ports);
    started.push(spawn(layout, "kube-apiserver", &bins.apiserver, &apiserver_args)?);
    let kubectl = Kubectl::new(layout);
    wait_until(
        "kube-apiserver ready",
        Duration::from_secs(180),
        &watching(&started),
        || kubectl.readyz(),
    )?;
    started.extend(start_controllers(layout, bins, &pki)?);
    bootstrap(&kubectl, &watching(&started))?;
    write_env_file(layout, bins)?;
    Ok(())
}

/// Fresh state: PKI, etcd data and logs of a previous run are discarded. Writes a new PKI, a
/// kubeconfig per identity, the apiserver's audit policy and egress configuration and the
/// profile; returns the PKI and the ports picked.
fn fresh_state(layout: &Layout) -> anyhow::Result<(ClusterPki, Ports)> {
    if layout.dir.exists() {
        std::fs::remove_dir_all(&layout.dir).with_context(|| format!("removing {}", layout.dir.display()))?;
    }
    std::fs::create_dir_all(layout.logs())?;
    let cluster_pki = pki::write_cluster_pki(&layout.pki())?;
    let ports = proc::free_ports(3)?;
    let ports = Ports {
        etcd: ports[0],
        peer: ports[1],
        api: ports[2],
    };
    for (short, _) in pki::USERS {
        let config = pki::kubeconfig(ports.api, &cluster_pki, short);
        pki::write(&layout.kubeconfig_for(short), &config)?;
    }
    pki::write(&layout.audit_policy(), config::AUDIT_POLICY)?;
    pki::write(
        &layout.egress_selector(),
        &config::egress_selector(&layout.egress_socket()),
    )?;
    std::fs::write(layout.profile_file(), layout.profile.name())?;
    Ok((cluster_pki, ports))
}

/// Starts a control-plane process in its own process group, recorded in `pids`, with its
/// output in `logs/<name>.log`; returns it with that log.
fn spawn(layout: &Layout, name: &str, program: &Path, args: &[String]) -> anyhow::Result<(Proc, PathBuf)> {
    let logs = layout.logs();
    let proc = proc::spawn(name, program, args, &[], &logs, &layout.pids(), true)?;
    Ok((proc, logs.join(format!("{name}.log"))))
}

/// The started processes as [`wait_until`] watches them.
fn watching(started: &[(Proc, PathBuf)]) -> Vec<(&Proc, PathBuf)> {
    started.iter().map(|(proc, log)| (proc, log.clone())).collect()
}

/// kube-apiserver's flags, with the audit and egress files of `layout`.
fn apiserver_args(layout: &Layout, pki: &ClusterPki, ports: &Ports) -> Vec<String> {
    [
        config::apiserver_args(pki, ports.etcd, ports.api),
        config::strings(&[
            &format!("--audit-policy-file={}", layout.audit_policy().display()),
            &format!("--audit-log-path={}", layout.audit_log().display()),
            "--audit-log-maxsize=200",
            "--audit-log-maxbackup=1",
            &format!(
                "--egress-selector-config-file={}",
                layout.egress_selector().display()
            ),
        ]),
    ]
    .concat()
}

/// kube-controller-manager, kube-scheduler (both tuned by the layout's profile) and kwok.
fn start_controllers(
    layout: &Layout,
    bins: &Binaries,
    pki: &ClusterPki,
) -> anyhow::Result<Vec<(Proc, PathBuf)>> {
    let kubeconfig = layout.kubeconfig().display().to_string();
    let profile = layout.profile;
    let kcm_args = [
        config::controller_manager_args(&kubeconfig, pki),
        config::strings(profile.controller_manager_flags()),
    ]
    .concat();
    let scheduler_args = [
        config::scheduler_args(&kubeconfig),
        config::strings(profile.scheduler_flags()),
    ]
    .concat();
    Ok(vec![
        spawn(
            layout,
            "kube-controller-manager",
            &bins.controller_manager,
            &kcm_args,
        )?,
        spawn(layout, "kube-scheduler", &bins.scheduler, &scheduler_args)?,
        spawn(
            layout,
            "kwok",
            &bins.kwok,
            &config::kwok_args(&kubeconfig, &bins.kwok_stages),
        )?,
    ])
}

/// Creates the fake nodes and the RuntimeClass, lets the default namespace run privileged pods,
/// and waits until the nodes are Ready with their capacity and the default ServiceAccount exists.
fn bootstrap(kubectl: &Kubectl, watched: &[(&Proc, PathBuf)]) -> anyhow::Result<()> {
    kubectl.ok(&["create", "-f", "-"], Some(&config::bootstrap_objects()))?;
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
    wait_until("nodes Ready", Duration::from_secs(120), watched, || {
        nodes_ready(kubectl, &nodes)
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
                &config::capacity_patch(gpu),
            ],
            None,
        )?;
    }
    wait_until(
        "not-ready taints removed and default ServiceAccount created",
        Duration::from_secs(120),
        watched,
        || {
            kubectl
                .ok(&["get", "nodes", "-o", "jsonpath={.items[*].spec.taints}"], None)
                .map(|t| t.trim().is_empty())
                .unwrap_or(false)
                && kubectl
                    .ok(&["get", "serviceaccount", "default", "-n", "default"], None)
                    .is_ok()
        },
    )
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
