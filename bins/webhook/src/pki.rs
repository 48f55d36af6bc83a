//! The webhook's own small PKI for self-managed TLS: a self-signed CA, serving certificates it
//! signs for the Service's DNS names, and the few facts rotation reads back from PEM (validity,
//! public key, whether a leaf chains to a CA for every name).
//!
//! No I/O and no clock: `now` is an argument (unix seconds), so tests move time freely. Chains
//! are checked with the same webpki code rustls clients use, not by comparing names by hand.

use crate::Error;
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;
use std::time::Duration;

/// The DNS names the API server may use for the webhook Service: `<service>`, `<service>.<ns>`,
/// `<service>.<ns>.svc` (what it actually dials) and `<service>.<ns>.svc.<cluster-domain>`.
pub fn service_names(service: &str, namespace: &str, cluster_domain: &str) -> Vec<String> {
    let svc = format!("{service}.{namespace}.svc");
    let mut names = vec![service.to_string(), format!("{service}.{namespace}"), svc.clone()];
    let domain = cluster_domain.trim_matches('.');
    if !domain.is_empty() {
        names.push(format!("{svc}.{domain}"));
    }
    names
}

/// A certificate as rotation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cert {
    /// DER bytes.
    pub der: Vec<u8>,
    /// Start of validity, unix seconds.
    pub not_before: i64,
    /// End of validity, unix seconds.
    pub not_after: i64,
    /// basicConstraints `CA:TRUE`.
    pub is_ca: bool,
    /// DER SubjectPublicKeyInfo, to tell which private key belongs to it.
    spki: Vec<u8>,
}

impl Cert {
    /// Parses one DER certificate; `None` for anything that is not exactly one certificate.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (rest, x509) = x509_parser::parse_x509_certificate(der).ok()?;
        if !rest.is_empty() {
            return None;
        }
        Some(Self {
            der: der.to_vec(),
            not_before: x509.validity().not_before.timestamp(),
            not_after: x509.validity().not_after.timestamp(),
            is_ca: x509.is_ca(),
            spki: x509.public_key().raw.to_vec(),
        })
    }

    /// Every `CERTIFICATE` block of `pem`, and whether all of them parsed (garbage between
    /// blocks is ignored by PEM itself; a block that does not parse makes it `false`).
    pub fn all_from_pem(pem: &[u8]) -> (Vec<Self>, bool) {
        let mut clean = true;
        let mut certs = Vec::new();
        for block in CertificateDer::pem_slice_iter(pem) {
            match block.ok().and_then(|der| Self::from_der(&der)) {
                Some(cert) => certs.push(cert),
                None => clean = false,
            }
        }
        (certs, clean)
    }

    /// PEM text of this certificate.
    pub fn pem(&self) -> String {
        pem_certificate(&self.der)
    }

    /// Whether `now` is inside the validity period.
    pub fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now < self.not_after
    }

    /// Whether `key_pem` is the private key of this certificate.
    pub fn matches_key(&self, key_pem: &str) -> bool {
        KeyPair::from_pem(key_pem).is_ok_and(|key| key.subject_public_key_info() == self.spki)
    }

    /// When it was issued: `not_before` moved forward by the backdating applied at issue (never
    /// past `not_after`).
    pub fn issued(&self, backdate: Duration) -> i64 {
        self.not_before
            .saturating_add(seconds(backdate))
            .min(self.not_after)
    }

    /// Whether less than a third of its lifetime (counted from issue) remains at `now`: the
    /// point where it is replaced, early enough that a webhook down for a while still renews in
    /// time, late enough that rotation stays rare.
    pub fn due(&self, now: i64, backdate: Duration) -> bool {
        let lifetime = i128::from(self.not_after) - i128::from(self.issued(backdate));
        let remaining = i128::from(self.not_after) - i128::from(now);
        remaining * 3 < lifetime
    }
}

/// A newly issued certificate and its private key, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// The PKCS#8 private key.
    pub key_pem: String,
}

/// A self-signed CA valid from `now - backdate` to `now + lifetime`. Its common name carries
/// the issue time so two generations of CA never share a subject (verifiers pick candidate
/// roots by subject).
pub fn new_ca(now: i64, lifetime: Duration, backdate: Duration) -> Result<Issued, Error> {
    let key = KeyPair::generate().map_err(Error::Issue)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("lmcache-webhook-ca@{now}"));
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = timestamp(now.saturating_sub(seconds(backdate)))?;
    params.not_after = timestamp(now.saturating_add(seconds(lifetime)))?;
    let cert = params.self_signed(&key).map_err(Error::Issue)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A serving certificate for `names` signed by `ca` (whose key is `ca_key_pem`), valid from
/// `now - backdate` to `now + lifetime` but never past the CA (a chain is only as good as its
/// root).
pub fn new_serving(
    now: i64,
    lifetime: Duration,
    backdate: Duration,
    names: &[String],
    ca: &Cert,
    ca_key_pem: &str,
) -> Result<Issued, Error> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(Error::Issue)?;
    let issuer =
        Issuer::from_ca_cert_der(&CertificateDer::from(ca.der.as_slice()), ca_key).map_err(Error::Issue)?;
    let key = KeyPair::generate().map_err(Error::Issue)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(Error::Issue)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, names.first().cloned().unwrap_or_default());
    params.distinguished_name = name;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = timestamp(now.saturating_sub(seconds(backdate)))?;
    params.not_after = timestamp(now.saturating_add(seconds(lifetime)).min(ca.not_after))?;
    let cert = params.signed_by(&key, &issuer).map_err(Error::Issue)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Whether `leaf` chains to `ca` and is valid for every one of `names` at `now`, as a TLS
