//! The connection to the test cluster.

use crate::kubectl::Kubectl;
use crate::settings;
use anyhow::{Context, bail};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::net::IpAddr;

/// A kube client and a kubectl for the local test cluster.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub kubectl: Kubectl,
}

impl Cluster {
    /// Connects and checks the API server answers; fails loudly when no cluster is running or
    /// the kubeconfig points anywhere but 127.0.0.0/8.
    pub async fn connect() -> anyhow::Result<Self> {
        let path = settings::kubeconfig()?;
        let kubeconfig = Kubeconfig::read_from(&path)
            .with_context(|| format!("reading {} (is the cluster up?)", path.display()))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("loading {}", path.display()))?;
        let host = config.cluster_url.host().unwrap_or_default().to_string();
        let loopback = host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false);
        if !loopback {
            bail!(
                "{} points at {}: end-to-end tests only run against a cluster on 127.0.0.0/8",
                path.display(),
                config.cluster_url
            );
        }
        let client = Client::try_from(config).context("building the kube client")?;
        let version = client.apiserver_version().await.with_context(|| {
            format!(
                "no API server answers at {host} (kubeconfig {}): start it with `cargo xtask e2e` \
                 or `cargo xtask cluster up`",
                path.display()
            )
        })?;
        if version.major.is_empty() {
            bail!("the API server at {host} reported no version");
        }
        let kubectl = Kubectl::new(settings::kubectl()?, path);
        Ok(Self { client, kubectl })
    }
}
