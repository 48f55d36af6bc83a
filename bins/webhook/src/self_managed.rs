//! Self-managed TLS, the Kubernetes side: the Secret holding the CA and serving pair, the
//! `caBundle` of the webhook's own MutatingWebhookConfiguration, and the in-memory swap.
//!
//! Every replica runs the same loop; none leads. Each pass GETs the configuration and the
//! Secret by name (the RBAC names both objects, so nothing is listed or watched), lets
//! [`rotation::plan`] pick a step, writes it, and repeats until there is nothing to write:
//!
//! * the Secret is created only if absent (GET, 404, CREATE); a 409 AlreadyExists means another
//!   replica won, so its Secret is read back and used;
//! * updates carry the `resourceVersion` read; a 409 Conflict means another replica wrote in
//!   between, so the Secret is read again and planned afresh. Two replicas thus converge on one
//!   Secret, and a step is never applied twice;
//! * the bundle is then patched into every webhook entry that lacks it (see [`ca_bundle`]);
//! * the serving pair is swapped into [`ServingCert`] when it changed.
//!
//! Passes are jittered around the poll interval so replicas do not move in lockstep.

use crate::Error;
use crate::cli::ServeArgs;
use crate::metrics::certificates;
use crate::rotation::{self, Action, Contents, Policy};
use crate::{Metrics, ca_bundle, pki};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use lmcache_runtime::error_chain;
use lmcache_runtime::{ServingCert, Shutdown};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default name of the Secret.
pub const DEFAULT_SECRET_NAME: &str = "lmcache-operator-webhook-tls";
pub use lmcache_runtime::SERVICE_ACCOUNT_NAMESPACE_FILE;
/// Secret type written on create (an existing Secret keeps its type: it is immutable).
const SECRET_TYPE: &str = "kubernetes.io/tls";
/// How far back `notBefore` is set, for API servers whose clock is behind (as Kubernetes' own
/// self-signed serving certificates do).
pub const BACKDATE: Duration = Duration::from_secs(3600);
/// Passes a change is given to reach every reader (other replicas poll too) before the next
/// rotation step relies on it.
const OVERLAP_POLLS: u32 = 3;
/// Writes in one pass before giving up until the next (each is a step or a lost race).
const MAX_WRITES: usize = 8;

/// The webhook's namespace: `POD_NAMESPACE` (or the flag), else the service-account file.
pub fn own_namespace(flag: Option<String>, sa_file: &Path) -> Result<String, Error> {
    lmcache_runtime::own_namespace(flag, sa_file).ok_or_else(|| Error::Namespace(sa_file.to_path_buf()))
}

/// What the loop manages.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespace of the Secret (the webhook's own).
    pub namespace: String,
    /// Name of the Secret.
    pub secret_name: String,
    /// Name of the MutatingWebhookConfiguration whose entries get the bundle.
    pub webhook_configuration: String,
    /// DNS names of the serving certificate.
    pub names: Vec<String>,
    /// Lifetimes and margins.
    pub policy: Policy,
    /// Mean pause between passes.
    pub poll_interval: Duration,
}

impl Settings {
    /// From the `serve` flags; the namespace falls back to `sa_file`.
    pub fn from_args(args: &ServeArgs, sa_file: &Path) -> Result<Self, Error> {
        let namespace = own_namespace(args.namespace.clone(), sa_file)?;
        let poll_interval = Duration::from_secs(args.tls_poll_seconds);
        Ok(Self {
            names: pki::service_names(&args.service_name, &namespace, &args.cluster_domain),
            namespace,
            secret_name: args.tls_secret.clone(),
            webhook_configuration: args.webhook_configuration.clone(),
            policy: Policy {
                ca_lifetime: Duration::from_secs(args.ca_lifetime_seconds),
                serving_lifetime: Duration::from_secs(args.serving_lifetime_seconds),
                backdate: BACKDATE,
                // The jitter stretches a pass by at most 25 %: three polls cover two late ones.
                overlap: poll_interval * OVERLAP_POLLS,
            },
            poll_interval,
        })
    }
}

/// The self-managed TLS loop of one replica.
#[derive(Clone)]
pub struct SelfManaged {
    secrets: Api<Secret>,
    configs: Api<MutatingWebhookConfiguration>,
    settings: Settings,
    metrics: Metrics,
}

