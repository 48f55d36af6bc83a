//! A tower layer on the Kubernetes client that counts every write request, so no write escapes
//! `lmcache_operator_api_writes_total{verb,kind}` (children, status, Events, the Lease).

use crate::metrics::Metrics;
use http::{Method, Request};
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Wraps the client's HTTP service with [`WriteCounter`].
#[derive(Clone, Debug)]
pub struct WriteCounterLayer {
    metrics: Metrics,
}

impl WriteCounterLayer {
    /// A layer counting into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for WriteCounterLayer {
    type Service = WriteCounter<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WriteCounter {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Counts POST, PUT, PATCH and DELETE requests by verb and addressed resource.
#[derive(Clone, Debug)]
pub struct WriteCounter<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B> Service<Request<B>> for WriteCounter<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let method = req.method();
        if [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(method) {
            self.metrics
                .count_write(method.as_str(), &resource_of(req.uri().path()));
        }
        self.inner.call(req)
    }
}

/// The resource (plural, plus `/subresource`) a request path addresses:
/// `/api/v1/namespaces/ns/configmaps/x` → `configmaps`,
/// `/apis/lmcache.lmcache.ai/v1alpha1/namespaces/ns/lmcacheengines/x/status` →
/// `lmcacheengines/status`.
pub fn resource_of(path: &str) -> String {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Skip the group-version prefix: `api/v1` or `apis/<group>/<version>`.
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => None,
    }
    .unwrap_or_default();
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    match rest {
        [] => "unknown".to_string(),
        [resource] | [resource, _] => (*resource).to_string(),
        [resource, _, sub, ..] => format!("{resource}/{sub}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_from_paths() {
        assert_eq!(resource_of("/api/v1/namespaces/a/configmaps/x"), "configmaps");
        assert_eq!(resource_of("/api/v1/namespaces/a/configmaps"), "configmaps");
        assert_eq!(
            resource_of("/apis/apps/v1/namespaces/a/daemonsets/x"),
            "daemonsets"
        );
        assert_eq!(
            resource_of("/apis/lmcache.lmcache.ai/v1alpha1/namespaces/a/lmcacheengines/x/status"),
            "lmcacheengines/status"
        );
        assert_eq!(resource_of("/api/v1/namespaces/x"), "namespaces");
        assert_eq!(
            resource_of("/apis/events.k8s.io/v1/namespaces/a/events"),
            "events"
        );
        assert_eq!(resource_of("/healthz"), "unknown");
    }
}
