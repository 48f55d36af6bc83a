//! The three custom resource kinds and table-driven apply checks for schema behaviours.

use crate::cluster::Cluster;
use crate::json::merged;
use crate::namespace::TempNamespace;
use anyhow::bail;
use serde_json::{Value, json};

/// API group and version of every kind.
pub const API_VERSION: &str = "lmcache.lmcache.ai/v1alpha1";

/// The product's custom resource kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Engine,
    BlendEngine,
    Coordinator,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Engine, Kind::BlendEngine, Kind::Coordinator];

    pub fn kind(self) -> &'static str {
        match self {
            Kind::Engine => "LMCacheEngine",
            Kind::BlendEngine => "CacheBlendEngine",
            Kind::Coordinator => "LMCacheCoordinator",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Engine => "lmcacheengines",
            Kind::BlendEngine => "cacheblendengines",
            Kind::Coordinator => "lmcachecoordinators",
        }
    }

    pub fn short_name(self) -> &'static str {
        match self {
            Kind::Engine => "lmc",
            Kind::BlendEngine => "cbe",
            Kind::Coordinator => "lmcc",
        }
    }

    /// The smallest valid spec (the spec examples' minimal objects).
    pub fn minimal_spec(self) -> Value {
        match self {
            Kind::Engine => json!({"l1": {"sizeGB": 60}}),
            Kind::BlendEngine => json!({
                "l1": {"sizeGB": 60},
                "injection": {"payloadImage": {"repository": "registry.example.com/cacheblend-plugin", "tag": "v1"}}
            }),
            Kind::Coordinator => json!({"port": 9300}),
        }
    }

    /// A manifest (JSON, which kubectl reads as YAML) of this kind.
    pub fn manifest(self, name: &str, spec: &Value) -> String {
        json!({
            "apiVersion": API_VERSION,
            "kind": self.kind(),
            "metadata": {"name": name},
            "spec": spec,
        })
        .to_string()
    }
}

/// What applying a [`Case`] must do.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Stored.
    Accepted,
    /// Rejected, and the error contains every one of these strings (field path and phrase).
    Rejected(Vec<String>),
}

/// One `kubectl apply` of `kind` with `minimal_spec` merge-patched by `patch`.
#[derive(Clone, Debug)]
pub struct Case {
    pub label: String,
    pub kind: Kind,
    pub name: Option<String>,
    pub patch: Value,
    pub outcome: Outcome,
}

impl Case {
    /// A case that must be rejected with every string of `expect` in the error.
    pub fn rejected(label: &str, kind: Kind, patch: Value, expect: &[&str]) -> Self {
        Self {
            label: label.to_string(),
            kind,
            name: None,
            patch,
            outcome: Outcome::Rejected(expect.iter().map(|s| s.to_string()).collect()),
        }
    }

    /// A case that must be stored.
    pub fn accepted(label: &str, kind: Kind, patch: Value) -> Self {
        Self {
            label: label.to_string(),
            kind,
            name: None,
            patch,
            outcome: Outcome::Accepted,
        }
    }

    /// The same case with an explicit object name.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
}

/// Applies every case in `namespace` with `kubectl apply` and fails listing each case whose
/// outcome differs; afterwards no rejected object may exist.
pub async fn check_cases(cluster: &Cluster, namespace: &TempNamespace, cases: &[Case]) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    let mut rejected_names = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let name = case.name.clone().unwrap_or_else(|| format!("case-{i}"));
        let spec = merged(&case.kind.minimal_spec(), &case.patch);
        let out = cluster
            .kubectl
            .apply(namespace.name(), &case.kind.manifest(&name, &spec))
            .await?;
        let said = format!("{}{}", out.stdout.trim(), out.stderr.trim());
        match &case.outcome {
            Outcome::Accepted if !out.success => {
                failures.push(format!("{}: expected accepted, got: {said}", case.label));
            }
            Outcome::Rejected(_) if out.success => {
                failures.push(format!("{}: expected rejected, got: {said}", case.label));
            }
            Outcome::Rejected(expect) => {
                rejected_names.push((case.kind, name));
                let missing: Vec<&String> = expect
                    .iter()
                    .filter(|e| !out.stderr.contains(e.as_str()))
                    .collect();
                if !missing.is_empty() {
                    failures.push(format!(
                        "{}: error lacks {missing:?}; kubectl said: {said}",
                        case.label
                    ));
                }
            }
            Outcome::Accepted => {}
        }
    }
    // "Nothing is stored": none of the rejected names exists.
    for kind in Kind::ALL {
        let listed = cluster
            .kubectl
            .run(&["get", kind.plural(), "-n", namespace.name(), "-o", "name"])
            .await?
            .ok()?;
        for (_, name) in rejected_names.iter().filter(|(k, _)| *k == kind) {
            if listed.lines().any(|l| l.ends_with(&format!("/{name}"))) {
                failures.push(format!("{} {name} was stored although rejected", kind.kind()));
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} cases failed:\n- {}",
            failures.len(),
            cases.len(),
            failures.join("\n- ")
        );
    }
    Ok(())
}

/// Waits until every CRD in `names` (`<plural>.<group>`) is Established. Not `kubectl wait
/// --for=condition=Established`: it fails at once on a CRD so new that it has no conditions yet.
pub async fn wait_established(cluster: &Cluster, names: &[&str]) -> anyhow::Result<()> {
    crate::wait::until(
        &format!("CRDs {names:?} Established"),
        std::time::Duration::from_secs(60),
        || async {
            for name in names {
                let out = cluster
                    .kubectl
                    .run(&[
                        "get",
                        &format!("crd/{name}"),
                        "-o",
                        "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
                    ])
                    .await?;
                if !out.success || out.stdout.trim() != "True" {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await
}
