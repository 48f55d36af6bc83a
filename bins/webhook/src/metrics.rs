//! `lmcache_webhook_*` metrics (operations.md §7). No per-object labels.

use lmcache_blend_injector::SkipReason;
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
    /// Left unchanged: not a pod CREATE, undecodable, not opted in, already injected, or an
    /// invalid review.
    pub const IGNORED: &str = "ignored";
    /// The engine cache had not completed its initial list.
    pub const NOT_READY: &str = "not_ready";
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdmissionLabels {
    outcome: &'static str,
    reason: &'static str,
}

/// The webhook's metrics; clones share the same series.
#[derive(Clone, Debug)]
pub struct Metrics {
    admissions: Family<AdmissionLabels, Counter>,
    duration: Histogram,
    cached_engines: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            admissions: Family::default(),
            // 50 µs .. ~1.6 s: admission is in-memory, the tail shows contention.
            duration: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            cached_engines: Gauge::default(),
        };
        registry.register(
            "lmcache_webhook_admission",
            "Admission reviews answered, by outcome and skip reason",
            metrics.admissions.clone(),
        );
        registry.register(
            "lmcache_webhook_admission_duration_seconds",
            "Time to answer one admission review, body read included",
            metrics.duration.clone(),
        );
        registry.register(
            "lmcache_webhook_cached_engines",
            "CacheBlendEngines in the webhook's watch cache",
            metrics.cached_engines.clone(),
        );
        // Publish every known series at zero so rates work from the first scrape.
        for outcome in [outcomes::INJECTED, outcomes::IGNORED, outcomes::NOT_READY] {
            drop(
                metrics
                    .admissions
                    .get_or_create(&AdmissionLabels { outcome, reason: "" }),
            );
        }
        for reason in SkipReason::ALL {
            drop(metrics.admissions.get_or_create(&AdmissionLabels {
                outcome: outcomes::SKIPPED,
                reason: reason.as_str(),
            }));
        }
        metrics
    }

    /// Counts one answered review.
    pub fn observe(&self, outcome: &'static str, reason: &'static str, seconds: f64) {
        self.admissions
            .get_or_create(&AdmissionLabels { outcome, reason })
            .inc();
        self.duration.observe(seconds);
    }

    /// Sets the number of cached engines.
    pub fn set_cached_engines(&self, count: usize) {
        self.cached_engines.set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.observe(outcomes::SKIPPED, "command-override", 0.001);
        metrics.observe(outcomes::INJECTED, "", 0.0002);
        metrics.set_cached_engines(3);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for want in [
            r#"lmcache_webhook_admission_total{outcome="skipped",reason="command-override"} 1"#,
            r#"lmcache_webhook_admission_total{outcome="injected",reason=""} 1"#,
            r#"lmcache_webhook_admission_total{outcome="not_ready",reason=""} 0"#,
            r#"lmcache_webhook_admission_total{outcome="skipped",reason="engine-not-found"} 0"#,
            "lmcache_webhook_admission_duration_seconds_count 2",
            "lmcache_webhook_cached_engines 3",
        ] {
            assert!(text.contains(want), "missing {want}\n{text}");
        }
    }
}
