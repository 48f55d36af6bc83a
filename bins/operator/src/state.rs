//! Per-incarnation state kept between reconciles: Events already emitted and error backoff.
//! Both are keyed by UID (MT-2): a re-created object with the same name starts afresh, and the
//! entries of a deleted object are dropped by the watch (see `watches`).

use crate::keys::Uid;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// First retry delay after an API error.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Which (reason, message) pairs were published for which generation of an object, so each is
/// published at most once per generation (operations.md §7).
#[derive(Debug, Default)]
pub struct EventLog {
    inner: Mutex<HashMap<Uid, Published>>,
}

/// The generation last seen and the (reason, message) pairs published for it.
type Published = (i64, HashSet<(String, String)>);

impl EventLog {
    /// Records the pair and returns `true` if it was not yet published for `generation`.
    pub fn first_time(&self, uid: &Uid, generation: i64, reason: &str, message: &str) -> bool {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map
            .entry(uid.clone())
            .or_insert_with(|| (generation, HashSet::new()));
        if entry.0 != generation {
            *entry = (generation, HashSet::new());
        }
        entry.1.insert((reason.to_string(), message.to_string()))
    }

    /// Forgets a pair (publishing failed, so it may be tried again).
    pub fn unmark(&self, uid: &Uid, reason: &str, message: &str) {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, set)) = map.get_mut(uid) {
            set.remove(&(reason.to_string(), message.to_string()));
        }
    }

    /// Drops everything about `uid`.
    pub fn forget(&self, uid: &Uid) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(uid);
    }

    /// Keeps only the entries whose UID satisfies `live`.
    pub fn retain(&self, live: impl Fn(&Uid) -> bool) {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|uid, _| live(uid));
    }

    #[cfg(test)]
    /// Number of tracked objects.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// Exponential retry delays per object: 1 s doubling to 5 min, reset by a successful reconcile.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<Uid, u32>>,
}

impl Backoff {
    /// The delay before retrying `uid` after one more failure.
    pub fn next_delay(&self, uid: &Uid) -> Duration {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let failures = map.entry(uid.clone()).or_insert(0);
        let delay = BACKOFF_BASE
            .checked_mul(1u32.checked_shl(*failures).unwrap_or(u32::MAX))
            .unwrap_or(BACKOFF_MAX)
            .min(BACKOFF_MAX);
        *failures = failures.saturating_add(1);
        delay
    }

    /// Forgets the failures of `uid` (after a success or a deletion).
    pub fn reset(&self, uid: &Uid) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(uid);
    }

    /// Keeps only the entries whose UID satisfies `live`.
    pub fn retain(&self, live: impl Fn(&Uid) -> bool) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|uid, _| live(uid));
    }

    #[cfg(test)]
    /// Number of objects with failures.
    pub fn len(&self) -> usize {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).len()
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
}
