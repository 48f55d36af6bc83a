//! When to issue, renew and rotate the self-managed certificates: [`plan`] reads the Secret's
//! contents and the clock and names one step; [`execute`] performs it (key generation, no
//! I/O). The Kubernetes reads and writes around them are in [`crate::self_managed`].
//!
//! The Secret holds `ca.crt` (the bundle published as `caBundle`, oldest first), `ca.key` (the
//! key of the newest CA, the *signer*) and `tls.crt`/`tls.key` (the serving pair). A CA
//! rotation never leaves a replica serving a certificate the API server does not trust:
//!
//! 1. the signer nears expiry: a new CA becomes the signer and is *added* to the bundle, the
//!    serving certificate stays (signed by the old CA, still in the bundle);
//! 2. once every webhook entry's `caBundle` holds the new CA, and `overlap` has passed since it
//!    was made (the API server's informers and the other replicas catch up), the serving
//!    certificate is re-issued by the new CA;
//! 3. once the serving certificate signed by the old CA has been out of the Secret for
//!    `overlap` (every replica polled and swapped), or the old CA has expired, the old CA
//!    leaves the bundle.
//!
//! Anything unusable (absent, garbage, expired, someone else's key) is replaced; a valid serving
//! certificate from another issuer (say a cert-manager Secret of the same name) is kept until a
//! new CA has taken over as in steps 1–3.

use crate::Error;
use crate::pki::{self, Cert, seconds};
use k8s_openapi::ByteString;
use std::collections::BTreeMap;
use std::time::Duration;

/// Secret key of the serving certificate.
pub const TLS_CRT: &str = "tls.crt";
/// Secret key of the serving private key.
pub const TLS_KEY: &str = "tls.key";
/// Secret key of the CA bundle (what `caBundle` carries).
pub const CA_CRT: &str = "ca.crt";
/// Secret key of the signing CA's private key.
pub const CA_KEY: &str = "ca.key";

/// Lifetimes and safety margins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Lifetime of a new CA.
    pub ca_lifetime: Duration,
    /// Lifetime of a new serving certificate (capped by its CA's).
    pub serving_lifetime: Duration,
    /// How far `notBefore` is set in the past, for API servers whose clock is behind.
    pub backdate: Duration,
    /// How long a change to the bundle or the serving certificate is given to reach every
    /// reader before the next step relies on it (a few poll intervals).
    pub overlap: Duration,
}

/// The Secret's data as text (absent or non-UTF-8 keys are empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contents {
    /// `tls.crt`.
    pub tls_crt: String,
    /// `tls.key`.
    pub tls_key: String,
    /// `ca.crt`.
    pub ca_crt: String,
    /// `ca.key`.
    pub ca_key: String,
}

impl Contents {
    /// From a Secret's `data`.
    pub fn from_data(data: &BTreeMap<String, ByteString>) -> Self {
        let text = |key: &str| {
            data.get(key)
                .and_then(|value| String::from_utf8(value.0.clone()).ok())
                .unwrap_or_default()
        };
        Self {
            tls_crt: text(TLS_CRT),
            tls_key: text(TLS_KEY),
            ca_crt: text(CA_CRT),
            ca_key: text(CA_KEY),
        }
    }

    /// As a Secret's `data`.
    pub fn to_data(&self) -> BTreeMap<String, ByteString> {
        [
            (TLS_CRT, &self.tls_crt),
            (TLS_KEY, &self.tls_key),
            (CA_CRT, &self.ca_crt),
            (CA_KEY, &self.ca_key),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), ByteString(value.as_bytes().to_vec())))
        .collect()
    }

    fn is_empty(&self) -> bool {
        self.tls_crt.is_empty() && self.tls_key.is_empty() && self.ca_crt.is_empty() && self.ca_key.is_empty()
    }
}

/// Why a step is taken (logged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Nothing there yet.
    Absent,
    /// Unusable: garbage, a key that does not match, wrong names, an unknown issuer, expired.
    Invalid,
    /// Less than a third of its lifetime left.
    Expiring,
    /// The CA that signed it is being replaced and the new one is published.
    NewCa,
}

impl Reason {
    /// Label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Absent => "absent",
            Self::Invalid => "invalid",
            Self::Expiring => "expiring",
            Self::NewCa => "new-ca",
        }
    }
}

