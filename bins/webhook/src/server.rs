//! The HTTPS server: `POST /mutate-cacheblend-pod` and `POST /mutate-lmcache-pod`, HTTP 200 with
//! an allowing AdmissionReview for every review whose uid can be read.

use crate::admission::{Admitter, Verdict, readable_uid, webhook_of_path};
use crate::metrics::Metrics;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use lmcache_runtime::http::{self, ServeOptions, response};
use lmcache_runtime::{Error, Shutdown};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// Largest AdmissionReview read (the API server's own request limit is 3 MiB).
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;
/// Beyond the limit the body is still read and discarded up to this size, so the client gets
/// the answer instead of a reset; larger bodies are cut off.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
/// Time allowed to receive a whole body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound webhook server.
pub struct WebhookServer {
    listener: TcpListener,
    tls: TlsAcceptor,
    handler: Arc<Handler>,
}

impl std::fmt::Debug for WebhookServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookServer")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Handler {
    admitter: Admitter,
    metrics: Metrics,
}

impl WebhookServer {
    /// Binds `address`; `tls` comes from [`lmcache_runtime::ServingCert::server_config`].
    pub async fn bind(
        address: SocketAddr,
        tls: Arc<ServerConfig>,
        admitter: Admitter,
        metrics: Metrics,
    ) -> Result<Self, Error> {
        Ok(Self {
            listener: http::bind(address).await?,
            tls: TlsAcceptor::from(tls),
            handler: Arc::new(Handler { admitter, metrics }),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown`, then drains open connections.
    pub async fn serve(self, shutdown: Shutdown) {
        let handler = self.handler;
        let handle = move |req: Request<Incoming>| {
            let handler = handler.clone();
            async move { handler.handle(req).await }
        };
        http::serve(
            self.listener,
            Some(self.tls),
            handle,
            ServeOptions::default(),
            shutdown,
        )
        .await;
    }
}

impl Handler {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let webhook = match webhook_of_path(req.uri().path()) {
            Some(webhook) if req.method() == Method::POST => webhook,
            _ => return response(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found\n"),
        };
        let started = Instant::now();
        let verdict = match read_body(req.into_body()).await {
            Ok(body) => std::panic::catch_unwind(AssertUnwindSafe(|| self.admitter.review(webhook, &body)))
                .unwrap_or_else(|_| {
                    // Still never deny: the uid is read again outside the panicking code.
                    Verdict::unreadable(
                        webhook,
                        readable_uid(&body),
                        "internal error while handling the AdmissionReview",
                    )
                }),
            Err(message) => Verdict::unreadable(webhook, None, message),
        };
        self.metrics.observe(
            webhook,
            verdict.outcome,
            verdict.reason,
            started.elapsed().as_secs_f64(),
        );
        log(&verdict);
        let content_type = if verdict.status == StatusCode::OK {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        };
        response(verdict.status, content_type, verdict.body())
    }
}

async fn read_body(mut body: Incoming) -> Result<Vec<u8>, String> {
    let read = async {
        let mut buf = Vec::new();
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("cannot read the request body: {e}"))?;
            if let Ok(data) = frame.into_data() {
                seen = seen.saturating_add(data.len());
                if seen <= BODY_LIMIT {
                    buf.extend_from_slice(&data);
                } else if seen > DRAIN_LIMIT {
                    break;
                }
            }
        }
        if seen > BODY_LIMIT {
            Err(format!("request body larger than {BODY_LIMIT} bytes"))
        } else {
            Ok(buf)
        }
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| Err("timed out reading the request body".into()))
}

fn log(v: &Verdict) {
    use crate::metrics::outcomes;
    let note = v.note.as_deref().unwrap_or_default();
    let webhook = v.webhook.as_str();
    if matches!(
        v.outcome,
        outcomes::NOT_READY | outcomes::MALFORMED | outcomes::INVALID
    ) {
        tracing::warn!(
            webhook, uid = %v.uid, kind = "Pod", namespace = %v.namespace, name = %v.pod, engine = %v.engine,
            outcome = v.outcome, reason = v.reason, dry_run = v.dry_run, note, "admission review"
        );
    } else {
        tracing::info!(
            webhook, uid = %v.uid, kind = "Pod", namespace = %v.namespace, name = %v.pod, engine = %v.engine,
            outcome = v.outcome, reason = v.reason, dry_run = v.dry_run, note, "admission review"
        );
    }
}
