//! `lmcache.lmcache.ai/v1alpha1`.

mod blend;
mod common;
mod coordinator;
mod engine;
mod injection;
mod pod;
mod rollout;
pub(crate) mod schema;
mod status;

pub use blend::*;
pub use common::*;
pub use coordinator::*;
pub use engine::*;
pub use injection::Injection;
pub use pod::PodConfig;
pub use rollout::*;
pub use status::*;
