//! `lmcache_webhook_*` metrics (operations.md §7, connection-webhook.md §6). Every admission and
//! cache series carries `webhook` (`cacheblend` or `lmcache`), the certificate series carry
//! `certificate` (`serving` or `ca`); none carries per-object labels.

use lmcache_blend_injector::{SkipReason, Webhook};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Admission outcomes as counted (`outcome` label).
pub mod outcomes {
    /// The pod was injected.
    pub const INJECTED: &str = "injected";
    /// Only a skip-reason annotation was added.
    pub const SKIPPED: &str = "skipped";
    /// Left unchanged: not a pod CREATE, not opted in, already injected.
    pub const IGNORED: &str = "ignored";
    /// The engine cache had not completed its initial list.
    pub const NOT_READY: &str = "not_ready";
    /// The review had a uid but could not be understood (allowed, unchanged).
    pub const MALFORMED: &str = "malformed";
    /// The body was not an AdmissionReview at all (HTTP 400).
    pub const INVALID: &str = "invalid";

    /// Every outcome, for publishing the series at zero.
    pub const ALL: [&str; 6] = [INJECTED, SKIPPED, IGNORED, NOT_READY, MALFORMED, INVALID];
}

/// Certificates whose expiry and rotations are exported (`certificate` label).
pub mod certificates {
    /// The serving certificate.
    pub const SERVING: &str = "serving";
    /// The CA the serving certificate chains to (self-managed TLS only).
    pub const CA: &str = "ca";
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    certificate: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdmissionLabels {
    webhook: &'static str,
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    webhook: &'static str,
}

/// The webhook's metrics; clones share the same series.
#[derive(Clone, Debug)]
pub struct Metrics {
    admissions: Family<AdmissionLabels, Counter>,
    duration: Family<WebhookLabels, Histogram>,
    cached_engines: Family<WebhookLabels, Gauge>,
    certificate_expiry: Family<CertificateLabels, Gauge>,
    certificate_rotations: Family<CertificateLabels, Counter>,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            admissions: Family::default(),
            // 50 µs .. ~1.6 s: admission is in-memory, the tail shows contention.
            duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_05, 2.0, 16))),
            cached_engines: Family::default(),
            certificate_expiry: Family::default(),
            certificate_rotations: Family::default(),
        };
        registry.register(
            "lmcache_webhook_admission",
            "Admission reviews answered, by webhook, outcome and skip reason",
            metrics.admissions.clone(),
        );
        registry.register(
            "lmcache_webhook_admission_duration_seconds",
            "Time to answer one admission review, body read included",
            metrics.duration.clone(),
        );
        registry.register(
            "lmcache_webhook_cached_engines",
            "Engines in the webhook's watch caches (CacheBlendEngines for cacheblend, LMCacheEngines for lmcache)",
            metrics.cached_engines.clone(),
        );
        registry.register(
            "lmcache_webhook_certificate_expiry_timestamp_seconds",
            "notAfter of the certificate served (serving) and of the CA it chains to (ca, self-managed TLS), unix seconds",
            metrics.certificate_expiry.clone(),
        );
        registry.register(
            "lmcache_webhook_certificate_rotations",
            "Certificates this replica issued into the self-managed TLS Secret, by certificate",
            metrics.certificate_rotations.clone(),
        );
        // No expiry series until a certificate is known: a zero would read as long expired.
        for certificate in [certificates::SERVING, certificates::CA] {
            drop(
                metrics
                    .certificate_rotations
                    .get_or_create(&CertificateLabels { certificate }),
            );
        }
        // Publish every known series at zero so rates work from the first scrape.
        for webhook in Webhook::ALL {
            let webhook = webhook.as_str();
            for outcome in outcomes::ALL.into_iter().filter(|o| *o != outcomes::SKIPPED) {
                drop(metrics.admissions.get_or_create(&AdmissionLabels {
                    webhook,
                    outcome,
                    reason: "",
                }));
            }
            for reason in SkipReason::ALL {
                drop(metrics.admissions.get_or_create(&AdmissionLabels {
                    webhook,
                    outcome: outcomes::SKIPPED,
                    reason: reason.as_str(),
                }));
            }
            drop(metrics.duration.get_or_create(&WebhookLabels { webhook }));
            drop(metrics.cached_engines.get_or_create(&WebhookLabels { webhook }));
        }
        metrics
    }

    /// Counts one answered review.
    pub fn observe(&self, webhook: Webhook, outcome: &'static str, reason: &'static str, seconds: f64) {
        let webhook = webhook.as_str();
        self.admissions
            .get_or_create(&AdmissionLabels {
                webhook,
                outcome,
                reason,
            })
            .inc();
        self.duration
            .get_or_create(&WebhookLabels { webhook })
            .observe(seconds);
    }

    /// Sets the number of engines in `webhook`'s cache.
    pub fn set_cached_engines(&self, webhook: Webhook, count: usize) {
        self.cached_engines
            .get_or_create(&WebhookLabels {
                webhook: webhook.as_str(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Sets the expiry (unix seconds) of `certificate` ([`certificates`]).
    pub fn set_certificate_expiry(&self, certificate: &'static str, not_after: i64) {
        self.certificate_expiry
            .get_or_create(&CertificateLabels { certificate })
            .set(not_after);
    }

    /// Sets the serving expiry from the leaf being served (DER), whatever its source.
    pub fn observe_serving_leaf(&self, der: &[u8]) {
        if let Some(leaf) = crate::pki::Cert::from_der(der) {
            self.set_certificate_expiry(certificates::SERVING, leaf.not_after);
        }
    }

    /// Counts one certificate issued into the Secret.
    pub fn count_rotation(&self, certificate: &'static str) {
        self.certificate_rotations
            .get_or_create(&CertificateLabels { certificate })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.observe(Webhook::CacheBlend, outcomes::SKIPPED, "command-override", 0.001);
        metrics.observe(Webhook::Lmcache, outcomes::INJECTED, "", 0.0002);
        metrics.set_cached_engines(Webhook::CacheBlend, 3);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            !text.contains("lmcache_webhook_certificate_expiry_timestamp_seconds{"),
            "{text}"
        );
        metrics.set_certificate_expiry(certificates::SERVING, 1_800_000_000);
        metrics.set_certificate_expiry(certificates::CA, 2_000_000_000);
        metrics.count_rotation(certificates::SERVING);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for want in [
            r#"lmcache_webhook_admission_total{webhook="cacheblend",outcome="skipped",reason="command-override"} 1"#,
            r#"lmcache_webhook_admission_total{webhook="lmcache",outcome="injected",reason=""} 1"#,
            r#"lmcache_webhook_admission_total{webhook="lmcache",outcome="not_ready",reason=""} 0"#,
            r#"lmcache_webhook_admission_total{webhook="lmcache",outcome="malformed",reason=""} 0"#,
            r#"lmcache_webhook_admission_total{webhook="cacheblend",outcome="skipped",reason="engine-not-found"} 0"#,
            r#"lmcache_webhook_admission_duration_seconds_count{webhook="lmcache"} 1"#,
            r#"lmcache_webhook_cached_engines{webhook="cacheblend"} 3"#,
            r#"lmcache_webhook_cached_engines{webhook="lmcache"} 0"#,
            r#"lmcache_webhook_certificate_expiry_timestamp_seconds{certificate="serving"} 1800000000"#,
            r#"lmcache_webhook_certificate_expiry_timestamp_seconds{certificate="ca"} 2000000000"#,
            r#"lmcache_webhook_certificate_rotations_total{certificate="serving"} 1"#,
            r#"lmcache_webhook_certificate_rotations_total{certificate="ca"} 0"#,
        ] {
            assert!(text.contains(want), "missing {want}\n{text}");
        }
    }
}
