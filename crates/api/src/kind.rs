//! The three custom resource kinds, as one type shared by every crate.

use crate::constants::{KIND_BLEND_ENGINE, KIND_COORDINATOR, KIND_ENGINE};
use std::fmt;

/// One of the three kinds of `lmcache.lmcache.ai/v1alpha1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `LMCacheEngine`.
    Engine,
    /// `CacheBlendEngine`.
    BlendEngine,
    /// `LMCacheCoordinator`.
    Coordinator,
}

impl Kind {
    /// Every kind, in install order.
    pub const ALL: [Kind; 3] = [Kind::Engine, Kind::BlendEngine, Kind::Coordinator];

    /// The Kubernetes kind name (also the `kind` label of metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Engine => KIND_ENGINE,
            Self::BlendEngine => KIND_BLEND_ENGINE,
            Self::Coordinator => KIND_COORDINATOR,
        }
    }

    /// The kind named `kind`, if it is one of ours.
    pub fn from_kind_name(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