/// One step of the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing to write.
    Keep,
    /// Nothing usable is served: a new CA and a serving certificate, replacing everything.
    Issue(Reason),
    /// A new CA becomes the signer and is appended to the bundle; the serving pair stays.
    AddCa(Reason),
    /// A new serving pair signed by the signer.
    RenewServing(Reason),
    /// These bundle entries (indices into the parsed `ca.crt`) leave it; unparsable blocks go
    /// too.
    Prune(Vec<usize>),
}

/// The parsed Secret.
struct Parsed {
    bundle: Vec<Cert>,
    /// Every block of `ca.crt` parsed.
    clean: bool,
    /// Index of the bundle CA whose key is `ca.key`.
    signer: Option<usize>,
    /// The serving leaf, if its key is `tls.key`.
    serving: Option<Cert>,
}

fn parse(contents: &Contents) -> Parsed {
    let (bundle, clean) = Cert::all_from_pem(contents.ca_crt.as_bytes());
    let signer = bundle.iter().position(|ca| ca.matches_key(&contents.ca_key));
    let serving = Cert::all_from_pem(contents.tls_crt.as_bytes())
        .0
        .into_iter()
        .next()
        .filter(|leaf| leaf.matches_key(&contents.tls_key));
    Parsed {
        bundle,
        clean,
        signer,
        serving,
    }
}

impl Parsed {
    fn usable(&self, index: usize, now: i64) -> bool {
        self.bundle
            .get(index)
            .is_some_and(|ca| ca.is_ca && ca.valid_at(now))
    }

    /// The usable bundle CA the serving leaf chains to (the signer preferred).
    fn serving_issuer(&self, names: &[String], now: i64) -> Option<usize> {
        let leaf = self.serving.as_ref()?;
        let others = (0..self.bundle.len()).filter(|i| Some(*i) != self.signer);
        self.signer
            .into_iter()
            .chain(others)
            .find(|&i| self.usable(i, now) && pki::verifies(leaf, &self.bundle[i], names, now))
    }
}

/// The next step for `contents` at `now` (unix seconds). `published` holds the DER of every CA
/// that all webhook entries' `caBundle` trust (empty when unknown): a serving certificate moves
/// to a new CA only once that CA is published.
pub fn plan(
    now: i64,
    contents: &Contents,
    published: &[Vec<u8>],
    names: &[String],
    policy: &Policy,
) -> Action {
    let parsed = parse(contents);
    let issuer = parsed.serving_issuer(names, now);
    let signer = parsed.signer.filter(|&i| parsed.usable(i, now));
    let Some(signer) = signer else {
        return match issuer {
            // Keep serving what works while a CA of ours takes over.
            Some(_) => Action::AddCa(Reason::Invalid),
            None if contents.is_empty() => Action::Issue(Reason::Absent),
            None => Action::Issue(Reason::Invalid),
        };
    };
    if parsed.bundle[signer].due(now, policy.backdate) {
        return Action::AddCa(Reason::Expiring);
    }
    let (Some(issuer), Some(leaf)) = (issuer, parsed.serving.as_ref()) else {
        let reason = if contents.tls_crt.is_empty() {
            Reason::Absent
        } else {
            Reason::Invalid
        };
        return Action::RenewServing(reason);
    };
    if issuer == signer {
        if leaf.due(now, policy.backdate) {
            return Action::RenewServing(Reason::Expiring);
        }
    } else {
        let ca = &parsed.bundle[signer];
        let settled = now >= ca.issued(policy.backdate).saturating_add(seconds(policy.overlap));
        if settled && published.contains(&ca.der) {
            return Action::RenewServing(Reason::NewCa);
        }
    }
    // Bundle entries nobody needs: expired or unusable ones at once, the rest once the serving
    // leaf has been in place for `overlap`; duplicates always.
    let leaf_settled = now
        >= leaf
            .issued(policy.backdate)
            .saturating_add(seconds(policy.overlap));
    let drop: Vec<usize> = (0..parsed.bundle.len())
        .filter(|&i| {
            let duplicate = parsed.bundle[..i].iter().any(|c| c.der == parsed.bundle[i].der);
            let needed = i == signer || i == issuer;
            duplicate || (!needed && (!parsed.usable(i, now) || leaf_settled))
        })
        .collect();
    if !drop.is_empty() || !parsed.clean {
        return Action::Prune(drop);
    }
    Action::Keep
}

