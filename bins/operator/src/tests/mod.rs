//! Reconcile decisions against an in-memory API server (tower-test mock): create, drift
//! repair, invalid specs, status transitions, zero-write steady state, coordinator re-render,
//! NameConflict, ServiceMonitor availability, and multi-tenancy.

mod fake_api;
mod harness;
mod reconcile;