impl std::fmt::Debug for SelfManaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfManaged")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl SelfManaged {
    /// A loop talking to the API through `client`.
    pub fn new(client: Client, settings: Settings, metrics: Metrics) -> Self {
        Self {
            secrets: Api::namespaced(client.clone(), &settings.namespace),
            configs: Api::all(client),
            settings,
            metrics,
        }
    }

    /// One pass: the Secret brought up to date (created if absent), its bundle published.
    /// Returns what the Secret now holds.
    pub async fn sync(&self) -> Result<Contents, Error> {
        let config = self.webhook_configuration().await;
        let published = config.as_ref().map(ca_bundle::trusted_by_all).unwrap_or_default();
        let contents = self.ensure_secret(&published, config.as_ref()).await?;
        if let Some(config) = config {
            self.publish(&config, contents.ca_crt.as_bytes()).await;
        }
        Ok(contents)
    }

    /// The configuration, or `None` (logged) when it cannot be read: rotation then waits
    /// before moving the serving certificate to a new CA.
    async fn webhook_configuration(&self) -> Option<MutatingWebhookConfiguration> {
        let name = &self.settings.webhook_configuration;
        match self.configs.get_opt(name).await {
            Ok(Some(config)) => Some(config),
            Ok(None) => {
                tracing::warn!(
                    configuration = %name,
                    "MutatingWebhookConfiguration not found; its caBundle cannot be set"
                );
                None
            }
            Err(error) => {
                tracing::warn!(configuration = %name, error = %error, "cannot read the MutatingWebhookConfiguration");
                None
            }
        }
    }

    async fn ensure_secret(
        &self,
        published: &[Vec<u8>],
        config: Option<&MutatingWebhookConfiguration>,
    ) -> Result<Contents, Error> {
        let name = &self.settings.secret_name;
        let mut current = self.get_secret().await?;
        for _ in 0..MAX_WRITES {
            let contents = current
                .as_ref()
                .and_then(|s| s.data.as_ref())
                .map(Contents::from_data)
                .unwrap_or_default();
            let now = unix_now();
            let (names, policy) = (&self.settings.names, &self.settings.policy);
            let action = rotation::plan(now, &contents, published, names, policy);
            if action == Action::Keep {
                return Ok(contents);
            }
            let next = rotation::execute(&action, now, &contents, names, policy)?;
            let written = match &current {
                None => {
                    self.secrets
                        .create(&PostParams::default(), &self.new_secret(&next, config))
                        .await
                }
                Some(secret) => {
                    self.secrets
                        .replace(name, &PostParams::default(), &updated(secret, &next))
                        .await
                }
            };
            match written {
                Ok(secret) => {
                    log_step(&action, name);
                    self.count(&action);
                    current = Some(secret);
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    // AlreadyExists or Conflict: another replica wrote first; use what it wrote.
                    tracing::debug!(secret = %name, reason = %status.reason, "lost a write race; re-reading");
                    current = self.get_secret().await?;
                }
                Err(source) => {
                    return Err(Error::Kube {
                        action: format!("writing Secret {}/{name}", self.settings.namespace),
                        source: Box::new(source),
                    });
                }
            }
        }
        Err(Error::NotConverged {
            name: name.clone(),
            attempts: MAX_WRITES,
        })
    }

    async fn get_secret(&self) -> Result<Option<Secret>, Error> {
        self.secrets
            .get_opt(&self.settings.secret_name)
            .await
            .map_err(|source| Error::Kube {
                action: format!(
                    "reading Secret {}/{}",
                    self.settings.namespace, self.settings.secret_name
                ),
                source: Box::new(source),
            })
    }

    /// A new Secret, owned by the webhook configuration when it was read: uninstalling (the
    /// configuration is deleted by `kubectl delete -f` or `helm uninstall`) then lets the garbage
    /// collector remove the Secret too, instead of leaving a CA key behind.
    fn new_secret(&self, contents: &Contents, owner: Option<&MutatingWebhookConfiguration>) -> Secret {
        let owner_references = owner.and_then(|config| {
            Some(vec![OwnerReference {
                api_version: "admissionregistration.k8s.io/v1".to_string(),
                kind: "MutatingWebhookConfiguration".to_string(),
                name: config.metadata.name.clone()?,
                uid: config.metadata.uid.clone()?,
                ..OwnerReference::default()
            }])
        });
        Secret {
            metadata: ObjectMeta {
                owner_references,
                name: Some(self.settings.secret_name.clone()),
                namespace: Some(self.settings.namespace.clone()),
                labels: Some(BTreeMap::from([
                    ("app.kubernetes.io/component".to_string(), "webhook".to_string()),
                    (
                        "app.kubernetes.io/managed-by".to_string(),
                        "lmcache-webhook".to_string(),
                    ),
                ])),
                ..ObjectMeta::default()
            },
            type_: Some(SECRET_TYPE.to_string()),
            data: Some(contents.to_data()),
            ..Secret::default()
        }
    }

    /// Patches the bundle into the entries that lack it; failures are logged and retried at
    /// the next pass (the serving certificate does not move to a new CA meanwhile).
    async fn publish(&self, config: &MutatingWebhookConfiguration, bundle: &[u8]) {
        let Some(patch) = ca_bundle::patch(config, bundle) else {
            return;
        };
        let name = &self.settings.webhook_configuration;
        match self
            .configs
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => tracing::info!(configuration = %name, "caBundle updated"),
            Err(error) => tracing::warn!(configuration = %name, error = %error, "cannot update caBundle"),
        }
    }

    fn count(&self, action: &Action) {
        match action {
            Action::Issue(_) => {
                self.metrics.count_rotation(certificates::CA);
                self.metrics.count_rotation(certificates::SERVING);
            }
            Action::AddCa(_) => self.metrics.count_rotation(certificates::CA),
            Action::RenewServing(_) => self.metrics.count_rotation(certificates::SERVING),
            Action::Keep | Action::Prune(_) => {}
        }
    }

    /// Swaps the Secret's serving pair into `serving` if it changed, and exports the expiry of
    /// what is served. `Ok(true)` when swapped.
    pub fn serve(&self, serving: &ServingCert, contents: &Contents) -> Result<bool, Error> {
        let swapped = serving
            .update(contents.tls_crt.as_bytes(), contents.tls_key.as_bytes())
            .map_err(Error::Serving)?;
        if swapped {
            tracing::info!(secret = %self.settings.secret_name, "serving certificate reloaded from the Secret");
        }
        self.export_expiry(contents);
        Ok(swapped)
    }

    fn export_expiry(&self, contents: &Contents) {
        let expiry = rotation::expiry(contents, &self.settings.names, unix_now());
        if let Some(at) = expiry.serving {
            self.metrics.set_certificate_expiry(certificates::SERVING, at);
        }
        if let Some(at) = expiry.ca {
            self.metrics.set_certificate_expiry(certificates::CA, at);
        }
    }

    /// Passes until one succeeds (backing off from 1 s to the poll interval) and returns its
    /// contents; `None` on shutdown.
    pub async fn first(&self, shutdown: &Shutdown) -> Option<Contents> {
        let mut pause = Duration::from_secs(1);
        loop {
            match self.sync().await {
                Ok(contents) => {
                    self.export_expiry(&contents);
                    return Some(contents);
                }
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "no serving certificate yet; retrying")
                }
            }
            tokio::select! {
                () = shutdown.requested() => return None,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(self.settings.poll_interval.max(Duration::from_secs(1)));
        }
    }

    /// A pass every poll interval (jittered) until `shutdown`, swapping the serving pair into
    /// `serving` when the Secret changes (run as its own task).
    pub async fn run(self, serving: Arc<ServingCert>, shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = shutdown.requested() => return,
                () = tokio::time::sleep(jittered(self.settings.poll_interval)) => {}
            }
            match self.sync().await {
                Ok(contents) => {
                    if let Err(error) = self.serve(&serving, &contents) {
                        tracing::warn!(error = %error_chain(&error), "keeping the last good certificate");
                    }
                }
                Err(error) => tracing::warn!(error = %error_chain(&error), "self-managed TLS pass failed"),
            }
        }
    }
}

