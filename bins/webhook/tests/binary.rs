//! The real binary: startup wiring, probes, not-ready admission and SIGTERM, all on 127.0.0.1.
//! The API server in the kubeconfig is a closed local port, so the engine cache never syncs (and
//! self-managed TLS never gets its Secret).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use lmcache_webhook::MUTATE_PATH;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;
use tokio::net::TcpStream;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.ok()?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn serves_probes_answers_not_ready_and_stops_on_sigterm() {
    let dir = TempDir::new("binary");
    let ca = TestCa::new();
    ca.issue_into(&dir.0);
    let closed = free_port();
    let kubeconfig = dir.0.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{closed}'}}}}]\nusers: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    let (port, health, metrics) = (free_port(), free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_lmcache-webhook"))
        .args([
            "serve",
            "--bind-address",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(["--tls", "files", "--cert-dir"])
        .arg(&dir.0)
        .args(["--metrics-bind-address", &format!("127.0.0.1:{metrics}")])
        .args(["--health-probe-bind-address", &format!("127.0.0.1:{health}")])
        .args(["--shutdown-delay-seconds", "0"])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Bounded wait for the listeners (not a timing assertion).
    let mut up = None;
    for _ in 0..200 {
        up = get(health, "/healthz").await;
        if up.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.map(|r| r.0), Some(200), "health endpoint never came up");
    let (status, body) = get(health, "/readyz").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("cacheblendengine-cache") && body.contains("lmcacheengine-cache"),
        "{body}"
    );

    // The admission listener is bound after the probe listener; under load it can lag.
    let admission: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(admission).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let review = pod_review(
        "uid-1",
        "default",
        template_pod_json(&fixture("seed/deployment.yaml")),
    );
    let reply = https(
        admission,
        &ca.der(),
        "POST",
        MUTATE_PATH,
        serde_json::to_vec(&review).unwrap(),
    )
    .await;
    let answer = reply.json();
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["uid"], "uid-1");
    assert!(answer["response"].get("patch").is_none());
    let (_, text) = get(metrics, "/metrics").await.unwrap();
    assert!(
        text.contains(
            r#"lmcache_webhook_admission_total{webhook="cacheblend",outcome="not_ready",reason=""} 1"#
        ),
        "{text}"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "exit {:?}", out.status);
    let logs = String::from_utf8_lossy(&out.stdout);
    // JSON lines with the review's fields.
    let line = logs
        .lines()
        .find(|l| l.contains("\"uid\":\"uid-1\""))
        .unwrap_or_else(|| panic!("no review log line in\n{logs}"));
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["outcome"], "not_ready");
    assert_eq!(line["namespace"], "default");
    assert_eq!(line["name"], "vllm-cacheblend-7d9c-");
    assert_eq!(line["engine"], "my-cacheblend");
    assert!(logs.contains("shutdown requested"), "{logs}");
}

#[tokio::test]
async fn self_managed_tls_is_unready_without_a_certificate() {
    let dir = TempDir::new("binary-self-managed");
    let closed = free_port();
    let kubeconfig = dir.0.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{closed}'}}}}]\nusers: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u}}}}]\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    let (port, health) = (free_port(), free_port());
    // The default mode is self-managed.
    let child = Command::new(env!("CARGO_BIN_EXE_lmcache-webhook"))
        .args(["--bind-address", "127.0.0.1", "--port", &port.to_string()])
        .args(["--metrics-bind-address", "0"])
        .args(["--health-probe-bind-address", &format!("127.0.0.1:{health}")])
        .args(["--shutdown-delay-seconds", "0", "--log-format", "plain"])
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", "ops")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let mut up = None;
    for _ in 0..200 {
        up = get(health, "/healthz").await;
        if up.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(up.map(|r| r.0), Some(200), "health endpoint never came up");
    let (status, body) = get(health, "/readyz").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("serving-certificate"), "{body}");
    // No certificate, no HTTPS listener.
    assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
    // Let the first pass fail against the closed API port (it fails at once) and log it.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "exit {:?}", out.status);
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains("self-managed TLS"), "{logs}");
    assert!(logs.contains("no serving certificate yet"), "{logs}");
}
