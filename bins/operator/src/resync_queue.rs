//! Resyncs wait behind changes.
//!
//! After a (re)list the operator reconciles every custom resource once: a child deleted while a
//! watch was down must be recreated, and after an operator upgrade every child must be checked
//! against the new rendering. With a thousand engines that is seconds of work, and a user's
//! change that arrives meanwhile used to wait behind all of it in the controller's queue (the
//! change latency under load in docs/benchmarks.md). So resyncs are low priority, as in
//! controller-runtime's priority queue: they wait here and are handed to the controllers only a
//! few at a time (the queue's budget, twice the reconcile slots), while changes go straight to
//! the controllers and so wait behind at most that many resyncs.
//!
//! A key is in flight from its hand-over until a reconcile of it ends ([`ResyncQueue::done`];
//! also when the controller finds its object gone).

use crate::keys::ObjectKey;
use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Inner {
    /// Waiting, oldest first.
    queued: VecDeque<ObjectKey>,
    /// The same keys, to drop duplicates.
    waiting: HashSet<ObjectKey>,
    /// Handed to a controller, not reconciled yet.
    in_flight: HashSet<ObjectKey>,
}

/// The queue of low-priority reconciles. Shared by the watches (which push) and the reconciles
/// (which report them done).
#[derive(Debug)]
pub struct ResyncQueue {
    inner: Mutex<Inner>,
    changed: Notify,
    budget: usize,
}

impl ResyncQueue {
    /// A queue handing over at most `budget` keys at a time (at least one).
    pub fn new(budget: usize) -> Self {
        Self {
            inner: Mutex::default(),
            changed: Notify::new(),
            budget: budget.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a resync of `key` (nothing when it is already waiting or in flight: that
    /// reconcile will read the caches as they are now).
    pub fn push(&self, key: ObjectKey) {
        let mut inner = self.lock();
        if inner.in_flight.contains(&key) || !inner.waiting.insert(key.clone()) {
            return;
        }
        inner.queued.push_back(key);
        drop(inner);
        self.changed.notify_one();
    }

    /// A reconcile of `key` ended (or its object is gone): frees its place.
    pub fn done(&self, key: &ObjectKey) {
        if self.lock().in_flight.remove(key) {
            self.changed.notify_one();
        }
    }

    /// The next key when one waits and fewer than the budget are in flight; `None` otherwise.
    pub fn try_next(&self) -> Option<ObjectKey> {
        let mut inner = self.lock();
        if inner.in_flight.len() >= self.budget {
            return None;
        }
        let key = inner.queued.pop_front()?;
        inner.waiting.remove(&key);
        inner.in_flight.insert(key.clone());
        Some(key)
    }

    /// Waits for [`Self::try_next`] to give a key.
    pub async fn next(&self) -> ObjectKey {
        loop {
            // Registered before the check, so a push or done in between is not missed.
            let changed = self.changed.notified();
            if let Some(key) = self.try_next() {
                return key;
            }
            changed.await;
        }
    }

    /// Keys waiting (not in flight).
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.lock().queued.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Kind;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new(Kind::Engine, "team-a", name)
    }

    #[test]
    fn hands_over_at_most_the_budget_in_order_without_duplicates() {
        let queue = ResyncQueue::new(2);
        for name in ["a", "b", "a", "c", "d"] {
            queue.push(key(name));
        }
        assert_eq!(queue.waiting(), 4);
        assert_eq!(queue.try_next(), Some(key("a")));
        assert_eq!(queue.try_next(), Some(key("b")));
        assert_eq!(queue.try_next(), None, "two in flight");
        // A key in flight is not queued again; another tenant's key of that name is its own.
        queue.push(key("a"));
        queue.push(ObjectKey::new(Kind::Engine, "team-b", "a"));
        assert_eq!(queue.waiting(), 3);
        queue.done(&key("b"));
        assert_eq!(queue.try_next(), Some(key("c")));
        // Done for a key not in flight (a change's reconcile) frees nothing.
        queue.done(&key("z"));
        assert_eq!(queue.try_next(), None);
        queue.done(&key("a"));
        assert_eq!(queue.try_next(), Some(key("d")));
    }

    #[tokio::test]
    async fn next_waits_for_a_free_place() {
        let queue = std::sync::Arc::new(ResyncQueue::new(1));
        queue.push(key("a"));
        queue.push(key("b"));
        assert_eq!(queue.next().await, key("a"));
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        queue.done(&key("a"));
        assert_eq!(waiter.await.unwrap(), key("b"));
    }
}
