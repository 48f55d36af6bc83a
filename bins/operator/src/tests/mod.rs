//! Reconcile decisions against an in-memory API server (tower-test mock): create, drift
//! repair, invalid specs, status transitions, zero-write steady state, coordinator re-render,
//! NameConflict, ServiceMonitor availability, and multi-tenancy; the background Event sender and
//! the initial-list probe against mock API servers.

mod events;
mod fake_api;
mod harness;
mod list_strategy;
mod reconcile;
