//! The install test's kubelet stand-in: runs the product's pods, scheduled by the real scheduler
//! onto kwok nodes, as local processes made from the built OCI image archives.
//!
//! For every pod of the watched namespace that is bound to a node, has its (kwok-assigned,
//! loopback) pod IP and is not being deleted, the runner starts the image's entrypoint (or the
//! container's `command`) with the container's `args` and `env`, as the kubelet would:
//!
//! * the binary is the one in the image archive's layer (`target/images/<name>.tar`), unpacked
//!   once; the image reference must match an archive (`lmcache/<name>:<version>`);
//! * `env` values and the `fieldRef`s the product uses (`metadata.name`, `metadata.namespace`,
//!   `status.podIP`, `spec.nodeName`, `spec.serviceAccountName`) are resolved; `HOSTNAME` is the
//!   pod name; the image's `Env` is applied first, with `SSL_CERT_FILE` pointing into the
//!   unpacked image;
//! * the pod's ServiceAccount credentials are a TokenRequest token, given to the process as a
//!   kubeconfig (`KUBECONFIG`) instead of the projected token file (a process cannot mount it at
//!   /var/run/secrets);
//! * Secret volumes are written to a directory per pod and the container's `args` that name the
//!   mount path are pointed at that directory (mounts cannot be made without namespaces);
//! * **bind addresses**: every replica shares this host, so `--*-bind-address=:PORT` flags are
//!   bound to the pod IP (`<podIP>:PORT`), and the webhook gets `--bind-address=<podIP>`; this is
//!   the one change to what the pod asks for.
//!
//! Deleting a pod stops its process with SIGTERM and, after the pod's grace period, SIGKILL; a
//! process that exits while its pod exists is restarted after 2 s (restartPolicy Always) and
//! counted. A pod given the IP of a pod whose process is still draining (kwok reuses IPs at
//! once) starts when that process is gone. Pod status is kwok's (it marks pods Running and Ready at once); the test waits for the
//! processes' own `/readyz` before relying on them.

use crate::cluster::{Kubectl, Layout};
use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec, Secret};
use kube::api::Api;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An image unpacked from its OCI archive.
#[derive(Clone, Debug)]
pub struct Image {
    pub rootfs: PathBuf,
    pub entrypoint: Vec<String>,
    pub env: Vec<(String, String)>,
}

fn blob<'a>(files: &'a HashMap<String, Vec<u8>>, digest: &str) -> anyhow::Result<&'a [u8]> {
    let hex = digest.strip_prefix("sha256:").context("digest without sha256:")?;
    files
        .get(&format!("blobs/sha256/{hex}"))
        .map(Vec::as_slice)
        .with_context(|| format!("blob {digest} missing"))
}

/// Unpacks the single-platform OCI archive `archive` (index -> manifest -> config and layers)
/// into `dir`.
pub fn unpack(archive: &Path, dir: &Path) -> anyhow::Result<Image> {
    let mut files = HashMap::new();
    let mut tar = tar::Archive::new(
        std::fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?,
    );
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        files.insert(path, bytes);
    }
    let index: Value = serde_json::from_slice(files.get("index.json").context("no index.json")?)?;
    let manifest: Value = serde_json::from_slice(blob(
        &files,
        index["manifests"][0]["digest"]
            .as_str()
            .context("index without manifest")?,
    )?)?;
    let config: Value = serde_json::from_slice(blob(
        &files,
        manifest["config"]["digest"]
            .as_str()
            .context("manifest without config")?,
    )?)?;
    let rootfs = dir.join("rootfs");
    if rootfs.exists() {
        std::fs::remove_dir_all(&rootfs)?;
    }
    std::fs::create_dir_all(&rootfs)?;
    for layer in manifest["layers"].as_array().context("manifest without layers")? {
        let gz = flate2::read::GzDecoder::new(blob(
            &files,
            layer["digest"].as_str().context("layer without digest")?,
        )?);
        tar::Archive::new(gz).unpack(&rootfs)?;
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let env = strings(&config["config"]["Env"])
        .into_iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    Ok(Image {
        rootfs,
        entrypoint: strings(&config["config"]["Entrypoint"]),
        env,
    })
}

