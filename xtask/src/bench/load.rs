//! The webhook load generator (open-loop, fixed rate, HTTP/2 over TLS like the API server's
//! webhook client) and the floor server it is compared with (a TLS server that answers every
//! request with a canned AdmissionReview). Loopback only.

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// What the floor server answers, whatever it is sent.
pub const CANNED_REVIEW: &str =
    r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}"#;

/// Flags of the hidden `xtask bench-floor` command (spawned by `cargo xtask bench`).
#[derive(Debug, clap::Args)]
pub struct FloorArgs {
    /// Port on 127.0.0.1.
    #[arg(long)]
    port: u16,
    /// Directory with tls.crt and tls.key.
    #[arg(long)]
    cert_dir: PathBuf,
}

/// Installs ring as the process-wide rustls provider (a second call is harmless).
pub fn install_crypto_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}

/// `xtask bench-floor`: serves the canned review until killed.
pub fn serve_floor(args: FloorArgs) -> anyhow::Result<()> {
    install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, args.port)).await?;
        run_floor_server(listener, server_config(&args.cert_dir)?).await
    })
}

/// A TLS server config (ALPN h2, http/1.1) from `dir/tls.crt` and `dir/tls.key`.
pub fn server_config(dir: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let crt = std::fs::read(dir.join("tls.crt")).context("reading tls.crt")?;
    let key = std::fs::read(dir.join("tls.key")).context("reading tls.key")?;
    let chain = CertificateDer::pem_slice_iter(&crt).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(&key)?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TLS connections and answers every request with [`CANNED_REVIEW`] after reading the
/// whole body (as any real handler must).
pub async fn run_floor_server(listener: TcpListener, tls: Arc<ServerConfig>) -> anyhow::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let _ = req.into_body().collect().await;
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(CANNED_REVIEW.as_bytes())))
                        .unwrap_or_default(),
                )
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// An HTTP/2 connection over TLS to a loopback server.
#[derive(Clone)]
pub struct H2Client {
    sender: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    authority: String,
}

impl H2Client {
    /// Connects to `addr` (127.0.0.0/8 only), trusting `ca_pem`, and negotiates h2.
    pub async fn connect(addr: SocketAddr, ca_pem: &str) -> anyhow::Result<Self> {
        if !addr.ip().is_loopback() {
            bail!("refusing to connect to {addr}: benchmarks only dial 127.0.0.0/8");
        }
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let mut config = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost")?, tcp)
            .await
            .with_context(|| format!("TLS handshake with {addr}"))?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            bail!("{addr} did not negotiate HTTP/2");
        }
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            authority: addr.to_string(),
        })
    }

    /// POSTs `body` to `path`; returns the status and the response body.
    pub async fn post(&mut self, path: &str, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
        let req = Request::post(format!("https://{}{path}", self.authority))
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// One fixed-rate run.
#[derive(Clone, Debug, Default)]
pub struct LoadRun {
    /// Requests scheduled.
    pub sent: u64,
    /// Answered with 200 and `"allowed":true`.
    pub ok: u64,
    /// Transport errors, other statuses or other bodies.
    pub failed: u64,
    /// Latency of every good answer from its scheduled start (so a late send counts), in µs.
    pub latencies_us: Vec<u64>,
    /// Wall time from the first scheduled send to the last answer.
    pub elapsed: Duration,
}

impl LoadRun {
    /// Answers per second over the run.
    pub fn achieved_rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.ok as f64 / secs } else { 0.0 }
    }
}

/// Sends `rate` requests per second for `duration`, open loop: request `i` is due at
/// `start + i / rate` whether or not earlier ones were answered, so a slow server queues
/// requests instead of slowing the generator down.
pub async fn run_fixed_rate(
    client: &H2Client,
    path: &str,
    body: Bytes,
    rate: u32,
    duration: Duration,
) -> anyhow::Result<LoadRun> {
    if rate == 0 {
        bail!("the rate must be positive");
    }
    let total = (u64::from(rate) * duration.as_millis() as u64 / 1000).max(1);
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let mut client = client.clone();
        let body = body.clone();
        let path = path.to_string();
        tasks.spawn(async move {
            let answer = client.post(&path, body).await;
            let latency = due.elapsed();
            match answer {
                Ok((200, body)) if contains(&body, b"\"allowed\":true") => Some(latency),
                _ => None,
            }
        });
    }
    let mut run = LoadRun {
        sent: total,
        ..LoadRun::default()
    };
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Some(latency)) => {
                run.ok += 1;
                run.latencies_us.push(latency.as_micros() as u64);
            }
            _ => run.failed += 1,
        }
    }
    run.elapsed = start.elapsed();
    Ok(run)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Waits until something accepts TCP connections on `addr`.
pub async fn wait_listening(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while TcpStream::connect(addr).await.is_err() {
        if started.elapsed() > timeout {
            bail!("nothing listens on {addr} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::pki::{self, Ca};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn load_generator_against_the_floor_server_over_h2() {
        install_crypto_provider();
        let dir = std::env::temp_dir().join(format!("xtask-bench-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Ca::new("bench-test-ca").unwrap();
        let (crt, key) = ca.serving("bench-floor").unwrap();
        pki::write(&dir.join("tls.crt"), &crt).unwrap();
        pki::write(&dir.join("tls.key"), &key).unwrap();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(run_floor_server(listener, server_config(&dir).unwrap()));
        wait_listening(addr, Duration::from_secs(5)).await.unwrap();

        let mut client = H2Client::connect(addr, &ca.pem()).await.unwrap();
        let (status, body) = client.post("/x", Bytes::from_static(b"{}")).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, CANNED_REVIEW.as_bytes());

        let run = run_fixed_rate(
            &client,
            "/x",
            Bytes::from_static(b"{}"),
            200,
            Duration::from_millis(250),
        )
        .await
        .unwrap();
        assert_eq!(run.sent, 50);
        assert_eq!(run.ok, 50, "{run:?}");
        assert_eq!(run.failed, 0);
        assert_eq!(run.latencies_us.len(), 50);
        // Open loop: 50 requests at 200/s take at least the 245 ms of scheduling.
        assert!(run.elapsed >= Duration::from_millis(245), "{:?}", run.elapsed);
        server.abort();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn only_loopback_is_dialled() {
        let err = H2Client::connect("10.0.0.1:443".parse().unwrap(), "")
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("127.0.0.0/8"), "{err}");
    }

    #[test]
    fn canned_review_is_an_allowing_admission_review() {
        let review: serde_json::Value = serde_json::from_str(CANNED_REVIEW).unwrap();
        assert_eq!(review["kind"], "AdmissionReview");
        assert_eq!(review["response"]["allowed"], true);
        assert!(contains(CANNED_REVIEW.as_bytes(), b"\"allowed\":true"));
    }
}
