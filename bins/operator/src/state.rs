//! Per-incarnation state kept between reconciles: Events already emitted, error backoff and
//! status writes waiting to be coalesced. All are keyed by UID (MT-2): a re-created object with the same name starts afresh, and the
//! entries of a deleted object are dropped by the watch (see `watches`).

use crate::keys::Uid;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// The one shape of the per-incarnation state: a value per UID behind a mutex. A poisoned lock
/// (a panic while it was held) is taken over, since every update leaves the map consistent.
#[derive(Debug)]
pub struct UidMap<T> {
    inner: Mutex<HashMap<Uid, T>>,
}

impl<T> Default for UidMap<T> {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
        }
    }
}

impl<T> UidMap<T> {
    /// Runs `f` with the map locked.
    pub fn with<R>(&self, f: impl FnOnce(&mut HashMap<Uid, T>) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Drops everything about `uid`.
    pub fn remove(&self, uid: &Uid) {
        self.with(|map| map.remove(uid));
    }

    /// Keeps only the entries whose UID satisfies `live`.
    pub fn retain(&self, live: impl Fn(&Uid) -> bool) {
        self.with(|map| map.retain(|uid, _| live(uid)));
    }

    /// Number of tracked objects.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.with(|map| map.len())
    }
}

/// First retry delay after an API error.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Which (reason, message) pairs were published for which generation of an object, so each is
/// published at most once per generation (operations.md §7).
#[derive(Debug, Default)]
pub struct EventLog {
    inner: UidMap<Published>,
}

/// The generation last seen and the (reason, message) pairs published for it.
type Published = (i64, HashSet<(String, String)>);

impl EventLog {
    /// Records the pair and returns `true` if it was not yet published for `generation`.
    pub fn first_time(&self, uid: &Uid, generation: i64, reason: &str, message: &str) -> bool {
        self.inner.with(|map| {
            let entry = map
                .entry(uid.clone())
                .or_insert_with(|| (generation, HashSet::new()));
            if entry.0 != generation {
                *entry = (generation, HashSet::new());
            }
            entry.1.insert((reason.to_string(), message.to_string()))
        })
    }

    /// Forgets a pair (publishing failed, so it may be tried again).
    pub fn unmark(&self, uid: &Uid, reason: &str, message: &str) {
        self.inner.with(|map| {
            if let Some((_, set)) = map.get_mut(uid) {
                set.remove(&(reason.to_string(), message.to_string()));
            }
        });
    }

    /// Drops everything about `uid`.
    pub fn forget(&self, uid: &Uid) {
        self.inner.remove(uid);
    }

    /// Keeps only the entries whose UID satisfies `live`.
    pub fn retain(&self, live: impl Fn(&Uid) -> bool) {
        self.inner.retain(live);
    }

    #[cfg(test)]
    /// Number of tracked objects.
    pub fn len(&self) -> usize {
        self.inner.len()
    }
}

/// Exponential retry delays per object: 1 s doubling to 5 min, reset by a successful reconcile.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: UidMap<u32>,
}

impl Backoff {
    /// The delay before retrying `uid` after one more failure.
    pub fn next_delay(&self, uid: &Uid) -> Duration {
        self.failures.with(|map| {
            let failures = map.entry(uid.clone()).or_insert(0);
            let delay = BACKOFF_BASE
                .checked_mul(1u32.checked_shl(*failures).unwrap_or(u32::MAX))
                .unwrap_or(BACKOFF_MAX)
                .min(BACKOFF_MAX);
            *failures = failures.saturating_add(1);
            delay
        })
    }

    /// Forgets the failures of `uid` (after a success or a deletion).
    pub fn reset(&self, uid: &Uid) {
        self.failures.remove(uid);
    }

    /// Keeps only the entries whose UID satisfies `live`.
    pub fn retain(&self, live: impl Fn(&Uid) -> bool) {
        self.failures.retain(live);
    }

    #[cfg(test)]
    /// Number of objects with failures.
    pub fn len(&self) -> usize {
        self.failures.len()
    }
}

/// Coalesces status writes per object. While pods come up the computed status changes every
/// few hundred milliseconds; writing each step costs the API server a write per engine per pod.
/// An intermediate status is written once it has been unchanged for [`STATUS_SETTLE`] (or has
/// been pending for [`STATUS_MAX_WAIT`]); an urgent one (a new generation, `Running`, a failure)
/// at once. So the last status of a rollout is late by at most the settle time.
#[derive(Debug)]
pub struct StatusCoalescer {
    pending: UidMap<PendingStatus>,
    settle: Duration,
    max_wait: Duration,
}

impl Default for StatusCoalescer {
    fn default() -> Self {
        Self::with_timing(STATUS_SETTLE, STATUS_MAX_WAIT)
    }
}

#[derive(Debug)]
struct PendingStatus {
    status: serde_json::Value,
    first: Instant,
    changed: Instant,
}

/// How long an intermediate status must stay unchanged before it is written.
pub const STATUS_SETTLE: Duration = Duration::from_secs(1);
/// How long an intermediate status may wait in all (a status that never settles).
pub const STATUS_MAX_WAIT: Duration = Duration::from_secs(5);

