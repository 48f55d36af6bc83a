//! The local cluster's Service routing for the API server: an HTTP CONNECT proxy on the unix
//! socket the API server's "cluster" egress selector dials (`cluster::config::egress_selector`).
//!
//! The API server calls a service-referenced webhook at the Service's ClusterIP and port
//! (verifying the certificate for `<service>.<namespace>.svc`); in a real cluster kube-proxy
//! takes that to a ready endpoint. Here the proxy does it: it finds the Service, reads
//! the Service (port -> targetPort, selector), lists the selected pods that are Running with a
//! pod IP and not being deleted, resolves a named targetPort through the pod's container ports,
//! and connects to the first candidate (in random order) that accepts: a process that is not
//! listening yet is skipped, as a not-ready endpoint would be. TLS stays end to end between the
//! API server and the webhook process. Only 127.0.0.0/8 is ever dialled.

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Client;
use kube::api::{Api, ListParams};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};

/// Connections routed per pod IP:port, and failures, for the test's report.
#[derive(Debug, Default)]
pub struct Routed {
    pub by_endpoint: BTreeMap<String, u64>,
    pub failures: Vec<String>,
}

/// Serves the proxy on `socket` until the task is aborted.
pub fn start(
    client: Client,
    socket: &Path,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, Arc<Mutex<Routed>>)> {
    if socket.exists() {
        std::fs::remove_file(socket)?;
    }
    let listener = UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
    let routed = Arc::new(Mutex::new(Routed::default()));
    let stats = routed.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            let (client, stats) = (client.clone(), stats.clone());
            tokio::spawn(async move {
                if let Err(e) = handle(conn, client, stats.clone()).await {
                    let failure = format!("{e:#}");
                    eprintln!("[egress] {failure}");
                    lock(&stats).failures.push(failure);
                }
            });
        }
    });
    Ok((task, routed))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn handle(mut conn: UnixStream, client: Client, stats: Arc<Mutex<Routed>>) -> anyhow::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || conn.read(&mut byte).await? == 0 {
            bail!("CONNECT request head incomplete");
        }
        head.push(byte[0]);
    }
    let target = connect_target(&String::from_utf8_lossy(&head)).context("not a CONNECT request")?;
    match connect(&client, &target).await {
        Ok((mut upstream, endpoint)) => {
            conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await?;
            *lock(&stats).by_endpoint.entry(endpoint).or_default() += 1;
            // Either side closing ends the tunnel; resets are normal when the API server drops
            // an idle connection.
            let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
            Ok(())
        }
        Err(e) => {
            let _ = conn
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                .await;
            Err(e.context(format!("routing {target}")))
        }
    }
}

/// The `host:port` of an HTTP CONNECT request head.
fn connect_target(head: &str) -> Option<String> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some("CONNECT"), Some(target), Some(version)) if version.starts_with("HTTP/1.") => {
            Some(target.to_string())
        }
        _ => None,
    }
}

/// The Service a target names: its ClusterIP (what kube-apiserver dials for a service
/// reference; the TLS server name stays `<service>.<namespace>.svc`) or its DNS name.
async fn service(client: &Client, host: &str) -> anyhow::Result<Service> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        let all = Api::<Service>::all(client.clone())
            .list(&ListParams::default())
            .await?;
        return all
            .items
            .into_iter()
            .find(|s| s.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some(ip.to_string().as_str()))
            .with_context(|| format!("no Service has the ClusterIP {ip}"));
    }
    let mut labels = host.split('.');
    let (Some(service), Some(namespace), Some("svc")) = (labels.next(), labels.next(), labels.next()) else {
        bail!("{host} is neither a ClusterIP nor a Service name (<service>.<namespace>.svc)");
    };
    Api::<Service>::namespaced(client.clone(), namespace)
        .get(service)
        .await
        .with_context(|| format!("reading Service {namespace}/{service}"))
}

/// `<ClusterIP>:port` or `service.namespace.svc[.domain]:port` -> a connected stream to a
/// selected pod.
async fn connect(client: &Client, target: &str) -> anyhow::Result<(TcpStream, String)> {
    let (host, port) = target.rsplit_once(':').context("target without port")?;
    let port: i32 = port.parse()?;
    let svc = service(client, host.trim_matches(|c| c == '[' || c == ']')).await?;
    let namespace = svc.metadata.namespace.clone().unwrap_or_default();
    let service = svc.metadata.name.clone().unwrap_or_default();
    let namespace = namespace.as_str();
    let service = service.as_str();
    let spec = svc.spec.context("Service without spec")?;
    let svc_port = spec
        .ports
        .iter()
        .flatten()
        .find(|p| p.port == port)
        .with_context(|| format!("Service {namespace}/{service} has no port {port}"))?;
    let target_port = svc_port.target_port.clone().unwrap_or(IntOrString::Int(port));
    let selector = spec.selector.unwrap_or_default();
    if selector.is_empty() {
        bail!("Service {namespace}/{service} has no selector");
    }
    let selector: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(&selector.join(",")))
        .await?;
    let mut candidates: Vec<SocketAddr> = Vec::new();
    for pod in &pods.items {
        let status = pod.status.as_ref();
        if pod.metadata.deletion_timestamp.is_some()
            || status.and_then(|s| s.phase.as_deref()) != Some("Running")
        {
            continue;
        }
        let Some(ip) = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .filter(IpAddr::is_loopback)
        else {
            continue;
        };
        let number = match &target_port {
            IntOrString::Int(n) => Some(*n),
            IntOrString::String(name) => pod.spec.as_ref().and_then(|s| {
                s.containers
                    .iter()
                    .flat_map(|c| c.ports.iter().flatten())
                    .find(|p| p.name.as_deref() == Some(name.as_str()))
                    .map(|p| p.container_port)
            }),
        };
        if let Some(n) = number.and_then(|n| u16::try_from(n).ok()) {
            candidates.push(SocketAddr::new(ip, n));
        }
    }
    // Random order, as kube-proxy spreads connections over endpoints.
    let offset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as usize)
        .unwrap_or(0);
    let n = candidates.len();
    for i in 0..n {
        let addr = candidates[(offset + i) % n];
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
            return Ok((stream, addr.to_string()));
        }
    }
    bail!("no endpoint of Service {namespace}/{service} accepts connections ({n} candidates)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_requests_name_their_target_and_nothing_else_is_one() {
        // What kube-apiserver's egress dialer sends.
        let head = "CONNECT 10.0.0.124:443 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        assert_eq!(connect_target(head).as_deref(), Some("10.0.0.124:443"));
        assert_eq!(
            connect_target("CONNECT svc.ns.svc:443 HTTP/1.0\r\n\r\n").as_deref(),
            Some("svc.ns.svc:443")
        );
        assert_eq!(connect_target("GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(connect_target("CONNECT\r\n\r\n"), None);
    }
}
