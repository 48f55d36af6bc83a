//! A uniquely named namespace per test, deleted when the guard drops (also on panic).

use crate::cluster::Cluster;
use crate::kubectl::Kubectl;
use anyhow::Context;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Label on every namespace the harness creates.
pub const E2E_LABEL: &str = "lmcache.ai/e2e";

/// A namespace labelled `pod-security.kubernetes.io/enforce=privileged`; deleted on drop
/// (without waiting: namespace deletion finishes in the background).
pub struct TempNamespace {
    name: String,
    kubectl: Kubectl,
}

impl TempNamespace {
    /// Creates `<prefix>-<unique suffix>`; `prefix` is shortened to keep the name ≤ 63 chars.
    pub async fn create(cluster: &Cluster, prefix: &str) -> anyhow::Result<Self> {
        let name = unique_name(prefix);
        let namespace: Namespace = serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "labels": {
                    E2E_LABEL: "true",
                    "pod-security.kubernetes.io/enforce": "privileged",
                }
            }
        }))?;
        Api::<Namespace>::all(cluster.client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(Self {
            name,
            kubectl: cluster.kubectl.clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TempNamespace {
    fn drop(&mut self) {
        self.kubectl.delete_namespace_blocking(&self.name);
    }
}

/// `prefix` (lowercased, DNS-1123 safe, ≤ 40 chars) plus a suffix unique per process and call.
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut clean: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    clean = clean.trim_matches('-').to_string();
    if clean.is_empty() || !clean.starts_with(|c: char| c.is_ascii_lowercase()) {
        clean.insert_str(0, "e2e-");
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{clean}-{:x}{:x}{n:x}",
        std::process::id() % 0xfff,
        nanos % 0xffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_dns_labels() {
        let a = unique_name("Validation_A4");
        let b = unique_name("Validation_A4");
        assert_ne!(a, b);
        for name in [a, b, unique_name("9-x"), unique_name(&"x".repeat(80))] {
            assert!(name.len() <= 63, "{name}");
            assert!(name.starts_with(|c: char| c.is_ascii_lowercase()), "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name}"
            );
        }
    }
}
