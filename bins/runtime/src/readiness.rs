//! Readiness: ready when every registered gate is open and the process is not draining.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// The shared readiness state served on `/ready` and `/readyz`. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    gates: RwLock<Vec<Arc<Gate>>>,
    draining: AtomicBool,
}

#[derive(Debug)]
struct Gate {
    name: String,
    open: AtomicBool,
}

/// One condition of readiness (for example "engine cache synced"), closed when created.
#[derive(Clone, Debug)]
pub struct ReadyGate {
    gate: Arc<Gate>,
}

impl Readiness {
    /// Ready as soon as created, until a gate is added or draining starts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a closed gate: the process is not ready until it is opened.
    pub fn gate(&self, name: impl Into<String>) -> ReadyGate {
        let gate = Arc::new(Gate {
            name: name.into(),
            open: AtomicBool::new(false),
        });
        self.inner
            .gates
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(gate.clone());
        ReadyGate { gate }
    }

    /// Marks the process as draining: never ready again.
    pub fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Why the process is not ready (`draining`, then the names of closed gates).
    pub fn not_ready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.inner.draining.load(Ordering::SeqCst) {
            reasons.push("draining".to_string());
        }
        let gates = self.inner.gates.read().unwrap_or_else(PoisonError::into_inner);
        reasons.extend(
            gates
                .iter()
                .filter(|g| !g.open.load(Ordering::SeqCst))
                .map(|g| g.name.clone()),
        );
        reasons
    }
}

impl ReadyGate {
    /// Opens (`true`) or closes the gate.
    pub fn set(&self, open: bool) {
        self.gate.open.store(open, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_and_draining() {
        let readiness = Readiness::new();
        assert!(readiness.not_ready_reasons().is_empty());
        let cache = readiness.gate("engine-cache");
        let cert = readiness.gate("certificate");
        assert_eq!(readiness.not_ready_reasons(), ["engine-cache", "certificate"]);
        cache.set(true);
        assert!(!readiness.not_ready_reasons().is_empty());
        cert.set(true);
        assert!(readiness.not_ready_reasons().is_empty());
        readiness.clone().set_draining();
        assert_eq!(readiness.not_ready_reasons(), ["draining"]);
    }
}