/// The contents after `action` (generating keys as needed; no I/O).
pub fn execute(
    action: &Action,
    now: i64,
    contents: &Contents,
    names: &[String],
    policy: &Policy,
) -> Result<Contents, Error> {
    let parsed = parse(contents);
    let mut next = contents.clone();
    match action {
        Action::Keep => {}
        Action::Issue(_) => {
            let ca = pki::new_ca(now, policy.ca_lifetime, policy.backdate)?;
            let ca_cert = first_cert(&ca.cert_pem)?;
            let serving = pki::new_serving(
                now,
                policy.serving_lifetime,
                policy.backdate,
                names,
                &ca_cert,
                &ca.key_pem,
            )?;
            next = Contents {
                tls_crt: serving.cert_pem,
                tls_key: serving.key_pem,
                ca_crt: ca_cert.pem(),
                ca_key: ca.key_pem,
            };
        }
        Action::AddCa(_) => {
            let ca = pki::new_ca(now, policy.ca_lifetime, policy.backdate)?;
            let mut bundle: String = parsed.bundle.iter().map(Cert::pem).collect();
            bundle.push_str(&first_cert(&ca.cert_pem)?.pem());
            next.ca_crt = bundle;
            next.ca_key = ca.key_pem;
        }
        Action::RenewServing(_) => {
            let signer = parsed
                .signer
                .and_then(|i| parsed.bundle.get(i))
                .ok_or(Error::NoSigner)?;
            let serving = pki::new_serving(
                now,
                policy.serving_lifetime,
                policy.backdate,
                names,
                signer,
                &contents.ca_key,
            )?;
            next.tls_crt = serving.cert_pem;
            next.tls_key = serving.key_pem;
        }
        Action::Prune(drop) => {
            next.ca_crt = parsed
                .bundle
                .iter()
                .enumerate()
                .filter(|(i, _)| !drop.contains(i))
                .map(|(_, ca)| ca.pem())
                .collect();
        }
    }
    Ok(next)
}

/// Expiry (unix seconds) of what `contents` serves: the serving leaf and the CA it chains to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expiry {
    /// `notAfter` of the serving certificate.
    pub serving: Option<i64>,
    /// `notAfter` of the CA the serving certificate chains to.
    pub ca: Option<i64>,
}

/// The expiry of what `contents` serves at `now`.
pub fn expiry(contents: &Contents, names: &[String], now: i64) -> Expiry {
    let parsed = parse(contents);
    Expiry {
        serving: parsed.serving.as_ref().map(|leaf| leaf.not_after),
        ca: parsed
            .serving_issuer(names, now)
            .map(|i| parsed.bundle[i].not_after),
    }
}

