//! Reconcile tests against a fake API server.
