//! The API server's audit log of the product's own requests.
//!
//! `cargo xtask e2e` runs the operator and the webhook as their install.yaml ServiceAccounts
//! ([`OPERATOR_USER`], [`WEBHOOK_USER`]); `cargo xtask cluster up` audits only those users at Metadata
//! level (one event per request once the response completes or starts streaming), so a test can
//! count exactly what one component asked the API server between two points.

use crate::settings;
use anyhow::Context;
use serde_json::Value;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// User name of the operator process under `cargo xtask e2e`: its install.yaml
/// ServiceAccount in the e2e operator namespace (a TokenRequest token).
pub const OPERATOR_USER: &str = "system:serviceaccount:lmcache-e2e-system:lmcache-operator-controller";
/// User name of the webhook process under `cargo xtask e2e`.
pub const WEBHOOK_USER: &str = "system:serviceaccount:lmcache-e2e-system:lmcache-operator-webhook";

/// The audit log file.
pub struct AuditLog {
    path: PathBuf,
}

/// A position in the audit log.
#[derive(Clone, Copy, Debug)]
pub struct Mark(u64);

impl AuditLog {
    pub fn open() -> anyhow::Result<Self> {
        Ok(Self {
            path: settings::audit_log()?,
        })
    }

    /// The current end of the log.
    pub fn mark(&self) -> anyhow::Result<Mark> {
        let len = std::fs::metadata(&self.path)
            .map(|m| m.len())
            .with_context(|| format!("reading {}", self.path.display()))?;
        Ok(Mark(len))
    }

    /// Audit events of `user` written after `since`, oldest first.
    pub fn events_since(&self, since: Mark, user: &str) -> anyhow::Result<Vec<Value>> {
        let mut file =
            std::fs::File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))?;
        file.seek(SeekFrom::Start(since.0))?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["user"]["username"] == user)
            .collect())
    }
}

/// `verb requestURI` of an audit event, for messages.
pub fn describe(event: &Value) -> String {
    format!(
        "{} {}",
        event["verb"].as_str().unwrap_or("?"),
        event["requestURI"].as_str().unwrap_or("?")
    )
}