fn first_cert(pem: &str) -> Result<Cert, Error> {
    Cert::all_from_pem(pem.as_bytes())
        .0
        .into_iter()
        .next()
        .ok_or(Error::NoSigner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000;
    const POLICY: Policy = Policy {
        ca_lifetime: Duration::from_secs(3000),
        serving_lifetime: Duration::from_secs(300),
        backdate: Duration::from_secs(10),
        overlap: Duration::from_secs(60),
    };

    fn names() -> Vec<String> {
        pki::service_names("lmcache-webhook", "ops", "cluster.local")
    }

    fn step(now: i64, contents: &Contents, published: &[Vec<u8>]) -> (Action, Contents) {
        let action = plan(now, contents, published, &names(), &POLICY);
        let next = execute(&action, now, contents, &names(), &POLICY).unwrap();
        (action, next)
    }

    fn bundle(contents: &Contents) -> Vec<Vec<u8>> {
        let (certs, clean) = Cert::all_from_pem(contents.ca_crt.as_bytes());
        assert!(clean);
        certs.into_iter().map(|c| c.der).collect()
    }

    fn serving_chains_to(contents: &Contents, ca: &[u8], now: i64) -> bool {
        let leaf = &Cert::all_from_pem(contents.tls_crt.as_bytes()).0[0];
        pki::verifies(leaf, &Cert::from_der(ca).unwrap(), &names(), now)
    }

    fn issued() -> Contents {
        let (action, contents) = step(T0, &Contents::default(), &[]);
        assert_eq!(action, Action::Issue(Reason::Absent));
        contents
    }

    #[test]
    fn initial_issue_then_steady() {
        let contents = issued();
        let cas = bundle(&contents);
        assert_eq!(cas.len(), 1);
        assert!(serving_chains_to(&contents, &cas[0], T0));
        // Stable: nothing to write, with or without the bundle published.
        assert_eq!(plan(T0, &contents, &[], &names(), &POLICY), Action::Keep);
        assert_eq!(plan(T0 + 150, &contents, &cas, &names(), &POLICY), Action::Keep);
        // Round trip through Secret data.
        assert_eq!(Contents::from_data(&contents.to_data()), contents);
    }

    #[test]
    fn serving_renewed_with_a_third_left() {
        let contents = issued();
        let cas = bundle(&contents);
        // Lifetime from issue is 300 s: due once under 100 s remain.
        assert_eq!(plan(T0 + 200, &contents, &cas, &names(), &POLICY), Action::Keep);
        let (action, renewed) = step(T0 + 201, &contents, &cas);
        assert_eq!(action, Action::RenewServing(Reason::Expiring));
        assert_eq!(renewed.ca_crt, contents.ca_crt);
        assert_eq!(renewed.ca_key, contents.ca_key);
        assert_ne!(renewed.tls_crt, contents.tls_crt);
        assert!(serving_chains_to(&renewed, &cas[0], T0 + 201));
        assert_eq!(plan(T0 + 202, &renewed, &cas, &names(), &POLICY), Action::Keep);
        // Expired (the webhook was down): renewed as invalid.
        assert_eq!(
            plan(T0 + 400, &contents, &cas, &names(), &POLICY),
            Action::RenewServing(Reason::Invalid)
        );
    }

    #[test]
    fn ca_rotation_with_overlap() {
        let mut now = T0;
        let mut contents = issued();
        let old = bundle(&contents)[0].clone();
        // Keep the serving certificate fresh until the CA is due (under 1000 s left of 3000).
        while plan(now, &contents, std::slice::from_ref(&old), &names(), &POLICY)
            != Action::AddCa(Reason::Expiring)
        {
            let (action, next) = step(now, &contents, std::slice::from_ref(&old));
            assert!(
                matches!(action, Action::Keep | Action::RenewServing(Reason::Expiring)),
                "{action:?}"
            );
            contents = next;
            now += 10;
            assert!(now < T0 + 3000);
        }
        assert!(now > T0 + 2000 - 10);

        // Phase 1: the new CA joins the bundle; serving unchanged, still chained to the old CA.
        let (_, added) = step(now, &contents, std::slice::from_ref(&old));
        let cas = bundle(&added);
        assert_eq!(cas.len(), 2);
        assert_eq!(cas[0], old);
        let new = cas[1].clone();
        assert_eq!(added.tls_crt, contents.tls_crt);
        assert!(serving_chains_to(&added, &old, now));
        // Not published yet: wait, however long it takes (and never drop the old CA).
        assert_eq!(
            plan(now + 70, &added, std::slice::from_ref(&old), &names(), &POLICY),
            Action::Keep
        );
        // Published, but the overlap since the new CA was made has not passed: wait.
        let both = vec![old.clone(), new.clone()];
        assert_eq!(plan(now + 30, &added, &both, &names(), &POLICY), Action::Keep);

        // Phase 2: published and settled: the serving certificate moves to the new CA.
        now += 70;
        let (action, switched) = step(now, &added, &both);
        assert_eq!(action, Action::RenewServing(Reason::NewCa));
        assert_eq!(switched.ca_crt, added.ca_crt, "the old CA stays for now");
        assert!(serving_chains_to(&switched, &new, now));
        assert!(!serving_chains_to(&switched, &old, now));
        // Replicas still serving the old leaf are covered until the overlap has passed.
        assert_eq!(plan(now + 59, &switched, &both, &names(), &POLICY), Action::Keep);

        // Phase 3: the old CA leaves the bundle.
        now += 60;
        let (action, pruned) = step(now, &switched, &both);
        assert_eq!(action, Action::Prune(vec![0]));
        assert_eq!(bundle(&pruned).as_slice(), std::slice::from_ref(&new));
        assert_eq!(pruned.tls_crt, switched.tls_crt);
        assert_eq!(plan(now + 1, &pruned, &[new], &names(), &POLICY), Action::Keep);
    }

    #[test]
    fn old_ca_dropped_once_its_leaf_is_gone_even_unpublished() {
        let contents = issued();
        let old = bundle(&contents)[0].clone();
        let (_, added) = step(T0 + 2100, &contents, std::slice::from_ref(&old));
        // The serving leaf expired meanwhile: a new one from the new CA, published or not.
        let (action, renewed) = step(T0 + 2500, &added, &[old]);
        assert_eq!(action, Action::RenewServing(Reason::Invalid));
        assert_eq!(plan(T0 + 2540, &renewed, &[], &names(), &POLICY), Action::Keep);
        let (action, pruned) = step(T0 + 2560, &renewed, &[]);
        assert_eq!(action, Action::Prune(vec![0]));
        assert_eq!(bundle(&pruned).len(), 1);
    }

    #[test]
    fn garbage_and_foreign_secrets() {
        // Garbage everywhere: start over.
        let garbage = Contents {
            tls_crt: "junk".into(),
            tls_key: "junk".into(),
            ca_crt: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
            ca_key: String::new(),
        };
        let (action, fixed) = step(T0, &garbage, &[]);
        assert_eq!(action, Action::Issue(Reason::Invalid));
        assert_eq!(plan(T0, &fixed, &[], &names(), &POLICY), Action::Keep);

        // A valid pair for other names (someone else's certificate): renewed by our CA.
        let other_names = vec!["elsewhere.example".to_string()];
        let mut foreign = issued();
        let ca = Cert::all_from_pem(foreign.ca_crt.as_bytes()).0.remove(0);
        let pair = pki::new_serving(
            T0,
            POLICY.serving_lifetime,
            POLICY.backdate,
            &other_names,
            &ca,
            &foreign.ca_key,
        )
        .unwrap();
        foreign.tls_crt = pair.cert_pem;
        foreign.tls_key = pair.key_pem;
        assert_eq!(
            plan(T0, &foreign, &[], &names(), &POLICY),
            Action::RenewServing(Reason::Invalid)
        );

        // A mismatched serving key.
        let mut mismatched = issued();
        mismatched.tls_key = issued().tls_key;
        assert_eq!(
            plan(T0, &mismatched, &[], &names(), &POLICY),
            Action::RenewServing(Reason::Invalid)
        );

        // A cert-manager-style Secret: valid serving pair and CA, but no CA key. The pair keeps
        // serving while our own CA takes over.
        let mut cert_manager = issued();
        cert_manager.ca_key = String::new();
        let (action, adopted) = step(T0, &cert_manager, &[]);
        assert_eq!(action, Action::AddCa(Reason::Invalid));
        assert_eq!(bundle(&adopted).len(), 2);
        assert_eq!(adopted.tls_crt, cert_manager.tls_crt);

        // A bundle with a garbage block and a duplicate: normalised.
        let mut messy = issued();
        let ca_pem = messy.ca_crt.clone();
        messy.ca_crt =
            format!("{ca_pem}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n{ca_pem}");
        let (action, clean) = step(T0, &messy, &[]);
        assert_eq!(action, Action::Prune(vec![1]));
        assert_eq!(clean.ca_crt, ca_pem);

        // An expired foreign CA appended to the bundle goes at once.
        let mut extra = issued();
        let stale = pki::new_ca(T0 - 100, Duration::from_secs(50), Duration::ZERO).unwrap();
        extra.ca_crt.push_str(&stale.cert_pem);
        assert_eq!(plan(T0, &extra, &[], &names(), &POLICY), Action::Prune(vec![1]));
    }

    #[test]
    fn a_secret_written_by_another_replica_is_used_as_is() {
        // What another replica wrote is judged like any other contents: valid means Keep, and
        // the same plan from two replicas gives the same step.
        let theirs = issued();
        for now in [T0, T0 + 100, T0 + 200] {
            assert_eq!(plan(now, &theirs, &[], &names(), &POLICY), Action::Keep);
        }
        let cas = bundle(&theirs);
        let (_, ours) = step(T0 + 250, &theirs, &cas);
        let (_, again) = step(T0 + 250, &theirs, &cas);
        assert_eq!(ours.ca_crt, again.ca_crt);
        assert_ne!(
            ours.tls_crt, again.tls_crt,
            "keys are fresh: one replica's write wins"
        );
    }

    #[test]
    fn expiry_of_what_is_served() {
        let contents = issued();
        let expiry = expiry(&contents, &names(), T0);
        assert_eq!(expiry.serving, Some(T0 + 300));
        assert_eq!(expiry.ca, Some(T0 + 3000));
        assert_eq!(
            super::expiry(&Contents::default(), &names(), T0),
            Expiry::default()
        );
    }
}
