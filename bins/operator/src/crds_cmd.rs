//! `lmcache-operator crds`: the three CRDs as one multi-document YAML stream.

/// The CRDs, `---`-separated, in install order.
pub fn render() -> Result<String, lmcache_manifest_renderer::RenderError> {
    let mut out = String::new();
    for crd in lmcache_api::crds() {
        out.push_str("---\n");
        out.push_str(&lmcache_manifest_renderer::yaml::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn three_crds() {
        let yaml = super::render().unwrap();
        assert_eq!(yaml.matches("kind: CustomResourceDefinition").count(), 3);
        for name in [
            "lmcacheengines.lmcache.lmcache.ai",
            "cacheblendengines.lmcache.lmcache.ai",
            "lmcachecoordinators.lmcache.lmcache.ai",
        ] {
            assert!(yaml.contains(&format!("name: {name}")), "{name}");
        }
    }
}