/// What the runner did, for the test's assertions and report.
#[derive(Debug, Default)]
pub struct Stats {
    /// Pod name -> processes started for it (1 unless it was restarted).
    pub starts: BTreeMap<String, u32>,
    /// Pods the runner could not start, with the reason.
    pub failures: Vec<String>,
}

struct Running {
    name: String,
    ip: String,
    child: Child,
    grace: Duration,
    restart_at: Option<Instant>,
}

/// Runs the pods of `namespace` until the returned handle is dropped or `stop` is called.
pub struct Runner {
    pub stats: Arc<Mutex<Stats>>,
    task: tokio::task::JoinHandle<()>,
    running: Arc<Mutex<HashMap<String, Running>>>,
}

impl Runner {
    pub fn start(client: Client, layout: &Layout, namespace: &str, images: HashMap<String, Image>) -> Self {
        let stats = Arc::new(Mutex::new(Stats::default()));
        let running: Arc<Mutex<HashMap<String, Running>>> = Arc::new(Mutex::new(HashMap::new()));
        let work = layout.dir.join("pods");
        let ctx = Arc::new(Shared {
            client: client.clone(),
            layout_dir: layout.dir.clone(),
            logs: layout.logs(),
            work,
            images,
            stats: stats.clone(),
            running: running.clone(),
            draining: Arc::default(),
            failed: Mutex::default(),
            namespace: namespace.to_string(),
        });
        let task = tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(client, &ctx.namespace);
            let mut events = watcher(pods, watcher::Config::default()).boxed();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut known: HashMap<String, Pod> = HashMap::new();
            loop {
                tokio::select! {
                    event = events.next() => match event {
                        Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => {
                            known.insert(pod.name_any(), pod.clone());
                            ctx.observe(&pod).await;
                        }
                        Some(Ok(watcher::Event::Delete(pod))) => {
                            known.remove(&pod.name_any());
                            ctx.stop(&pod.name_any());
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => eprintln!("[pod-runner] watch: {e}"),
                        None => break,
                    },
                    _ = tick.tick() => ctx.restart_exited(&known).await,
                }
            }
        });
        Self { stats, task, running }
    }

    /// Stops every process (SIGTERM, then SIGKILL after its grace period).
    pub fn stop(self) {
        self.task.abort();
        let names: Vec<String> = lock(&self.running).keys().cloned().collect();
        for name in names {
            if let Some(run) = lock(&self.running).remove(&name) {
                terminate(run);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn terminate(mut run: Running) {
    let _ = Command::new("kill")
        .args(["-TERM", &run.child.id().to_string()])
        .status();
    let deadline = Instant::now() + run.grace;
    while Instant::now() < deadline {
        if matches!(run.child.try_wait(), Ok(Some(_))) {
            eprintln!("[pod-runner] {} stopped", run.name);
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = run.child.kill();
    let _ = run.child.wait();
    eprintln!("[pod-runner] {} killed after its grace period", run.name);
}

struct Shared {
    client: Client,
    layout_dir: PathBuf,
    logs: PathBuf,
    work: PathBuf,
    images: HashMap<String, Image>,
    stats: Arc<Mutex<Stats>>,
    running: Arc<Mutex<HashMap<String, Running>>>,
    /// Pod IPs whose process is still shutting down. kwok hands a deleted pod's IP to the next
    /// pod at once; on one host the new process would find the port taken (in a cluster each
    /// pod has its own network namespace), so it starts once the old one is gone.
    draining: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Pods that could not be started, reported once.
    failed: Mutex<std::collections::HashSet<String>>,
    namespace: String,
}

impl Shared {
    async fn observe(&self, pod: &Pod) {
        let name = pod.name_any();
        if pod.metadata.deletion_timestamp.is_some() {
            self.stop(&name);
            return;
        }
        let scheduled = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        if !scheduled || ip.is_none() || lock(&self.running).contains_key(&name) {
            return;
        }
        if ip.as_ref().is_some_and(|ip| lock(&self.draining).contains(ip)) {
            return;
        }
        match self.spawn(pod).await {
            Ok(child) => {
                let grace = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
                    .unwrap_or(30);
                *lock(&self.stats).starts.entry(name.clone()).or_default() += 1;
                eprintln!(
                    "[pod-runner] started {name} on {} (pid {})",
                    ip.as_deref().unwrap_or_default(),
                    child.id()
                );
                lock(&self.running).insert(
                    name.clone(),
                    Running {
                        name,
                        ip: ip.clone().unwrap_or_default(),
                        child,
                        grace: Duration::from_secs(grace.max(1) as u64),
                        restart_at: None,
                    },
                );
            }
            Err(e) => {
                if lock(&self.failed).insert(name.clone()) {
                    let failure = format!("{name}: {e:#}");
                    eprintln!("[pod-runner] cannot start {failure}");
                    lock(&self.stats).failures.push(failure);
                }
            }
        }
    }

    fn stop(&self, name: &str) {
        let run = lock(&self.running).remove(name);
        if let Some(run) = run {
            let draining = self.draining.clone();
            lock(&draining).insert(run.ip.clone());
            // Off the watch loop: a grace period must not hold up other pods' events.
            std::thread::spawn(move || {
                let ip = run.ip.clone();
                terminate(run);
                lock(&draining).remove(&ip);
            });
        }
    }

    /// restartPolicy Always: a process that exited while its pod exists is started again 2 s
    /// later.
    async fn restart_exited(&self, known: &HashMap<String, Pod>) {
        let mut due = Vec::new();
        {
            let mut running = lock(&self.running);
            for (name, run) in running.iter_mut() {
                if let Ok(Some(status)) = run.child.try_wait() {
                    match run.restart_at {
                        None => {
                            eprintln!("[pod-runner] {name} exited ({status}); restarting in 2 s");
                            run.restart_at = Some(Instant::now() + Duration::from_secs(2));
                        }
                        Some(at) if Instant::now() >= at => due.push(name.clone()),
                        Some(_) => {}
                    }
                }
            }
            for name in &due {
                running.remove(name);
            }
        }
        for name in due {
            if let Some(pod) = known.get(&name) {
                self.observe(pod).await;
            }
        }
        // Pods that waited for a draining IP (and any other not yet started).
        for pod in known.values() {
            if !lock(&self.failed).contains(&pod.name_any()) {
                self.observe(pod).await;
            }
        }
    }

    async fn spawn(&self, pod: &Pod) -> anyhow::Result<Child> {
        let name = pod.name_any();
        let spec = pod.spec.as_ref().context("pod without spec")?;
        let container: &Container = spec.containers.first().context("pod without containers")?;
        let image_ref = container.image.as_deref().unwrap_or_default();
        let image = self
            .images
            .get(image_ref)
            .with_context(|| format!("no image archive for {image_ref}"))?;
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .context("no pod IP")?;
        if !ip.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback()) {
            bail!("pod IP {ip} is not loopback: the runner only binds 127.0.0.0/8");
        }
        let dir = self.work.join(&name);
        std::fs::create_dir_all(&dir)?;
        let args = self.mount_secrets(spec, container, &dir).await?;
        let args = bind_to(&args, &ip, image_ref.contains("lmcache-webhook"));

        let argv: Vec<String> = match &container.command {
            Some(command) if !command.is_empty() => command.clone(),
            _ => image.entrypoint.clone(),
        };
        let program = argv.first().context("no entrypoint")?;
        let program = image.rootfs.join(program.trim_start_matches('/'));

        let sa = spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into());
        let kubeconfig = self.token_kubeconfig(&sa)?;

        let mut command = Command::new(&program);
        command.env_clear();
        for (k, v) in &image.env {
            let v = if k == "SSL_CERT_FILE" {
                image.rootfs.join(v.trim_start_matches('/')).display().to_string()
            } else {
                v.clone()
            };
            command.env(k, v);
        }
        command.env("HOSTNAME", &name);
        command.env("KUBECONFIG", &kubeconfig);
        let field = |path: &str| match path {
            "metadata.name" => Some(name.clone()),
            "metadata.namespace" => Some(self.namespace.clone()),
            "status.podIP" => Some(ip.clone()),
            "spec.nodeName" => Some(spec.node_name.clone().unwrap_or_default()),
            "spec.serviceAccountName" => Some(sa.clone()),
            _ => None,
        };
        for var in container.env.iter().flatten() {
            command.env(&var.name, env_value(var, &field)?);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("pod-{name}.log")))?;
        command
            .args(&argv[1..])
            .args(&args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        command
            .spawn()
            .with_context(|| format!("starting {}", program.display()))
    }

    /// Writes the Secret volumes `container` mounts to `dir/volumes/<volume>/`; returns its args
    /// with each mount path pointed at that directory.
    async fn mount_secrets(
        &self,
        spec: &PodSpec,
        container: &Container,
        dir: &Path,
    ) -> anyhow::Result<Vec<String>> {
        let mut args = container.args.clone().unwrap_or_default();
        for mount in container.volume_mounts.iter().flatten() {
            let volume = spec
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == mount.name)
                .with_context(|| format!("volume {} not declared", mount.name))?;
            let secret_name = volume
                .secret
                .as_ref()
                .and_then(|s| s.secret_name.clone())
                .with_context(|| format!("volume {}: only Secret volumes are supported", mount.name))?;
            let secret = Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
                .get(&secret_name)
                .await
                .with_context(|| format!("reading Secret {secret_name} for volume {}", mount.name))?;
            let target = dir.join("volumes").join(&mount.name);
            std::fs::create_dir_all(&target)?;
            for (key, value) in secret.data.iter().flatten() {
                std::fs::write(target.join(key), &value.0)?;
            }
            let path = target.display().to_string();
            for arg in &mut args {
                *arg = arg.replace(&mount.mount_path, &path);
            }
        }
        Ok(args)
    }

    /// A kubeconfig with a TokenRequest token of ServiceAccount `sa`: the pod's credentials.
    fn token_kubeconfig(&self, sa: &str) -> anyhow::Result<PathBuf> {
        let layout = Layout {
            dir: self.layout_dir.clone(),
            ..Layout::new()
        };
        let kubectl = Kubectl::new(&layout);
        crate::e2e::rbac::token_kubeconfig(&layout, &kubectl, &self.namespace, sa)
    }
}

/// A container env var's value: its `value`, or the pod field its `fieldRef` names (`field`).
fn env_value(var: &EnvVar, field: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    match (&var.value, &var.value_from) {
        (Some(v), _) => Ok(v.clone()),
        (None, Some(from)) => {
            let path = from
                .field_ref
                .as_ref()
                .map(|f| f.field_path.as_str())
                .with_context(|| format!("env {}: only fieldRef is supported", var.name))?;
            field(path).with_context(|| format!("env {}: fieldRef {path} is not supported", var.name))
        }
        (None, None) => Ok(String::new()),
    }
}

/// The container's args with every `--*-bind-address=:PORT` bound to the pod IP, and
/// `--bind-address=<ip>` for the webhook's HTTPS listener.
pub fn bind_to(args: &[String], ip: &str, webhook: bool) -> Vec<String> {
    let mut out: Vec<String> = args
        .iter()
        .map(|arg| match arg.split_once("-bind-address=:") {
            Some((flag, port)) if flag.starts_with("--") => format!("{flag}-bind-address={ip}:{port}"),
            _ => arg.clone(),
        })
        .collect();
    if webhook {
        out.push(format!("--bind-address={ip}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses_move_to_the_pod_ip_and_nothing_else_changes() {
        let args: Vec<String> = [
            "serve",
            "--port=9443",
            "--metrics-bind-address=:8080",
            "--health-probe-bind-address=:8081",
            "--cluster-domain=cluster.local",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            bind_to(&args, "127.1.0.7", true),
            [
                "serve",
                "--port=9443",
                "--metrics-bind-address=127.1.0.7:8080",
                "--health-probe-bind-address=127.1.0.7:8081",
                "--cluster-domain=cluster.local",
                "--bind-address=127.1.0.7",
            ]
        );
        assert_eq!(bind_to(&args[..1], "127.1.0.7", false), ["serve"]);
    }
}
