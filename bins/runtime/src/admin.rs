//! The plain-HTTP admin server: liveness, readiness and Prometheus metrics.
//!
//! | Path | Answer |
//! |---|---|
//! | `/live`, `/healthz` | 200 unless a [`Liveness`] check has failed for too long (500) |
//! | `/ready`, `/readyz` | 200 when [`Readiness`] is ready, else 503 with the reasons |
//! | `/metrics` | the registry in the OpenMetrics text format |
//!
//! Every path is served on every bound address, so one server covers both
//! `--metrics-bind-address` and `--health-probe-bind-address`.

use crate::http::{self, BindAddress, ServeOptions, response};
use crate::{Error, Liveness, Readiness, Shutdown};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

const TEXT: &str = "text/plain; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Bound admin listeners, ready to [`serve`](AdminServer::serve).
#[derive(Debug)]
pub struct AdminServer {
    listeners: Vec<TcpListener>,
    state: Arc<State>,
}

struct State {
    registry: Arc<Registry>,
    readiness: Readiness,
    liveness: Liveness,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

impl AdminServer {
    /// Binds every enabled address once (duplicates are bound once). Bind errors are returned.
    pub async fn bind(
        addresses: &[BindAddress],
        registry: Arc<Registry>,
        readiness: Readiness,
    ) -> Result<Self, Error> {
        Self::bind_with_liveness(addresses, registry, readiness, Liveness::new()).await
    }

    /// [`bind`](Self::bind) with liveness checks behind `/healthz`.
    pub async fn bind_with_liveness(
        addresses: &[BindAddress],
        registry: Arc<Registry>,
        readiness: Readiness,
        liveness: Liveness,
    ) -> Result<Self, Error> {
        let mut wanted: Vec<SocketAddr> = Vec::new();
        for address in addresses.iter().filter_map(|a| a.socket_addr()) {
            if !wanted.contains(&address) {
                wanted.push(address);
            }
        }
        let mut listeners = Vec::with_capacity(wanted.len());
        for address in wanted {
            listeners.push(http::bind(address).await?);
        }
        Ok(Self {
            listeners,
            state: Arc::new(State {
                registry,
                readiness,
                liveness,
            }),
        })
    }

    /// The bound addresses (the tests bind port 0).
    #[cfg(test)]
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown`, then drains. Returns at once when every address is disabled.
    pub async fn serve(self, shutdown: Shutdown) {
        let servers = self.listeners.into_iter().map(|listener| {
            let state = self.state.clone();
            let handler = move |req: Request<Incoming>| {
                let state = state.clone();
                async move { handle(&state, &req) }
            };
            http::serve(listener, None, handler, ServeOptions::default(), shutdown.clone())
        });
        futures_join_all(servers).await;
    }
}

async fn futures_join_all<F: Future<Output = ()> + Send + 'static>(futures: impl Iterator<Item = F>) {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    for handle in handles {
        if let Err(error) = handle.await {
            tracing::error!(%error, "admin server task failed");
        }
    }
}

fn handle(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return response(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n");
    }
    match req.uri().path() {
        "/live" | "/healthz" => {
            let problems = state.liveness.problems();
            if problems.is_empty() {
                response(StatusCode::OK, TEXT, "ok\n")
            } else {
                let body = format!("unhealthy: {}\n", problems.join(", "));
                response(StatusCode::INTERNAL_SERVER_ERROR, TEXT, body)
            }
        }
        "/ready" | "/readyz" => {
            let reasons = state.readiness.not_ready_reasons();
            if reasons.is_empty() {
                response(StatusCode::OK, TEXT, "ready\n")
            } else {
                let body = format!("not ready: {}\n", reasons.join(", "));
                response(StatusCode::SERVICE_UNAVAILABLE, TEXT, body)
            }
        }
        "/metrics" => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
                Ok(()) => response(StatusCode::OK, OPENMETRICS, body),
                Err(_) => response(StatusCode::INTERNAL_SERVER_ERROR, TEXT, "cannot encode metrics\n"),
            }
        }
        _ => response(StatusCode::NOT_FOUND, TEXT, "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown;
    use http_body_util::{BodyExt, Empty};
    use prometheus_client::metrics::counter::Counter;
    use tokio::net::TcpStream;

    async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn probes_and_metrics_on_two_addresses() {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        registry.register("test_requests", "Test counter", counter.clone());
        counter.inc();
        let readiness = Readiness::new();
        let gate = readiness.gate("cache");
        let any: BindAddress = "127.0.0.1:0".parse().unwrap();
        let server = AdminServer::bind(
            &[any, BindAddress::Disabled, any],
            Arc::new(registry),
            readiness.clone(),
        )
        .await
        .unwrap();
        // 127.0.0.1:0 twice is one listener: port 0 is the same wanted address.
        let addrs = server.local_addrs();
        assert_eq!(addrs.len(), 1);
        let (trigger, shutdown) = shutdown::channel();
        let task = tokio::spawn(server.serve(shutdown));
        let addr = addrs[0];

        assert_eq!(get(addr, "/live").await.0, StatusCode::OK);
        assert_eq!(get(addr, "/healthz").await.0, StatusCode::OK);
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("cache"), "{body}");
        gate.set(true);
        assert_eq!(get(addr, "/ready").await.0, StatusCode::OK);
        assert_eq!(get(addr, "/readyz").await.0, StatusCode::OK);
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("test_requests_total 1"), "{body}");
        assert_eq!(get(addr, "/nope").await.0, StatusCode::NOT_FOUND);
        readiness.set_draining();
        assert_eq!(get(addr, "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(get(addr, "/healthz").await.0, StatusCode::OK);

        trigger.trigger();
        task.await.unwrap();
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "listener closed after shutdown"
        );
    }

    #[tokio::test]
    async fn separate_addresses_and_disabled() {
        let a: BindAddress = "127.0.0.1:0".parse().unwrap();
        let b: BindAddress = "127.0.0.2:0".parse().unwrap();
        let server = AdminServer::bind(&[a, b], Arc::default(), Readiness::new())
            .await
            .unwrap();
        assert_eq!(server.local_addrs().len(), 2);
        let none = AdminServer::bind(&[BindAddress::Disabled], Arc::default(), Readiness::new())
            .await
            .unwrap();
        assert!(none.local_addrs().is_empty());
        let (_trigger, shutdown) = shutdown::channel();
        none.serve(shutdown).await;
    }
}
