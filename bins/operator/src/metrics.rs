//! The controller's Prometheus metrics (operations.md §7). No per-object labels.

use crate::keys::Kind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `result` label values of `lmcache_operator_reconcile_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconcileResult {
    /// Children converged and status written.
    Success,
    /// An API error; retried with backoff.
    Error,
    /// Validation failed or the coordinator reference is dangling.
    Invalid,
    /// A child name is taken by an object this CR does not control.
    Conflict,
}

impl ReconcileResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::Invalid => "invalid",
            Self::Conflict => "conflict",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EvictionLabels {
    kind: &'static str,
    result: &'static str,
}

/// `result` label values of `lmcache_operator_client_evictions_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictionResult {
    /// The Eviction API accepted it.
    Evicted,
    /// Refused (429: a PodDisruptionBudget); retried.
    Refused,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Labels of `lmcache_operator_api_writes_total`: HTTP verb and resource (`daemonsets`,
/// `lmcacheengines/status`, `events`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `POST`, `PUT`, `PATCH` or `DELETE`.
    pub verb: String,
    /// Resource plural, with `/<subresource>` when one is addressed.
    pub kind: String,
}

/// Every metric the controller exports. Cheap to clone (the families are shared).
#[derive(Clone, Debug)]
pub struct Metrics {
    reconciles: Family<ReconcileLabels, Counter>,
    durations: Family<KindLabels, Histogram>,
    objects: Family<KindLabels, Gauge>,
    writes: Family<WriteLabels, Counter>,
    evictions: Family<EvictionLabels, Counter>,
    missed_injections: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            durations: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 15))),
            objects: Family::default(),
            writes: Family::default(),
            evictions: Family::default(),
            missed_injections: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric in `registry` under `lmcache_operator_*`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "lmcache_operator_reconcile",
            "Reconciles by custom resource kind and result",
            self.reconciles.clone(),
        );
        registry.register(
            "lmcache_operator_reconcile_duration_seconds",
            "Reconcile duration by custom resource kind",
            self.durations.clone(),
        );
        registry.register(
            "lmcache_operator_objects",
            "Custom resources in the watch cache by kind",
            self.objects.clone(),
        );
        registry.register(
            "lmcache_operator_api_writes",
            "Write requests (POST, PUT, PATCH, DELETE) sent to the Kubernetes API by verb and resource",
            self.writes.clone(),
        );
        registry.register(
            "lmcache_operator_client_evictions",
            "Client pods the operator asked the Eviction API to evict after their engine pod was replaced, by engine kind and result",
            self.evictions.clone(),
        );
        registry.register(
            "lmcache_operator_missed_injections",
            "Pods opted into a webhook (lmcache.ai/cacheblend-inject or lmcache.ai/lmcache-inject) that were admitted without it and run without LMCache",
            self.missed_injections.clone(),
        );
    }

    /// Sets the number of missed injections (pods opted into a webhook, admitted without it).
    pub fn set_missed_injections(&self, count: usize) {
        self.missed_injections
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts `count` eviction requests of client pods of an engine of `kind`.
    pub fn client_evictions(&self, kind: Kind, result: EvictionResult, count: usize) {
        let result = match result {
            EvictionResult::Evicted => "evicted",
            EvictionResult::Refused => "refused",
        };
        self.evictions
            .get_or_create(&EvictionLabels {
                kind: kind.as_str(),
                result,
            })
            .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }

    /// Counts one finished reconcile and its duration.
    pub fn reconciled(&self, kind: Kind, result: ReconcileResult, seconds: f64) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind: kind.as_str(),
                result: result.as_str(),
            })
            .inc();
        self.durations
            .get_or_create(&KindLabels { kind: kind.as_str() })
            .observe(seconds);
    }

    /// Sets the number of cached objects of `kind`.
    pub fn set_objects(&self, kind: Kind, count: usize) {
        self.objects
            .get_or_create(&KindLabels { kind: kind.as_str() })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts one write request.
    pub fn count_write(&self, verb: &str, kind: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                verb: verb.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }

    #[cfg(test)]
    /// Write requests counted so far for `verb` and `kind`.
    pub fn writes(&self, verb: &str, kind: &str) -> u64 {
        self.writes
            .get_or_create(&WriteLabels {
                verb: verb.to_string(),
                kind: kind.to_string(),
            })
            .get()
    }

    #[cfg(test)]
    /// Reconciles counted so far for `kind` and `result`.
    pub fn reconciles(&self, kind: Kind, result: ReconcileResult) -> u64 {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind: kind.as_str(),
                result: result.as_str(),
            })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_documented_names() {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.reconciled(Kind::Engine, ReconcileResult::Success, 0.01);
        metrics.set_objects(Kind::Coordinator, 2);
        metrics.count_write("PATCH", "daemonsets");
        metrics.client_evictions(Kind::Engine, EvictionResult::Refused, 2);
        metrics.set_missed_injections(3);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"lmcache_operator_reconcile_total{kind="LMCacheEngine",result="success"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("lmcache_operator_reconcile_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains(r#"lmcache_operator_objects{kind="LMCacheCoordinator"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"lmcache_operator_api_writes_total{verb="PATCH",kind="daemonsets"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"lmcache_operator_client_evictions_total{kind="LMCacheEngine",result="refused"} 2"#
            ),
            "{text}"
        );
    }
}
