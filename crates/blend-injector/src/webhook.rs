//! The two webhooks' keys and names: everything that differs between them besides what they
//! change in the target container.

use lmcache_api::constants::{annotations, labels};

/// Which webhook a decision is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Webhook {
    /// `lmcache.ai/cacheblend-inject`: CacheBlendEngine, the CacheBlend plugin and vLLM flags.
    CacheBlend,
    /// `lmcache.ai/lmcache-inject`: LMCacheEngine, its connection JSON (the path KServe
    /// documents).
    Lmcache,
}

impl Webhook {
    /// Both, in the order the API server calls them (the MutatingWebhookConfiguration order).
    pub const ALL: [Webhook; 2] = [Self::CacheBlend, Self::Lmcache];

    /// The metric/log label: `cacheblend` or `lmcache`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CacheBlend => "cacheblend",
            Self::Lmcache => "lmcache",
        }
    }

    /// The opt-in pod label (its value must be exactly `"true"`).
    pub fn inject_label(self) -> &'static str {
        match self {
            Self::CacheBlend => labels::CACHEBLEND_INJECT,
            Self::Lmcache => labels::LMCACHE_INJECT,
        }
    }

    /// The pod annotation naming the engine.
    pub fn engine_annotation(self) -> &'static str {
        match self {
            Self::CacheBlend => annotations::CACHEBLEND_ENGINE,
            Self::Lmcache => annotations::LMCACHE_ENGINE,
        }
    }

    /// The pod annotation overriding the target container.
    pub fn container_annotation(self) -> &'static str {
        match self {
            Self::CacheBlend => annotations::CACHEBLEND_CONTAINER,
            Self::Lmcache => annotations::LMCACHE_CONTAINER,
        }
    }

    /// The result marker and idempotency guard.
    pub fn injected_annotation(self) -> &'static str {
        match self {
            Self::CacheBlend => annotations::CACHEBLEND_INJECTED,
            Self::Lmcache => annotations::LMCACHE_INJECTED,
        }
    }

    /// The skip-reason annotation.
    pub fn skip_annotation(self) -> &'static str {
        match self {
            Self::CacheBlend => annotations::CACHEBLEND_SKIP_REASON,
            Self::Lmcache => annotations::LMCACHE_SKIP_REASON,
        }
    }

    /// Name of the payload volume and its mount path (also `PYTHONPATH`'s new first entry).
    pub fn payload_volume(self) -> (&'static str, &'static str) {
        match self {
            Self::CacheBlend => ("cb-plugin", "/cb-plugin"),
            Self::Lmcache => ("lmcache-payload", "/lmcache-payload"),
        }
    }

    /// Name of the init container that copies the payload.
    pub fn stage_container(self) -> &'static str {
        match self {
            Self::CacheBlend => "cb-plugin-stage",
            Self::Lmcache => "lmcache-payload-stage",
        }
    }

    /// The kind of engine the pod names.
    pub fn engine_kind(self) -> &'static str {
        match self {
            Self::CacheBlend => "CacheBlendEngine",
            Self::Lmcache => "LMCacheEngine",
        }
    }
}

impl std::fmt::Display for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
