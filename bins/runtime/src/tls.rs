//! Serving certificates: an in-memory key pair the TLS handshake reads without I/O, and the
//! ways it is replaced.
//!
//! The handshake only clones an `Arc` under a read lock ([`ServingCert::current`]); nothing is
//! read from disk while a client waits. The pair changes through [`ServingCert::update`]: from
//! files ([`ServingCert::follow_files`], a background task — cert-manager renews the Secret and
//! the kubelet swaps the mounted files through a `..data` symlink, which defeats inotify, so the
//! files are compared by content every interval) or from a Secret the webhook manages itself.
//! A new pair is swapped in only if it parses and the key matches the certificate; otherwise the
//! last good pair keeps serving.

use crate::{Error, Shutdown, error_chain};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

/// Default interval between two looks at the files (the spec requires at most 60 s).
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Where the PEM certificate chain and private key live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl CertFiles {
    /// `tls.crt` and `tls.key` in `dir` (the layout of a `kubernetes.io/tls` Secret volume).
    pub fn in_dir(dir: impl AsRef<Path>) -> Self {
        Self {
            cert: dir.as_ref().join("tls.crt"),
            key: dir.as_ref().join("tls.key"),
        }
    }
}

/// The serving key pair, swapped atomically; a [`ResolvesServerCert`].
#[derive(Debug)]
pub struct ServingCert {
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The PEM bytes of `current`, to tell a changed pair from the same one.
    pem: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl ServingCert {
    /// A store serving the PEM pair (failing fast on a bad pair).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = parse_pair("certificate", "key", cert_pem, key_pem, &provider)?;
        Ok(Self {
            provider,
            current: RwLock::new(Arc::new(key)),
            pem: Mutex::new((cert_pem.to_vec(), key_pem.to_vec())),
        })
    }

    /// A store serving the pair in `files` now.
    pub fn load(files: &CertFiles) -> Result<Self, Error> {
        let (cert_pem, key_pem) = read_pair(files)?;
        Self::from_pem(&cert_pem, &key_pem).map_err(|e| with_paths(e, files))
    }

    /// The key pair to serve (no I/O).
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Serves the PEM pair from now on if it differs and is valid. `Ok(true)` when swapped,
    /// `Ok(false)` when unchanged; on `Err` the last good pair stays.
    pub fn update(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<bool, Error> {
        let mut pem = self.pem.lock().unwrap_or_else(PoisonError::into_inner);
        if pem.0 == cert_pem && pem.1 == key_pem {
            return Ok(false);
        }
        let key = parse_pair("certificate", "key", cert_pem, key_pem, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        *pem = (cert_pem.to_vec(), key_pem.to_vec());
        Ok(true)
    }

    /// Re-reads `files` once: swaps in a changed valid pair, keeps the last good one otherwise
    /// (a half-written pair — new cert, old key — is retried at the next look).
    pub fn reload_files(&self, files: &CertFiles) {
        let result = read_pair(files).and_then(|(cert, key)| self.update(&cert, &key));
        match result.map_err(|e| with_paths(e, files)) {
            Ok(true) => tracing::info!(cert = %files.cert.display(), "serving certificate reloaded"),
            Ok(false) => {}
            Err(error) => tracing::warn!(error = %error_chain(&error), "keeping the last good certificate"),
        }
    }

    /// Looks at `files` every `interval` until `shutdown` (run as its own task).
    pub async fn follow_files(self: Arc<Self>, files: CertFiles, interval: Duration, shutdown: Shutdown) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                () = shutdown.requested() => return,
                _ = ticker.tick() => {}
            }
            let store = self.clone();
            let files = files.clone();
            // Small files, but still blocking I/O: off the runtime's worker threads.
            let _ = tokio::task::spawn_blocking(move || store.reload_files(&files)).await;
        }
    }

    /// A TLS 1.2+ server configuration (ALPN `h2`, `http/1.1`) that serves this store's key.
    pub fn server_config(self: Arc<Self>) -> Result<Arc<ServerConfig>, Error> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(Error::Tls)?
            .with_no_client_auth()
            .with_cert_resolver(self);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Names the files in a parse error of a pair read from them.
fn with_paths(error: Error, files: &CertFiles) -> Error {
    match error {
        Error::ParsePem { path, source } if path.as_os_str() == "certificate" => Error::ParsePem {
            path: files.cert.clone(),
            source,
        },
        Error::ParsePem { path, source } if path.as_os_str() == "key" => Error::ParsePem {
            path: files.key.clone(),
            source,
        },
        Error::NoCertificate { .. } => Error::NoCertificate {
            path: files.cert.clone(),
        },
        other => other,
    }
}

