//! Shared test plumbing: fixtures, certificates, an in-process server and an HTTPS client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::apps::v1::Deployment;
use lmcache_api::v1alpha1::{CacheBlendEngine, LMCacheEngine};
use lmcache_runtime::{CertFiles, ServingCert, ShutdownTrigger, shutdown};
use lmcache_webhook::{Admitter, EngineCache, Metrics, WebhookServer};
use prometheus_client::registry::Registry;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/blend-injector/tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/blend-injector/tests/fixtures")
        .join(name)
}

pub fn seed_engine() -> CacheBlendEngine {
    lmcache_blend_injector::decode_engine(serde_saphyr::from_str(&fixture("seed/engine.yaml")).unwrap())
        .unwrap()
}

/// The pod template of a Deployment fixture as the JSON object the API server would send.
pub fn template_pod_json(deployment_yaml: &str) -> Value {
    let deployment: Deployment = serde_saphyr::from_str(deployment_yaml).unwrap();
    let template = deployment.spec.unwrap().template;
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod"});
    pod["metadata"] = serde_json::to_value(template.metadata.unwrap()).unwrap();
    pod["metadata"]["namespace"] = json!("default");
    pod["metadata"]["generateName"] = json!("vllm-cacheblend-7d9c-");
    pod["spec"] = serde_json::to_value(template.spec.unwrap()).unwrap();
    pod
}

/// An `admission.k8s.io/v1` review of a pod CREATE in `namespace`.
pub fn pod_review(uid: &str, namespace: &str, pod: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "",
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lmcache-webhook-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test CA that issues `localhost`/`127.0.0.1` serving certificates.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "lmcache webhook test CA");
        Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Writes a fresh leaf pair into `dir` (tls.crt, tls.key); returns the leaf DER.
    pub fn issue_into(&self, dir: &Path) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = CertFiles::in_dir(dir);
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        cert.der().to_vec()
    }
}

/// The webhook server running in this process on 127.0.0.1.
pub struct Running {
    pub addr: SocketAddr,
    pub registry: Arc<std::sync::Mutex<Registry>>,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn start(
        cache: EngineCache<CacheBlendEngine>,
        cert_dir: &Path,
        check_interval: Duration,
    ) -> Self {
        Self::start_both(
            cache,
            EngineCache::from_engines([], "default"),
            cert_dir,
            check_interval,
        )
        .await
    }

    /// Both webhooks, each with its cache; the certificate files are followed every
    /// `check_interval`.
    pub async fn start_both(
        cacheblend: EngineCache<CacheBlendEngine>,
        lmcache: EngineCache<LMCacheEngine>,
        cert_dir: &Path,
        check_interval: Duration,
    ) -> Self {
        lmcache_runtime::install_crypto_provider();
        let files = CertFiles::in_dir(cert_dir);
        let serving = Arc::new(ServingCert::load(&files).unwrap());
        let tls = serving.clone().server_config().unwrap();
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        let server = WebhookServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            tls,
            Admitter::new(cacheblend, lmcache, "cluster.local"),
            metrics,
        )
        .await
        .unwrap();
        let addr = server.local_addr().unwrap();
        let (trigger, stop) = shutdown::channel();
        tokio::spawn(serving.follow_files(
            files,
            check_interval.max(Duration::from_millis(10)),
            stop.clone(),
        ));
        let task = tokio::spawn(server.serve(stop));
        Self {
            addr,
            registry: Arc::new(std::sync::Mutex::new(registry)),
            trigger,
            task,
        }
    }

    pub fn metrics_text(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry.lock().unwrap()).unwrap();
        text
    }

    pub async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap();
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
    pub server_cert: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One request over a new TLS connection that trusts `ca`.
pub async fn https(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Reply {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let server_cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        body,
        server_cert,
    }
}

/// Decodes the response's `patch` (`[]byte`, base64 in JSON).
pub fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("valid base64")
}

/// One POST over HTTP/2 (ALPN `h2`), as the API server sends it when the server offers h2.
pub async fn https_h2(addr: SocketAddr, ca: &CertificateDer<'static>, path: &str, body: Vec<u8>) -> Reply {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let server_cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::post(format!("https://localhost{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        body,
        server_cert,
    }
}