/// What to do with a computed status that differs from the stored one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusWrite {
    /// Write it now.
    Now,
    /// Reconcile again after this long and decide again.
    After(Duration),
}

impl StatusCoalescer {
    /// A coalescer with other timings (tests use zero: every status is written at once).
    pub fn with_timing(settle: Duration, max_wait: Duration) -> Self {
        Self {
            pending: UidMap::default(),
            settle,
            max_wait,
        }
    }

    /// Decides for `status` of `uid` at `now`.
    pub fn decide(&self, uid: &Uid, status: serde_json::Value, urgent: bool, now: Instant) -> StatusWrite {
        self.pending.with(|pending| {
            if urgent {
                pending.remove(uid);
                return StatusWrite::Now;
            }
            let entry = pending.entry(uid.clone()).or_insert_with(|| PendingStatus {
                status: status.clone(),
                first: now,
                changed: now,
            });
            if entry.status != status {
                entry.status = status;
                entry.changed = now;
            }
            let settled = entry.changed + self.settle;
            let deadline = entry.first + self.max_wait;
            let due = settled.min(deadline);
            if now >= due {
                pending.remove(uid);
                StatusWrite::Now
            } else {
                StatusWrite::After(due - now)
            }
        })
    }

    /// Forgets `uid`'s pending status (written, no longer needed, or the object is gone).
    pub fn forget(&self, uid: &Uid) {
        self.pending.remove(uid);
    }

    /// Keeps only the entries whose UID satisfies `live`.
    pub fn retain(&self, live: impl Fn(&Uid) -> bool) {
        self.pending.retain(live);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> Uid {
        Uid(s.to_string())
    }

    #[test]
    fn events_once_per_generation_and_uid() {
        let log = EventLog::default();
        assert!(log.first_time(&uid("a"), 1, "NameConflict", "m"));
        assert!(!log.first_time(&uid("a"), 1, "NameConflict", "m"));
        assert!(log.first_time(&uid("a"), 1, "NameConflict", "other"));
        assert!(log.first_time(&uid("a"), 2, "NameConflict", "m"));
        // Another incarnation (same name, new UID) is independent.
        assert!(log.first_time(&uid("b"), 2, "NameConflict", "m"));
        log.unmark(&uid("b"), "NameConflict", "m");
        assert!(log.first_time(&uid("b"), 2, "NameConflict", "m"));
        log.forget(&uid("a"));
        assert_eq!(log.len(), 1);
        log.retain(|u| u != &uid("b"));
        assert_eq!(log.len(), 0);
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let backoff = Backoff::default();
        let a = uid("a");
        let delays: Vec<u64> = (0..12).map(|_| backoff.next_delay(&a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff.next_delay(&uid("b")).as_secs(), 1, "per object");
        backoff.reset(&a);
        assert_eq!(backoff.next_delay(&a).as_secs(), 1);
        for _ in 0..100 {
            backoff.next_delay(&a);
        }
        assert_eq!(backoff.next_delay(&a), BACKOFF_MAX);
        backoff.retain(|_| false);
        assert_eq!(backoff.len(), 0);
    }

    #[test]
    fn intermediate_statuses_wait_to_settle_urgent_ones_do_not() {
        let gate = StatusCoalescer::default();
        let a = uid("a");
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let s = |n: i32| serde_json::json!({"readyInstances": n});
        assert_eq!(gate.decide(&a, s(0), false, t0), StatusWrite::After(ms(1000)));
        // A change restarts the settle time; the same status keeps it.
        assert_eq!(
            gate.decide(&a, s(1), false, t0 + ms(400)),
            StatusWrite::After(ms(1000))
        );
        assert_eq!(
            gate.decide(&a, s(1), false, t0 + ms(900)),
            StatusWrite::After(ms(500))
        );
        assert_eq!(gate.decide(&a, s(1), false, t0 + ms(1400)), StatusWrite::Now);
        // A status that never settles is written after the maximum wait.
        for step in 0..5 {
            let at = t0 + ms(2000 + 900 * step);
            assert!(matches!(
                gate.decide(&a, s(step as i32 + 10), false, at),
                StatusWrite::After(_)
            ));
        }
        assert_eq!(gate.decide(&a, s(99), false, t0 + ms(7000)), StatusWrite::Now);
        // Urgent: at once, and the pending one is dropped.
        assert!(matches!(
            gate.decide(&a, s(2), false, t0 + ms(8000)),
            StatusWrite::After(_)
        ));
        assert_eq!(gate.decide(&a, s(3), true, t0 + ms(8001)), StatusWrite::Now);
        assert_eq!(
            gate.decide(&a, s(4), false, t0 + ms(8002)),
            StatusWrite::After(ms(1000))
        );
        gate.retain(|u| u != &a);
        assert_eq!(
            gate.decide(&a, s(4), false, t0 + ms(8003)),
            StatusWrite::After(ms(1000))
        );
    }
}
