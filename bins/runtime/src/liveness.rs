//! Liveness: alive unless a registered check has been failing for longer than its limit, so
//! the kubelet restarts a process that is stuck (lifecycle.md §4) — for example a leader
//! whose watches never list because a CRD or an RBAC rule is missing.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The shared liveness state served on `/healthz` and `/live`. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Liveness {
    checks: Arc<Mutex<Vec<Arc<Check>>>>,
}

#[derive(Debug)]
struct Check {
    name: String,
    limit: Duration,
    /// When the current failure started; `None` while healthy.
    failing_since: Mutex<Option<Instant>>,
}

/// One named condition of liveness, healthy when created.
#[derive(Clone, Debug)]
pub struct LivenessCheck {
    check: Arc<Check>,
}

impl Liveness {
    /// Alive, with no checks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check that makes the process unhealthy once it has failed for `limit` without a
    /// success in between.
    pub fn check(&self, name: impl Into<String>, limit: Duration) -> LivenessCheck {
        let check = Arc::new(Check {
            name: name.into(),
            limit,
            failing_since: Mutex::new(None),
        });
        self.checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(check.clone());
        LivenessCheck { check }
    }

    /// Why the process is unhealthy (`name: failing for Ns`), empty when alive.
    pub fn problems(&self) -> Vec<String> {
        let checks = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        checks
            .iter()
            .filter_map(|c| {
                let since = (*c.failing_since.lock().unwrap_or_else(PoisonError::into_inner))?;
                let failing = since.elapsed();
                (failing >= c.limit).then(|| format!("{}: failing for {}s", c.name, failing.as_secs()))
            })
            .collect()
    }
}

impl LivenessCheck {
    /// A success: the check is healthy again.
    pub fn ok(&self) {
        *self.lock() = None;
    }

    /// A failure; the clock keeps running from the first failure since the last success.
    pub fn failing(&self) {
        self.lock().get_or_insert_with(Instant::now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.check
            .failing_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_only_after_failing_for_the_limit() {
        let liveness = Liveness::new();
        let quick = liveness.check("watch pods", Duration::ZERO);
        let slow = liveness.check("watch engines", Duration::from_secs(3600));
        assert!(liveness.problems().is_empty());
        slow.failing();
        assert!(liveness.problems().is_empty(), "not for an hour");
        quick.failing();
        quick.failing();
        assert_eq!(liveness.problems(), ["watch pods: failing for 0s"]);
        quick.ok();
        assert!(liveness.problems().is_empty());
    }
}
