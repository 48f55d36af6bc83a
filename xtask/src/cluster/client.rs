//! A kube client for the local cluster (the bench, the install test) and the engine resource it
//! reads and writes untyped.

use anyhow::{Context, bail};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::ApiResource;
use lmcache_api::v1alpha1::LMCacheEngine;
use std::net::IpAddr;
use std::path::Path;

/// A client for the local cluster; refuses any API server outside 127.0.0.0/8.
pub async fn connect(kubeconfig: &Path) -> anyhow::Result<Client> {
    let file =
        Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?;
    let host = config.cluster_url.host().unwrap_or_default();
    let loopback = host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!(
            "{} points at {host}: the bench only talks to 127.0.0.0/8",
            kubeconfig.display()
        );
    }
    Ok(Client::try_from(config)?)
}

pub fn engine_resource() -> ApiResource {
    ApiResource::erase::<LMCacheEngine>(&())
}
