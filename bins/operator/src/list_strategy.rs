//! How the watches fill their caches: streamed (`sendInitialEvents`, Kubernetes' WatchList
//! feature) where the API server offers it, else listed in pages.
//!
//! A streamed initial list is one watch request answered from the API server's watch cache, one
//! object per event; a paged list is one request per [`LIST_PAGE_SIZE`] objects, each page read
//! whole before it is decoded. At 3000 engine pods that is 30 sequential round trips for the pod
//! cache alone, and the controllers start only when every cache is filled, so after a restart a
//! spec change waits for the slowest list. Streaming also holds one object at a time instead of
//! a page.
//!
//! WatchList is on by default in Kubernetes 1.32 and from 1.34, off in 1.33 (the API server
//! answers `422` to `sendInitialEvents`), and unknown before 1.27. kube's watcher does not fall
//! back by itself (a refused initial watch is retried as it is, forever), so the operator asks
//! once at start-up with a watch that matches nothing, and uses streaming only if the API server
//! ends it with the `k8s.io/initial-events-end` bookmark. `--list-strategy` overrides the probe.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, WatchEvent, WatchParams};
use kube::runtime::watcher;
use std::time::Duration;

/// Objects per list page when lists are paged. A page's JSON is read whole before its objects
/// are decoded (and packed, or cut down to a `CachedPod`), so the page bounds the transient
/// memory of a (re)list: 500 pods (the watcher's default) are several MiB of response; 100 are a
/// fifth.
pub const LIST_PAGE_SIZE: u32 = 100;

/// The annotation of the bookmark that ends a streamed initial list.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// A label no object carries: the probe's watch streams nothing but the closing bookmark.
const PROBE_SELECTOR: &str = "lmcache.ai/watch-list-probe=none";

/// How long the probe waits for the API server's answer, in seconds (the watch's own
/// `timeoutSeconds` too).
const PROBE_TIMEOUT_SECS: u32 = 5;

/// How every watch fills its cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ListStrategy {
    /// Ask the API server at start-up (the default).
    Auto,
    /// Streamed initial lists (`sendInitialEvents=true`).
    Streaming,
    /// Paged lists of [`LIST_PAGE_SIZE`] objects, then a watch.
    Paged,
}

impl ListStrategy {
    /// `Streaming` or `Paged`: `Auto` asks the API server.
    pub async fn resolve(self, client: &Client) -> Self {
        let resolved = match self {
            Self::Auto if streaming_supported(client).await => Self::Streaming,
            Self::Auto => Self::Paged,
            chosen => chosen,
        };
        tracing::info!(requested = self.name(), "initial lists: {}", resolved.name());
        resolved
    }

    /// The flag's spelling.
    fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Streaming => "streaming",
            Self::Paged => "paged",
        }
    }

    /// `config` with this strategy (`Auto` counts as `Paged`: it works everywhere).
    pub fn apply(self, config: watcher::Config) -> watcher::Config {
        match self {
            Self::Streaming => config.streaming_lists(),
            Self::Auto | Self::Paged => config.page_size(LIST_PAGE_SIZE),
        }
    }
}

/// Whether the API server streams initial lists: a watch of ConfigMaps (the operator may watch
/// them in every namespace) selecting nothing must end its initial events with the bookmark.
/// Any error, another first event or no answer within [`PROBE_TIMEOUT_SECS`] means no.
async fn streaming_supported(client: &Client) -> bool {
    let api = Api::<ConfigMap>::all(client.clone());
    let params = WatchParams::default()
        .labels(PROBE_SELECTOR)
        .initial_events()
        .timeout(PROBE_TIMEOUT_SECS);
    let deadline = Duration::from_secs(PROBE_TIMEOUT_SECS.into());
    let answer = tokio::time::timeout(deadline, async {
        let mut events = api.watch_metadata(&params, "0").await?.boxed();
        Ok::<_, kube::Error>(events.next().await)
    })
    .await;
    match answer {
        Ok(Ok(Some(Ok(WatchEvent::Bookmark(bookmark)))))
            if bookmark
                .metadata
                .annotations
                .get(INITIAL_EVENTS_END)
                .is_some_and(|end| end == "true") =>
        {
            true
        }
        Ok(Err(error)) => {
            tracing::info!(%error, "the API server refused a streamed list");
            false
        }
        Err(_) => {
            tracing::info!("the API server did not answer the streamed-list probe within {deadline:?}");
            false
        }
        Ok(Ok(_)) => {
            tracing::info!("the API server did not end a streamed list with its bookmark");
            false
        }
    }
}
