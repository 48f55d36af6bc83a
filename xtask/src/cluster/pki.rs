//! Fresh PKI for each `cluster up` (rcgen, ECDSA P-256) and the admin kubeconfig.
//!
//! One CA signs the apiserver serving cert (SANs 127.0.0.1 and localhost) and one client cert per
//! identity in [`USERS`] (all O=system:masters, so RBAC is bypassed; separate user names keep the
//! operator's and the webhook's requests apart in the audit log); a separate key pair signs
//! ServiceAccount tokens, so tokens for RBAC tests can be minted with the TokenRequest API.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// Client identities as (short name, user name): `admin` for the control plane and tests, and
/// one each for the operator and the webhook processes of `cargo xtask e2e`.
pub const USERS: [(&str, &str); 3] = [
    ("admin", "lmcache-e2e-admin"),
    ("operator", "lmcache-e2e-operator"),
    ("webhook", "lmcache-e2e-webhook"),
];

/// Paths of the files `write_cluster_pki` creates.
pub struct ClusterPki {
    dir: PathBuf,
    pub ca_crt: PathBuf,
    pub apiserver_crt: PathBuf,
    pub apiserver_key: PathBuf,
    pub sa_pub: PathBuf,
    pub sa_key: PathBuf,
}

impl ClusterPki {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            ca_crt: dir.join("ca.crt"),
            apiserver_crt: dir.join("apiserver.crt"),
            apiserver_key: dir.join("apiserver.key"),
            sa_pub: dir.join("sa.pub"),
            sa_key: dir.join("sa.key"),
        }
    }

    /// Client certificate and key of the identity `short` (see [`USERS`]).
    pub fn client(&self, short: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{short}.crt")),
            self.dir.join(format!("{short}.key")),
        )
    }
}

/// A CA held in memory for issuing leaf certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(common_name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, common_name);
        Ok(Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate()?)?,
        })
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A serving certificate for `127.0.0.1` and `localhost`: `(cert PEM, key PEM)`.
    pub fn serving(&self, common_name: &str) -> anyhow::Result<(String, String)> {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params)
    }

    /// A client certificate with CN = user and O = each group: `(cert PEM, key PEM)`.
    pub fn client(&self, user: &str, groups: &[&str]) -> anyhow::Result<(String, String)> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for group in groups {
            params.distinguished_name.push(DnType::OrganizationName, *group);
        }
        params.distinguished_name.push(DnType::CommonName, user);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Writes a fresh CA, serving, admin and ServiceAccount key material into `dir`.
pub fn write_cluster_pki(dir: &Path) -> anyhow::Result<ClusterPki> {
    std::fs::create_dir_all(dir)?;
    let files = ClusterPki::in_dir(dir);
    let ca = Ca::new("lmcache-e2e-ca")?;
    let (apiserver_crt, apiserver_key) = ca.serving("kube-apiserver")?;
    let sa = KeyPair::generate()?;
    write(&files.ca_crt, &ca.pem())?;
    write(&files.apiserver_crt, &apiserver_crt)?;
    write(&files.apiserver_key, &apiserver_key)?;
    for (short, user) in USERS {
        let (crt, key) = ca.client(user, &["system:masters"])?;
        let (crt_path, key_path) = files.client(short);
        write(&crt_path, &crt)?;
        write(&key_path, &key)?;
    }
    write(&files.sa_pub, &sa.public_key_pem())?;
    write(&files.sa_key, &sa.serialize_pem())?;
    Ok(files)
}

/// A kubeconfig for `https://127.0.0.1:<port>` as identity `short`, referring to the PKI files
/// by absolute path.
pub fn kubeconfig(port: u16, pki: &ClusterPki, short: &str) -> String {
    let (crt, key) = pki.client(short);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: lmcache-e2e\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {}\nusers:\n- name: admin\n  user:\n    client-certificate: {}\n    client-key: {}\ncontexts:\n- name: lmcache-e2e\n  context:\n    cluster: lmcache-e2e\n    user: admin\ncurrent-context: lmcache-e2e\n",
        pki.ca_crt.display(),
        crt.display(),
        key.display()
    )
}

pub fn write(path: &Path, content: &str) -> anyhow::Result<()> {
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))
}

/// Standard base64 with padding (for `caBundle`).
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[test]
    fn pki_files_are_pem_and_kubeconfig_points_at_loopback() {
        let dir = std::env::temp_dir().join(format!("xtask-pki-{}", std::process::id()));
        let pki = write_cluster_pki(&dir).unwrap();
        for path in [&pki.ca_crt, &pki.apiserver_crt, &pki.client("webhook").0] {
            assert!(
                std::fs::read_to_string(path)
                    .unwrap()
                    .starts_with("-----BEGIN CERTIFICATE-----")
            );
        }
        assert!(
            std::fs::read_to_string(&pki.sa_pub)
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        assert!(
            std::fs::read_to_string(&pki.sa_key)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        let config = kubeconfig(6443, &pki, "operator");
        assert!(config.contains("server: https://127.0.0.1:6443\n"), "{config}");
        assert!(config.contains("/operator.crt\n"), "{config}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
