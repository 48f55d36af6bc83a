//! Product processes a test runs itself (the `alone_*` phase of `cargo xtask e2e`, where the
//! shared operator and webhook are stopped), and a loopback TCP proxy a test can pause.

use crate::settings;
use anyhow::Context;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A product process, killed when dropped. Its output goes to `<logs>/<name>.log`.
pub struct Process {
    name: String,
    child: Child,
}

impl Process {
    /// Starts `bin` (a binary of the product's debug build) with `args` and `env`.
    pub fn start(name: &str, bin: &str, args: &[String], env: &[(&str, String)]) -> anyhow::Result<Self> {
        let program = settings::bin_dir()?.join(bin);
        let log_path = settings::logs()?.join(format!("{name}.log"));
        let log =
            std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new(&program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Self {
            name: name.to_string(),
            child,
        })
    }

    /// The operator (`lmcache-operator run`) as its install.yaml ServiceAccount, serving its
    /// health endpoint on `health`, with a kubeconfig (`KUBECONFIG`) and extra flags.
    pub fn operator(
        name: &str,
        kubeconfig: &Path,
        health: SocketAddr,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut args = vec![
            "run".to_string(),
            format!("--health-probe-bind-address={health}"),
            "--log-format=plain".to_string(),
        ];
        // No metrics listener unless a test asks for one.
        if !extra.iter().any(|a| a.starts_with("--metrics-bind-address")) {
            args.push("--metrics-bind-address=0".to_string());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        Self::start(
            name,
            "lmcache-operator",
            &args,
            &[
                ("KUBECONFIG", kubeconfig.display().to_string()),
                ("POD_NAMESPACE", settings::operator_namespace()),
                ("RUST_LOG", "info".to_string()),
            ],
        )
    }

    /// The webhook exactly as `cargo xtask e2e` ran it (same port, certificate and
    /// MutatingWebhookConfiguration).
    pub fn webhook() -> anyhow::Result<Self> {
        let args: Vec<String> = serde_json::from_str(&settings::required("LMCACHE_E2E_WEBHOOK_ARGS")?)?;
        Self::start(
            "exclusive-webhook",
            "lmcache-webhook",
            &args,
            &[
                (
                    "KUBECONFIG",
                    settings::webhook_kubeconfig()?.display().to_string(),
                ),
                ("POD_NAMESPACE", settings::operator_namespace()),
                ("RUST_LOG", "info".to_string()),
            ],
        )
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The log so far.
    pub fn log(&self) -> String {
        settings::logs()
            .map(|dir| dir.join(format!("{}.log", self.name)))
            .and_then(|p| Ok(std::fs::read_to_string(p)?))
            .unwrap_or_default()
    }

    /// SIGTERM, then wait (at most `grace`, then kill).
    pub fn stop(mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free loopback port (bound and released; good enough for a test's own processes).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?)
}

/// A loopback TCP proxy in front of `upstream` that a test can pause: while paused, new
/// connections are refused and open ones are cut, as when a node loses its network.
pub struct Proxy {
    addr: SocketAddr,
    paused: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        settings::ensure_loopback(upstream)?;
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let paused = Arc::new(AtomicBool::new(false));
        let flag = paused.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    let _ = client.shutdown().await;
                    continue;
                }
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                    let cut = async {
                        while !flag.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    };
                    tokio::select! {
                        _ = copy => {}
                        () = cut => {}
                    }
                });
            }
        });
        Ok(Self { addr, paused, task })
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every connection and refuses new ones until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    /// Lets connections through again.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A copy of `kubeconfig` whose server is `server` (`https://127.0.0.1:PORT`), written next to
/// the test's logs.
pub fn kubeconfig_via(kubeconfig: &Path, server: SocketAddr, name: &str) -> anyhow::Result<PathBuf> {
    settings::ensure_loopback(server)?;
    let text =
        std::fs::read_to_string(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
    let mut doc: serde_json::Value = serde_saphyr::from_str(&text)?;
    let clusters = doc
        .get_mut("clusters")
        .and_then(serde_json::Value::as_array_mut)
        .context("kubeconfig has no clusters")?;
    for cluster in clusters {
        if let Some(c) = cluster
            .get_mut("cluster")
            .and_then(serde_json::Value::as_object_mut)
        {
            c.insert("server".into(), format!("https://{server}").into());
            // The API server's certificate names 127.0.0.1, which the proxy also is.
        }
    }
    let path = settings::logs()?.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, serde_saphyr::to_string(&doc)?)?;
    Ok(path)
}

/// The API server's address from a kubeconfig (`https://127.0.0.1:PORT`).
pub fn api_server(kubeconfig: &Path) -> anyhow::Result<SocketAddr> {
    let text = std::fs::read_to_string(kubeconfig)?;
    let doc: serde_json::Value = serde_saphyr::from_str(&text)?;
    let server = doc["clusters"][0]["cluster"]["server"]
        .as_str()
        .context("kubeconfig without a server")?;
    let addr: SocketAddr = server
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("server {server} is not https://host:port"))?;
    settings::ensure_loopback(addr)?;
    Ok(addr)
}

/// `GET path` on a loopback address: the HTTP status, or `None` when nothing answers.
pub fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    if settings::ensure_loopback(addr).is_err() {
        return None;
    }
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}
