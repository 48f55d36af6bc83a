//! Pure rendering of every object the LMCache operator creates for its custom resources.
//!
//! No client, no I/O: a validated spec (plus a resolved coordinator URL) in, typed k8s-openapi
//! objects out. The same bytes come out for the same input.

pub mod connection;
pub mod json;
pub mod number;

pub use connection::{ConnectionKind, blend_kv_transfer_config, kv_transfer_config};
