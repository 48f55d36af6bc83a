//! Process plumbing shared by `lmcache-operator` and `lmcache-webhook`.
//!
//! * [`telemetry`]: one `tracing` subscriber, JSON lines (default) or plain text;
//! * [`shutdown`]: a [`Shutdown`] that resolves on SIGTERM/SIGINT (a second signal aborts);
//! * [`readiness`]: a shared [`Readiness`] made of named gates, false once draining;
//! * [`liveness`]: a shared [`Liveness`] of named checks that fail after a time limit;
//! * [`admin`]: the plain-HTTP admin server (`/live`, `/healthz`, `/ready`, `/readyz`, `/metrics`);
//! * [`http`]: the hyper 1 connection loop (plain or TLS) with graceful drain, and bind addresses;
//! * [`tls`]: a rustls `ServerConfig` whose certificate is swapped in memory when it changes.
//!
//! Call [`install_crypto_provider`] first in `main`: the workspace builds rustls with `ring` only.

pub mod admin;
pub mod http;
pub mod liveness;
pub mod process;
pub mod readiness;
pub mod shutdown;
pub mod telemetry;
pub mod tls;

pub use admin::AdminServer;
pub use http::{BindAddress, ServeOptions};
pub use liveness::{Liveness, LivenessCheck};
pub use process::{SERVICE_ACCOUNT_NAMESPACE_FILE, error_chain, own_namespace};
pub use readiness::{Readiness, ReadyGate};
pub use shutdown::{Shutdown, ShutdownTrigger};
pub use telemetry::{LogFormat, init_tracing};
pub use tls::{CertFiles, ServingCert};

use std::net::SocketAddr;
use std::path::PathBuf;

/// Errors of the runtime helpers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bind address could not be parsed.
    #[error("invalid bind address {address:?}: expected \"host:port\", \":port\" or \"0\" to disable")]
    InvalidBindAddress {
        /// The rejected text.
        address: String,
    },
    /// A listener could not be bound.
    #[error("cannot bind {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Installing a signal handler failed.
    #[error("cannot install a signal handler")]
    Signal(#[source] std::io::Error),
    /// The log filter could not be parsed or a subscriber was already installed.
    #[error("cannot initialise logging: {0}")]
    Telemetry(String),
    /// A certificate or key file could not be read.
    #[error("cannot read {path}")]
    ReadPem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key file holds no usable PEM.
    #[error("cannot parse {path}")]
    ParsePem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{path} holds no certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// rustls rejected the key pair or the configuration.
    #[error("TLS configuration rejected")]
    Tls(#[source] rustls::Error),
}

/// Installs `ring` as rustls' process-wide crypto provider. Idempotent: returns `false` when a
/// provider was already installed (which is fine as long as it is the same one).
pub fn install_crypto_provider() -> bool {
    rustls::crypto::ring::default_provider().install_default().is_ok()
}