/// client trusting only `ca` would judge it (webpki does not check a root's own dates, so
/// the CA's validity is checked here too).
pub fn verifies(leaf: &Cert, ca: &Cert, names: &[String], now: i64) -> bool {
    if !ca.valid_at(now) || names.is_empty() {
        return false;
    }
    let Ok(now) = u64::try_from(now) else {
        return false;
    };
    let mut roots = RootCertStore::empty();
    if roots.add(CertificateDer::from(ca.der.clone())).is_err() {
        return false;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let Ok(verifier) = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build() else {
        return false;
    };
    let leaf = CertificateDer::from(leaf.der.as_slice());
    let now = UnixTime::since_unix_epoch(Duration::from_secs(now));
    names.iter().all(|name| {
        ServerName::try_from(name.as_str())
            .is_ok_and(|server| verifier.verify_server_cert(&leaf, &[], &server, &[], now).is_ok())
    })
}

/// PEM text of one DER certificate (64-column base64, as every tool writes it).
pub fn pem_certificate(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = String::with_capacity(body.len() + body.len() / 64 + 64);
    text.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str("-----END CERTIFICATE-----\n");
    text
}

/// Whole seconds of `duration` as a unix-time offset (saturating).
pub(crate) fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

fn timestamp(unix: i64) -> Result<time::OffsetDateTime, Error> {
    time::OffsetDateTime::from_unix_timestamp(unix).map_err(|_| Error::Time(unix))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const DAY: Duration = Duration::from_secs(86_400);

    fn names() -> Vec<String> {
        service_names("lmcache-webhook", "ops", "cluster.local")
    }

    fn parse(pem: &str) -> Cert {
        let (mut certs, clean) = Cert::all_from_pem(pem.as_bytes());
        assert!(clean && certs.len() == 1);
        certs.remove(0)
    }

    #[test]
    fn names_of_the_service() {
        assert_eq!(
            names(),
            [
                "lmcache-webhook",
                "lmcache-webhook.ops",
                "lmcache-webhook.ops.svc",
                "lmcache-webhook.ops.svc.cluster.local"
            ]
        );
        assert_eq!(service_names("s", "n", "").len(), 3);
    }

    #[test]
    fn issued_certificates_chain_and_cover_the_names() {
        let backdate = Duration::from_secs(3600);
        let ca = new_ca(NOW, DAY * 3650, backdate).unwrap();
        let ca_cert = parse(&ca.cert_pem);
        assert!(ca_cert.is_ca && ca_cert.matches_key(&ca.key_pem));
        assert_eq!(ca_cert.not_before, NOW - 3600);
        assert_eq!(ca_cert.issued(backdate), NOW);
        assert_eq!(parse(&ca_cert.pem()), ca_cert, "PEM round trip");

        let serving = new_serving(NOW, DAY * 90, backdate, &names(), &ca_cert, &ca.key_pem).unwrap();
        let leaf = parse(&serving.cert_pem);
        assert!(!leaf.is_ca && leaf.matches_key(&serving.key_pem) && !leaf.matches_key(&ca.key_pem));
        assert_eq!(leaf.not_after, NOW + 90 * 86_400);
        assert!(verifies(&leaf, &ca_cert, &names(), NOW));
        assert!(!verifies(&leaf, &ca_cert, &["other.ops.svc".to_string()], NOW));
        assert!(!verifies(&leaf, &ca_cert, &names(), NOW + 91 * 86_400), "expired");
        assert!(
            !verifies(&leaf, &ca_cert, &names(), NOW - 2 * 3600),
            "not yet valid"
        );
        let other = parse(&new_ca(NOW, DAY, backdate).unwrap().cert_pem);
        assert!(!verifies(&leaf, &other, &names(), NOW), "another CA");
        assert!(!verifies(&leaf, &leaf, &names(), NOW), "itself");
    }

    #[test]
    fn serving_never_outlives_its_ca() {
        let ca = new_ca(NOW, DAY, Duration::ZERO).unwrap();
        let ca_cert = parse(&ca.cert_pem);
        let serving = new_serving(NOW, DAY * 90, Duration::ZERO, &names(), &ca_cert, &ca.key_pem).unwrap();
        assert_eq!(parse(&serving.cert_pem).not_after, ca_cert.not_after);
    }

    #[test]
    fn due_after_two_thirds_of_the_lifetime() {
        let cert = parse(
            &new_ca(NOW, Duration::from_secs(300), Duration::from_secs(60))
                .unwrap()
                .cert_pem,
        );
        assert!(!cert.due(NOW, Duration::from_secs(60)));
        assert!(!cert.due(NOW + 200, Duration::from_secs(60)));
        assert!(cert.due(NOW + 201, Duration::from_secs(60)));
        assert!(cert.due(NOW + 400, Duration::from_secs(60)));
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(Cert::all_from_pem(b"").0.len(), 0);
        let (certs, clean) =
            Cert::all_from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert!(certs.is_empty() && !clean);
        assert!(Cert::from_der(b"nope").is_none());
        let ca = new_ca(NOW, DAY, Duration::ZERO).unwrap();
        assert!(!parse(&ca.cert_pem).matches_key("not a key"));
    }
}
