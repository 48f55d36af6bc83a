//! The hyper 1 connection loop shared by the admin server and the webhook's HTTPS server.

use crate::{Error, Shutdown};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use std::convert::Infallible;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// A listen address from a flag: `host:port`, `:port` (every IPv4 interface) or `0` (disabled),
/// the conventions of controller-runtime's `--metrics-bind-address`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindAddress {
    /// `0`: do not listen.
    Disabled,
    /// Listen here.
    Addr(SocketAddr),
}

impl BindAddress {
    /// The socket address, unless disabled.
    pub fn socket_addr(self) -> Option<SocketAddr> {
        match self {
            Self::Disabled => None,
            Self::Addr(addr) => Some(addr),
        }
    }
}

impl FromStr for BindAddress {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let invalid = || Error::InvalidBindAddress {
            address: s.to_string(),
        };
        if s == "0" {
            return Ok(Self::Disabled);
        }
        if let Some(port) = s.strip_prefix(':') {
            let port: u16 = port.parse().map_err(|_| invalid())?;
            return Ok(Self::Addr(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))));
        }
        s.parse().map(Self::Addr).map_err(|_| invalid())
    }
}

impl fmt::Display for BindAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disabled => f.write_str("0"),
            Self::Addr(addr) => addr.fmt(f),
        }
    }
}

/// Binds a TCP listener, returning (not panicking on) the error.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(address)
        .await
        .map_err(|source| Error::Bind { address, source })
}

/// Limits and timeouts of [`serve`].
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// How long a client may take to send HTTP/1 request headers (also how long an idle
    /// HTTP/1 keep-alive connection stays open).
    pub header_read_timeout: Duration,
    /// How long a client may take to finish the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// How long open connections may take to finish after shutdown was requested.
    pub drain_timeout: Duration,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// HTTP/2 PING interval; a peer that does not answer within the same time is dropped.
    pub keep_alive_interval: Duration,
    /// A connection older than this is closed gracefully after its open requests (the client
    /// reconnects), so no connection, busy or idle, lives forever.
    pub max_connection_age: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(2),
            tls_handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            max_connections: 512,
            max_concurrent_streams: 128,
            keep_alive_interval: Duration::from_secs(30),
            max_connection_age: Duration::from_secs(600),
        }
    }
}

/// Serves HTTP/1 and HTTP/2 (plain, or TLS when `tls` is set) on `listener` until `shutdown`,
/// then stops accepting, asks open connections to finish and waits for them for at most
/// `drain_timeout`.
///
/// `handler` answers every request; it cannot fail, so every error is an HTTP response.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: F,
    options: ServeOptions,
    shutdown: Shutdown,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(options.max_concurrent_streams)
        .keep_alive_interval(options.keep_alive_interval)
        .keep_alive_timeout(options.keep_alive_interval);
    // One permit per open connection: the limit, and what the drain waits for.
    let permits = Arc::new(Semaphore::new(options.max_connections));

    loop {
        let permit = tokio::select! {
            biased;
            () = shutdown.requested() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            () = shutdown.requested() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Typically EMFILE; back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let builder = builder.clone();
        let handler = handler.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req).await) }
            });
            let served = match tls {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(options.tls_handshake_timeout, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(io)) => {
                            let conn = builder.serve_connection(TokioIo::new(io), service);
                            drive(conn, options.max_connection_age, &shutdown).await
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    drive(conn, options.max_connection_age, &shutdown).await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let all = u32::try_from(options.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(options.drain_timeout, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout");
    }
}

/// Runs one connection until it ends; at `max_age` or on shutdown it is asked to finish its
/// open requests and close.
async fn drive<C: GracefulConnection>(
    conn: C,
    max_age: Duration,
    shutdown: &Shutdown,
) -> Result<(), C::Error> {
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => return result,
        () = tokio::time::sleep(max_age) => {}
        () = shutdown.requested() => {}
    }
    conn.as_mut().graceful_shutdown();
    conn.await
}

/// A response with a status, a content type and a body.
pub fn response(
    status: http::StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses() {
        assert_eq!("0".parse::<BindAddress>().unwrap(), BindAddress::Disabled);
        assert_eq!(
            ":8080".parse::<BindAddress>().unwrap(),
            BindAddress::Addr("0.0.0.0:8080".parse().unwrap())
        );
        assert_eq!(
            "127.0.0.1:9443".parse::<BindAddress>().unwrap().socket_addr(),
            Some("127.0.0.1:9443".parse().unwrap())
        );
        assert_eq!("[::1]:81".parse::<BindAddress>().unwrap().to_string(), "[::1]:81");
        for bad in ["", ":", ":http", "localhost", "1.2.3.4", ":70000"] {
            assert!(bad.parse::<BindAddress>().is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn bind_error_is_returned() {
        let first = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let taken = first.local_addr().unwrap();
        let err = bind(taken).await.unwrap_err();
        assert!(matches!(err, Error::Bind { address, .. } if address == taken));
    }

    /// Serves `ok` on a loopback port with `options`; returns the address and the stop trigger.
    async fn serve_ok(options: ServeOptions) -> (SocketAddr, crate::ShutdownTrigger) {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let handler = |_req: Request<Incoming>| async { response(http::StatusCode::OK, "text/plain", "ok") };
        tokio::spawn(serve(listener, None, handler, options, shutdown));
        (addr, trigger)
    }

    /// Sends one keep-alive HTTP/1.1 request on `stream` and reads the answer's status line.
    async fn request(stream: &mut tokio::net::TcpStream) -> std::io::Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await?;
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await??;
        Ok(String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_string())
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_wait_until_one_closes() {
        let options = ServeOptions {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(30),
            ..ServeOptions::default()
        };
        let (addr, stop) = serve_ok(options).await;
        let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(request(&mut first).await.unwrap().contains("200"));
        // The kernel accepts the second connection, the server does not serve it yet.
        let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(300), request(&mut second)).await;
        assert!(waiting.is_err(), "served beyond the limit: {waiting:?}");
        drop(first);
        assert!(request(&mut second).await.unwrap().contains("200"));
        stop.trigger();
    }

    #[tokio::test]
    async fn old_connections_are_closed_after_their_last_request() {
        let options = ServeOptions {
            max_connection_age: Duration::from_millis(200),
            header_read_timeout: Duration::from_secs(30),
            ..ServeOptions::default()
        };
        let (addr, stop) = serve_ok(options).await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(request(&mut stream).await.unwrap().contains("200"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Closed by the server: the next request gets no answer.
        let again = request(&mut stream).await;
        assert!(again.as_deref().map_or(true, str::is_empty), "{again:?}");
        stop.trigger();
    }
}
