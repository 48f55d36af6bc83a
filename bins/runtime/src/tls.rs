//! Serving certificates that follow their PEM files.
//!
//! cert-manager renews the Secret and the kubelet swaps the mounted files through a `..data`
//! symlink, which defeats inotify on the file paths. The resolver therefore re-reads both files
//! during a handshake when the last check is older than the check interval, compares their bytes
//! with what it loaded, and swaps in the new key only if it parses and matches the certificate.
//! A failed reload keeps serving the last good key.

use crate::Error;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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

/// A [`ResolvesServerCert`] that reloads the key pair when its files change.
#[derive(Debug)]
pub struct ReloadingCertResolver {
    files: CertFiles,
    interval: Duration,
    provider: Arc<CryptoProvider>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    checked: Instant,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    key: Arc<CertifiedKey>,
}

impl ReloadingCertResolver {
    /// Loads the files now (failing fast on a bad pair) and re-checks them at most every
    /// `interval` (zero: on every handshake).
    pub fn load(files: CertFiles, interval: Duration) -> Result<Self, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert_pem, key_pem) = read_pair(&files)?;
        let key = Arc::new(parse_pair(&files, &cert_pem, &key_pem, &provider)?);
        Ok(Self {
            files,
            interval,
            provider,
            state: Mutex::new(State {
                checked: Instant::now(),
                cert_pem,
                key_pem,
                key,
            }),
        })
    }

    /// The key pair to serve, reloading it first when the check interval has passed and the
    /// files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() >= self.interval {
            state.checked = Instant::now();
            self.reload(&mut state);
        }
        state.key.clone()
    }

    fn reload(&self, state: &mut State) {
        let (cert_pem, key_pem) = match read_pair(&self.files) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "keeping the last good certificate");
                return;
            }
        };
        if cert_pem == state.cert_pem && key_pem == state.key_pem {
            return;
        }
        match parse_pair(&self.files, &cert_pem, &key_pem, &self.provider) {
            Ok(key) => {
                tracing::info!(cert = %self.files.cert.display(), "serving certificate reloaded");
                state.key = Arc::new(key);
                state.cert_pem = cert_pem;
                state.key_pem = key_pem;
            }
            // Often a half-written pair (new cert, old key): retried at the next check.
            Err(error) => tracing::warn!(error = %error_chain(&error), "keeping the last good certificate"),
        }
    }

    /// A TLS 1.2+ server configuration (ALPN `h2`, `http/1.1`) that serves this resolver's key.
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

impl ResolvesServerCert for ReloadingCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
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
    files: &CertFiles,
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, Error> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::ParsePem {
            path: files.cert.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(Error::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| Error::ParsePem {
        path: files.key.clone(),
        source,
    })?;
    CertifiedKey::from_der(certs, key, provider).map_err(Error::Tls)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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

    fn leaf(resolver: &ReloadingCertResolver) -> Vec<u8> {
        resolver.current().cert[0].to_vec()
    }

    #[test]
    fn reloads_changed_files_and_keeps_last_good() {
        let dir = temp_dir();
        let files = CertFiles::in_dir(&dir);
        let first = write_new_pair(&files, "localhost");
        let resolver = ReloadingCertResolver::load(files.clone(), Duration::ZERO).unwrap();
        assert_eq!(leaf(&resolver), first);

        let second = write_new_pair(&files, "localhost");
        assert_ne!(first, second);
        assert_eq!(leaf(&resolver), second);

        // A garbage key: the last good pair stays.
        std::fs::write(&files.key, "not a key").unwrap();
        assert_eq!(leaf(&resolver), second);
        // Missing files: same.
        std::fs::remove_file(&files.cert).unwrap();
        assert_eq!(leaf(&resolver), second);
        // A certificate with someone else's key: rejected.
        let other = rcgen::generate_simple_self_signed(vec!["x".to_string()]).unwrap();
        std::fs::write(&files.cert, other.cert.pem()).unwrap();
        let mismatched = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&files.key, mismatched.serialize_pem()).unwrap();
        assert_eq!(leaf(&resolver), second);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn interval_limits_checks() {
        let dir = temp_dir();
        let files = CertFiles::in_dir(&dir);
        let first = write_new_pair(&files, "localhost");
        let resolver = ReloadingCertResolver::load(files.clone(), Duration::from_secs(3600)).unwrap();
        write_new_pair(&files, "localhost");
        assert_eq!(leaf(&resolver), first, "not re-read before the interval");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn load_fails_fast() {
        let dir = temp_dir();
        let files = CertFiles::in_dir(&dir);
        assert!(matches!(
            ReloadingCertResolver::load(files.clone(), Duration::ZERO),
            Err(Error::ReadPem { .. })
        ));
        std::fs::write(&files.cert, "").unwrap();
        std::fs::write(&files.key, "").unwrap();
        assert!(matches!(
            ReloadingCertResolver::load(files.clone(), Duration::ZERO),
            Err(Error::NoCertificate { .. })
        ));
        write_new_pair(&files, "localhost");
        let resolver = Arc::new(ReloadingCertResolver::load(files, Duration::ZERO).unwrap());
        let config = resolver.server_config().unwrap();
        assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
