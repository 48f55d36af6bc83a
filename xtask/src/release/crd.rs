//! `cargo xtask crd [--check]`: deploy/crds/<plural>.lmcache.lmcache.ai.yaml from the Rust types.

use crate::util::{root, write_or_check};
use anyhow::{Context, bail};

/// Renders every CRD as one YAML document (what `deploy/crds/` holds).
pub fn render() -> anyhow::Result<Vec<(String, String)>> {
    lmcache_api::crds()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().context("CRD without a name")?;
            Ok((name, serde_saphyr::to_string(&crd)?))
        })
        .collect()
}

pub fn run(check: bool) -> anyhow::Result<()> {
    let dir = root().join("deploy/crds");
    let mut current = true;
    for (name, yaml) in render()? {
        current &= write_or_check(&dir.join(format!("{name}.yaml")), &yaml, check)?;
    }
    if !current {
        bail!("deploy/crds is stale: run `cargo xtask crd` and commit the result");
    }
    Ok(())
}