fn read_pair(files: &CertFiles) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| Error::ReadPem {
            path: path.clone(),
            source,
        })
    };
    Ok((read(&files.cert)?, read(&files.key)?))
}

fn parse_pair(
    cert_name: &str,
    key_name: &str,
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, Error> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::ParsePem {
            path: PathBuf::from(cert_name),
            source,
        })?;
    if certs.is_empty() {
        return Err(Error::NoCertificate {
            path: PathBuf::from(cert_name),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| Error::ParsePem {
        path: PathBuf::from(key_name),
        source,
    })?;
    CertifiedKey::from_der(certs, key, provider).map_err(Error::Tls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn temp_dir() -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lmcache-runtime-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_new_pair(files: &CertFiles, name: &str) -> Vec<u8> {
        let generated = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        std::fs::write(&files.cert, generated.cert.pem()).unwrap();
        std::fs::write(&files.key, generated.signing_key.serialize_pem()).unwrap();
        generated.cert.der().to_vec()
    }

    fn leaf(store: &ServingCert) -> Vec<u8> {
        store.current().cert[0].to_vec()
    }

    #[test]
    fn reloads_changed_files_and_keeps_last_good() {
        let dir = temp_dir();
        let files = CertFiles::in_dir(&dir);
        let first = write_new_pair(&files, "localhost");
        let store = ServingCert::load(&files).unwrap();
        assert_eq!(leaf(&store), first);

        let second = write_new_pair(&files, "localhost");
        assert_ne!(first, second);
        assert_eq!(leaf(&store), first, "nothing is read during a handshake");
        store.reload_files(&files);
        assert_eq!(leaf(&store), second);

        // A garbage key: the last good pair stays.
        std::fs::write(&files.key, "not a key").unwrap();
        store.reload_files(&files);
        assert_eq!(leaf(&store), second);
        // Missing files: same.
        std::fs::remove_file(&files.cert).unwrap();
        store.reload_files(&files);
        assert_eq!(leaf(&store), second);
        // A certificate with someone else's key: rejected.
        let other = rcgen::generate_simple_self_signed(vec!["x".to_string()]).unwrap();
        std::fs::write(&files.cert, other.cert.pem()).unwrap();
        let mismatched = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&files.key, mismatched.serialize_pem()).unwrap();
        store.reload_files(&files);
        assert_eq!(leaf(&store), second);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn update_reports_whether_it_swapped() {
        let a = rcgen::generate_simple_self_signed(vec!["a".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".to_string()]).unwrap();
        let (a_cert, a_key) = (a.cert.pem(), a.signing_key.serialize_pem());
        let store = ServingCert::from_pem(a_cert.as_bytes(), a_key.as_bytes()).unwrap();
        assert!(!store.update(a_cert.as_bytes(), a_key.as_bytes()).unwrap());
        let (b_cert, b_key) = (b.cert.pem(), b.signing_key.serialize_pem());
        assert!(store.update(b_cert.as_bytes(), b_key.as_bytes()).unwrap());
        assert_eq!(leaf(&store), b.cert.der().to_vec());
        assert!(store.update(a_cert.as_bytes(), b_key.as_bytes()).is_err());
        assert_eq!(leaf(&store), b.cert.der().to_vec());
    }

    #[tokio::test]
    async fn follow_files_picks_up_a_renewal() {
        let dir = temp_dir();
        let files = CertFiles::in_dir(&dir);
        write_new_pair(&files, "localhost");
        let store = Arc::new(ServingCert::load(&files).unwrap());
        let (trigger, shutdown) = crate::shutdown::channel();
        let task = tokio::spawn(store.clone().follow_files(
            files.clone(),
            Duration::from_millis(20),
            shutdown,
        ));
        let renewed = write_new_pair(&files, "localhost");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while leaf(&store) != renewed && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(leaf(&store), renewed);
        trigger.trigger();
        task.await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn load_fails_fast() {
        let dir = temp_dir();
        let files = CertFiles::in_dir(&dir);
        assert!(matches!(ServingCert::load(&files), Err(Error::ReadPem { .. })));
        std::fs::write(&files.cert, "").unwrap();
        std::fs::write(&files.key, "").unwrap();
        assert!(matches!(
            ServingCert::load(&files),
            Err(Error::NoCertificate { path }) if path == files.cert
        ));
        write_new_pair(&files, "localhost");
        let store = Arc::new(ServingCert::load(&files).unwrap());
        let config = store.server_config().unwrap();
        assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
