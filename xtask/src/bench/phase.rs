//! What every bench phase needs: where the bench keeps its files, and the release processes it
//! starts, probes and stops.

use crate::cluster::proc::{self, Proc, State};
use crate::cluster::{self, Layout};
use crate::util::target_dir;
use anyhow::{Context, bail};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the bench keeps its files and finds the release binaries.
pub struct Paths {
    pub out: PathBuf,
    pub logs: PathBuf,
    pub pids: PathBuf,
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Paths {
    pub fn new(layout: &Layout) -> anyhow::Result<Self> {
        let out = target_dir().join("bench");
        let exe = std::env::current_exe().context("locating the xtask binary")?;
        Ok(Self {
            logs: out.join("logs"),
            pids: out.join("pids"),
            out,
            bin: exe.parent().map(Path::to_path_buf).unwrap_or_default(),
            kubeconfig: layout.kubeconfig(),
        })
    }
}

/// Addresses of a product process' admin endpoints.
pub struct Admin {
    pub metrics: SocketAddr,
    pub health: SocketAddr,
}

impl Admin {
    pub fn new() -> anyhow::Result<Self> {
        let ports = proc::free_ports(2)?;
        Ok(Self {
            metrics: SocketAddr::from((Ipv4Addr::LOCALHOST, ports[0])),
            health: SocketAddr::from((Ipv4Addr::LOCALHOST, ports[1])),
        })
    }
}

/// Starts release binary `program` with its output in `target/bench/logs/<name>.log`.
pub fn spawn(
    paths: &Paths,
    name: &str,
    program: &str,
    args: &[String],
    extra_env: &[(&str, &str)],
) -> anyhow::Result<Proc> {
    let mut env = vec![
        ("KUBECONFIG", paths.kubeconfig.display().to_string()),
        ("RUST_LOG", String::new()),
    ];
    env.extend(extra_env.iter().map(|(key, value)| (*key, value.to_string())));
    // Each product binary is in its release profile's directory next to xtask's.
    let dir = match crate::release::image::profile_of(program) {
        "release" => paths.bin.clone(),
        profile => paths.bin.with_file_name(profile),
    };
    proc::spawn(
        name,
        &dir.join(program),
        args,
        &env,
        &paths.logs,
        &paths.pids,
        false,
    )
}

/// Waits until `/readyz` answers 200 (blocking: call through `spawn_blocking`).
pub async fn wait_ready(paths: &Paths, proc: &Proc, health: SocketAddr) -> anyhow::Result<()> {
    let log = paths.logs.join(format!("{}.log", proc.name));
    let proc = proc.clone();
    tokio::task::spawn_blocking(move || {
        cluster::wait_until(
            &format!("{} ready", proc.name),
            Duration::from_secs(90),
            &[(&proc, log)],
            || matches!(proc::http_get(health, "/readyz"), Ok((200, _))),
        )
    })
    .await?
}

/// The parsed `/metrics` of a local process.
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<Vec<crate::bench::stats::Sample>> {
    let (code, body) = tokio::task::spawn_blocking(move || proc::http_get(addr, "/metrics")).await??;
    if code != 200 {
        bail!("GET {addr}/metrics answered {code}");
    }
    Ok(crate::bench::stats::parse_samples(&body))
}

/// Stops a process started by [`spawn`].
pub async fn stop(proc: Proc) {
    let _ = tokio::task::spawn_blocking(move || {
        if proc.state() == State::Running {
            proc.stop(Duration::from_secs(10));
        }
    })
    .await;
}
