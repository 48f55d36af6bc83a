//! Types shared by the three kinds.

use garde::Validate;
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::LazyLock;

/// Default engine and coordinator image repository.
pub const DEFAULT_IMAGE_REPOSITORY: &str = "lmcache/vllm-openai";
/// Default image tag.
pub const DEFAULT_IMAGE_TAG: &str = "latest";

pub(crate) fn default_image_repository() -> String {
    DEFAULT_IMAGE_REPOSITORY.into()
}
pub(crate) fn default_image_tag() -> String {
    DEFAULT_IMAGE_TAG.into()
}
pub(crate) fn default_true() -> bool {
    true
}
pub(crate) fn default_metrics_port() -> i32 {
    9090
}
pub(crate) fn default_interval() -> String {
    "30s".into()
}

/// Prometheus duration (rules E12 and C13).
pub const DURATION_PATTERN: &str =
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$";

/// [`DURATION_PATTERN`] as the argument of `#[garde(pattern(PrometheusDuration))]`: garde
/// matches with it, and schemars writes its text (`Display`) as the schema's `pattern`, so the one
/// constant is both the operator's check and the API server's.
pub(crate) struct PrometheusDuration;

static DURATION_REGEX: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(DURATION_PATTERN).ok());

impl garde::rules::AsStr for PrometheusDuration {
    fn as_str(&self) -> &str {
        DURATION_PATTERN
    }
}

impl garde::rules::pattern::Matcher for PrometheusDuration {
    fn is_match(&self, haystack: &str) -> bool {
        // The pattern is a constant that the tests compile; were it invalid, nothing would match.
        DURATION_REGEX.as_ref().is_some_and(|re| re.is_match(haystack))
    }
}

impl fmt::Display for PrometheusDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(DURATION_PATTERN)
    }
}

/// Container image of the engine or coordinator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Validate)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Container image repository.
    #[serde(default = "default_image_repository")]
    #[garde(skip)]
    pub repository: String,
    /// Container image tag.
    #[serde(default = "default_image_tag")]
    #[garde(skip)]
    pub tag: String,
    /// Image pull policy.
    #[serde(default)]
    #[garde(skip)]
    pub pull_policy: PullPolicy,
}

impl Default for ImageSpec {
    fn default() -> Self {
        Self {
            repository: default_image_repository(),
            tag: default_image_tag(),
            pull_policy: PullPolicy::default(),
        }
    }
}

impl ImageSpec {
    /// `repository:tag`, the container's `image`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }
}

/// Image pull policy (rules E19, B03, C11).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Never pull.
    Never,
    /// Pull when the image is not present.
    #[default]
    IfNotPresent,
}

impl PullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::Never => "Never",
            Self::IfNotPresent => "IfNotPresent",
        }
    }
}

/// Server log level (rules E18, C10).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// Debug.
    Debug,
    /// Info.
    #[default]
    Info,
    /// Warning.
    Warning,
    /// Error.
    Error,
}

impl LogLevel {
    /// The value of `LMCACHE_LOG_LEVEL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warning => "WARNING",
            Self::Error => "ERROR",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// garde rule: strictly positive number (the schema side is `exclusive_minimum_zero`).
pub(crate) fn positive(value: &f64, _: &()) -> garde::Result {
    if *value > 0.0 {
        Ok(())
    } else {
        Err(garde::Error::new("must be greater than 0"))
    }
}

/// garde rule: a fraction in (0, 1].
pub(crate) fn unit_fraction(value: &f64, _: &()) -> garde::Result {
    if *value > 0.0 && *value <= 1.0 {
        Ok(())
    } else {
        Err(garde::Error::new("must be in (0.0, 1.0]"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use garde::rules::pattern::Matcher;

    #[test]
    fn duration_pattern_compiles_and_matches_prometheus_durations() {
        assert!(Regex::new(DURATION_PATTERN).is_ok());
        for ok in ["0", "30s", "1m", "1h30m", "2w3d", "1y", "500ms", "1h0m0s"] {
            assert!(PrometheusDuration.is_match(ok), "{ok}");
        }
        // The empty string matches: `minLength: 1` (garde's `length`) rejects it.
        assert!(PrometheusDuration.is_match(""));
        for bad in ["30", "1.5s", "30 seconds", "1m1h", "-1s", "1h "] {
            assert!(!PrometheusDuration.is_match(bad), "{bad}");
        }
    }
}