/// `secret` with our four keys set to `contents` (other keys, labels and type kept; the
/// `resourceVersion` read makes the replace conditional).
fn updated(secret: &Secret, contents: &Contents) -> Secret {
    let mut secret = secret.clone();
    let mut data = secret.data.take().unwrap_or_default();
    data.extend(contents.to_data());
    secret.data = Some(data);
    // `stringData` would be merged over `data` on write; ours must win.
    secret.string_data = None;
    secret.metadata.managed_fields = None;
    secret
}

fn log_step(action: &Action, secret: &str) {
    let (step, reason) = match action {
        Action::Keep => return,
        Action::Issue(reason) => ("issued a new CA and serving certificate", reason.as_str()),
        Action::AddCa(reason) => ("added a new CA to the bundle", reason.as_str()),
        Action::RenewServing(reason) => ("issued a new serving certificate", reason.as_str()),
        Action::Prune(_) => ("removed CAs no longer needed from the bundle", ""),
    };
    tracing::info!(%secret, reason, "{step}");
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(crate::pki::seconds)
        .unwrap_or(0)
}

/// `mean` ± 25 %, randomised per call (std's per-process random hasher keys; no RNG crate).
fn jittered(mean: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let fraction = 0.75 + 0.5 * (random % 1000) as f64 / 1000.0;
    mean.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_from_flag_then_file_else_error() {
        let dir = std::env::temp_dir().join(format!("lmcache-webhook-ns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("namespace");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(own_namespace(Some("ops".into()), &file).unwrap(), "ops");
        assert_eq!(own_namespace(Some(" ".into()), &file).unwrap(), "from-file");
        assert_eq!(own_namespace(None, &file).unwrap(), "from-file");
        let err = own_namespace(None, &dir.join("missing")).unwrap_err().to_string();
        assert!(err.contains("POD_NAMESPACE"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn settings_from_flags() {
        use clap::Parser as _;
        let cli = crate::cli::Cli::try_parse_from([
            "lmcache-webhook",
            "--namespace=ops",
            "--service-name=hook",
            "--tls-poll-seconds=10",
            "--cluster-domain=example.org",
        ])
        .unwrap();
        let settings = Settings::from_args(&cli.serve, Path::new("/nonexistent")).unwrap();
        assert_eq!(settings.namespace, "ops");
        assert_eq!(settings.names[3], "hook.ops.svc.example.org");
        assert_eq!(settings.secret_name, "lmcache-operator-webhook-tls");
        assert_eq!(settings.policy.overlap, Duration::from_secs(30));
        assert_eq!(settings.policy.ca_lifetime, Duration::from_secs(315_360_000));
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        for _ in 0..100 {
            let pause = jittered(Duration::from_secs(40));
            assert!(
                pause >= Duration::from_secs(30) && pause <= Duration::from_secs(50),
                "{pause:?}"
            );
        }
    }
}
