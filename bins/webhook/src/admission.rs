//! One AdmissionReview in, one AdmissionReview out, for either webhook (cacheblend.md §5,
//! connection-webhook.md §3, lifecycle.md §5).
//!
//! [`Admitter::review`] is synchronous, does no I/O and never denies a pod: every review whose
//! `request.uid` can be read is answered `allowed: true` (with a JSON Patch only when the pod is
//! injected or skipped); only a body that is not an AdmissionReview at all gets HTTP 400.

use crate::engines::{CachedEngine, EngineCache, Lookup};
use crate::metrics::outcomes;
use http::StatusCode;
use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use lmcache_api::v1alpha1::{CacheBlendEngine, LMCacheEngine};
use lmcache_blend_injector::{Outcome, Webhook, inject, patch, requested_engine};
use serde_json::Value;

/// The CacheBlend injector's path.
pub const MUTATE_PATH: &str = "/mutate-cacheblend-pod";
/// The LMCache connection injector's path.
pub const MUTATE_LMCACHE_PATH: &str = "/mutate-lmcache-pod";

/// The webhook served on `path`, if any.
pub fn webhook_of_path(path: &str) -> Option<Webhook> {
    match path {
        MUTATE_PATH => Some(Webhook::CacheBlend),
        MUTATE_LMCACHE_PATH => Some(Webhook::Lmcache),
        _ => None,
    }
}

const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";
const REVIEW_KIND: &str = "AdmissionReview";

/// Answers admission reviews from the engine caches.
#[derive(Clone, Debug)]
pub struct Admitter {
    cacheblend: EngineCache<CacheBlendEngine>,
    lmcache: EngineCache<LMCacheEngine>,
    cluster_domain: String,
}

/// The answer to one review plus what the log line and the metrics need.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// Which webhook answered.
    pub webhook: Webhook,
    /// `200 OK` with [`Self::response`], or `400 Bad Request` for a body that is not an
    /// AdmissionReview at all.
    pub status: StatusCode,
    /// The response to send (with a 200).
    pub response: AdmissionResponse,
    /// `injected`, `skipped`, `ignored`, `not_ready`, `malformed` or `invalid`.
    pub outcome: &'static str,
    /// The skip reason, or empty.
    pub reason: &'static str,
    /// The request uid (empty when unreadable).
    pub uid: String,
    /// The request namespace.
    pub namespace: String,
    /// The pod's name, or its `generateName`.
    pub pod: String,
    /// The engine the pod names (empty when none).
    pub engine: String,
    /// Whether the request is a dry run (handled identically).
    pub dry_run: bool,
    /// Why a review was ignored, malformed or invalid.
    pub note: Option<String>,
}

impl Verdict {
    fn new(webhook: Webhook, response: AdmissionResponse, outcome: &'static str, uid: String) -> Self {
        Self {
            webhook,
            status: StatusCode::OK,
            response,
            outcome,
            reason: "",
            uid,
            namespace: String::new(),
            pod: String::new(),
            engine: String::new(),
            dry_run: false,
            note: None,
        }
    }

    /// A review that could not be understood. With a readable uid it is still allowed (the
    /// pod is admitted unchanged, outcome `malformed`); without one the body is not an
    /// AdmissionReview at all and gets HTTP 400 (outcome `invalid`).
    pub fn unreadable(webhook: Webhook, uid: Option<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut verdict = match uid {
            Some(uid) => {
                // `invalid` is the only constructor without a request; it is turned into an
                // allowing answer for that uid.
                let mut response = AdmissionResponse::invalid("");
                response.allowed = true;
                response.result = kube::core::Status::success();
                response.uid.clone_from(&uid);
                Self::new(webhook, response, outcomes::MALFORMED, uid)
            }
            None => {
                let mut verdict = Self::new(
                    webhook,
                    AdmissionResponse::invalid(&message),
                    outcomes::INVALID,
                    String::new(),
                );
                verdict.status = StatusCode::BAD_REQUEST;
                verdict
            }
        };
        verdict.note = Some(message);
        verdict
    }

    /// The body to send: the `AdmissionReview` JSON with a 200, the reason as text with a
    /// 400. `patch` is base64 (Go's `[]byte` encoding, as the API reference shows it), not
    /// kube-core's array of numbers: both decode, the string is the canonical form and a
    /// quarter of the size.
    pub fn body(&self) -> Vec<u8> {
        if self.status != StatusCode::OK {
            let note = self.note.as_deref().unwrap_or("not an AdmissionReview");
            return format!("{note}\n").into_bytes();
        }
        let mut review = match serde_json::to_value(self.response.clone().into_review()) {
            Ok(review) => review,
            Err(_) => Value::Null,
        };
        if let Some(patch) = review.pointer_mut("/response/patch") {
            let bytes: Option<Vec<u8>> = patch.as_array().map(|items| {
                items
                    .iter()
                    .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect()
            });
            if let Some(bytes) = bytes {
                *patch = Value::String(base64(&bytes));
            }
        }
        serde_json::to_vec(&review).ok().filter(|_| !review.is_null()).unwrap_or_else(|| {
            // Unreachable in practice (plain data); still answer with an allowing review.
            format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{{"uid":{},"allowed":true}}}}"#,
                Value::String(self.uid.clone())
            )
            .into_bytes()
        })
    }
}

/// `request.uid`, when the body is JSON with a string there.
pub fn readable_uid(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.pointer("/request/uid")?.as_str().map(String::from)
}

impl Admitter {
    /// An admitter reading the two caches; `cluster_domain` must equal the operator's.
    pub fn new(
        cacheblend: EngineCache<CacheBlendEngine>,
        lmcache: EngineCache<LMCacheEngine>,
        cluster_domain: impl Into<String>,
    ) -> Self {
        Self {
            cacheblend,
            lmcache,
            cluster_domain: cluster_domain.into(),
        }
    }

    /// Answers one AdmissionReview body sent to `webhook`'s path.
    pub fn review(&self, webhook: Webhook, body: &[u8]) -> Verdict {
        let mut value: Value = match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(error) if body.is_empty() || error.is_eof() => {
                return Verdict::unreadable(
                    webhook,
                    None,
                    format!("empty or truncated request body: {error}"),
                );
            }
            Err(error) => {
                return Verdict::unreadable(webhook, None, format!("request body is not JSON: {error}"));
            }
        };
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default();
        let uid = value
            .pointer("/request/uid")
            .and_then(Value::as_str)
            .map(String::from);
        if api_version != REVIEW_API_VERSION || kind != REVIEW_KIND {
            return Verdict::unreadable(
                webhook,
                uid,
                format!(
                    "expected apiVersion {REVIEW_API_VERSION} kind {REVIEW_KIND}, got apiVersion {api_version:?} kind {kind:?}"
                ),
            );
        }
        // The object is decoded as a Pod separately, so an undecodable object is "allowed,
        // no patch" rather than a failed review.
        let object = value.pointer_mut("/request/object").map(Value::take);
        let review: AdmissionReview<DynamicObject> = match serde_json::from_value(value) {
            Ok(review) => review,
            Err(error) => {
                return Verdict::unreadable(webhook, uid, format!("malformed AdmissionReview: {error}"));
            }
        };
        let request: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(request) => request,
            Err(_) => return Verdict::unreadable(webhook, uid, "AdmissionReview has no request"),
        };
        match webhook {
            Webhook::CacheBlend => self.review_request(&self.cacheblend, &request, object),
            Webhook::Lmcache => self.review_request(&self.lmcache, &request, object),
        }
    }

    fn review_request<E: CachedEngine>(
        &self,
        cache: &EngineCache<E>,
        request: &AdmissionRequest<DynamicObject>,
        object: Option<Value>,
    ) -> Verdict {
        let webhook = E::WEBHOOK;
        let mut verdict = Verdict::new(
            webhook,
            AdmissionResponse::from(request),
            outcomes::IGNORED,
            request.uid.clone(),
        );
        verdict.namespace = request.namespace.clone().unwrap_or_default();
        verdict.pod.clone_from(&request.name);
        verdict.dry_run = request.dry_run;
        let is_pod = request.kind.group.is_empty()
            && request.kind.version == "v1"
            && request.kind.kind == "Pod"
            && request.sub_resource.as_deref().is_none_or(str::is_empty);
        if !is_pod {
            verdict.outcome = outcomes::MALFORMED;
            verdict.note = Some(format!(
                "not a v1 Pod ({}/{} {})",
                request.kind.group, request.kind.version, request.kind.kind
            ));
            return verdict;
        }
        if request.operation != Operation::Create {
            verdict.note = Some(format!("not a CREATE ({:?})", request.operation));
            return verdict;
        }
        let pod = match object.map(serde_json::from_value::<Pod>) {
            Some(Ok(pod)) => pod,
            Some(Err(error)) => {
                verdict.outcome = outcomes::MALFORMED;
                verdict.note = Some(format!("object is not a decodable Pod: {error}"));
                return verdict;
            }
            None => {
                verdict.outcome = outcomes::MALFORMED;
                verdict.note = Some("request has no object".into());
                return verdict;
            }
        };
        verdict.pod = pod
            .metadata
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| pod.metadata.generate_name.clone())
            .unwrap_or_default();
        verdict.engine = requested_engine(&pod, webhook).unwrap_or_default().to_string();
        if !cache.is_synced() {
            verdict.outcome = outcomes::NOT_READY;
            verdict.note = Some("engine cache has not completed its initial list".into());
            return verdict;
        }

        let (outcome, note) = admit(cache, &pod, &verdict.namespace, &self.cluster_domain);
        verdict.note = note;
        (verdict.outcome, verdict.reason) = match &outcome {
            Outcome::Injected(_) => (outcomes::INJECTED, ""),
            Outcome::Skipped { reason, .. } => (outcomes::SKIPPED, reason.as_str()),
            Outcome::NotOptedIn => {
                verdict.note.get_or_insert_with(|| "not opted in".into());
                (outcomes::IGNORED, "")
            }
            Outcome::AlreadyInjected => {
                verdict.note.get_or_insert_with(|| "already injected".into());
                (outcomes::IGNORED, "")
            }
        };
        if let Some(mutated) = outcome.mutated_pod() {
            let ops = patch(&pod, mutated);
            if !ops.0.is_empty() {
                match verdict.response.clone().with_patch(ops) {
                    Ok(response) => verdict.response = response,
                    Err(error) => {
                        verdict.outcome = outcomes::IGNORED;
                        verdict.reason = "";
                        verdict.note = Some(format!("cannot serialise the patch: {error}"));
                    }
                }
            }
        }
        verdict
    }

    /// The decision for a decoded pod admitted in `namespace` by `webhook` (the `inject`
    /// command uses it directly).
    pub fn admit_pod(&self, webhook: Webhook, pod: &Pod, namespace: &str) -> (Outcome, Option<String>) {
        match webhook {
            Webhook::CacheBlend => admit(&self.cacheblend, pod, namespace, &self.cluster_domain),
            Webhook::Lmcache => admit(&self.lmcache, pod, namespace, &self.cluster_domain),
        }
    }
}

/// Looks the named engine up in `cache` (same namespace only) and runs the injector. Also
/// returns a note when the named engine exists but cannot be decoded.
fn admit<E: CachedEngine>(
    cache: &EngineCache<E>,
    pod: &Pod,
    namespace: &str,
    cluster_domain: &str,
) -> (Outcome, Option<String>) {
    let lookup = requested_engine(pod, E::WEBHOOK).map(|name| cache.get(namespace, name));
    let (stored, note) = match lookup {
        Some(Lookup::Found(stored)) => (Some(stored), None),
        Some(Lookup::Invalid(error)) => (None, Some(format!("engine cannot be decoded: {error}"))),
        Some(Lookup::Missing) | None => (None, None),
    };
    let engine = stored.as_deref().and_then(|s| s.engine());
    (inject(pod, namespace, engine, cluster_domain), note)
}

/// Standard base64 with padding (how Kubernetes expects `patch`).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn paths_select_the_webhook() {
        assert_eq!(
            webhook_of_path("/mutate-cacheblend-pod"),
            Some(Webhook::CacheBlend)
        );
        assert_eq!(webhook_of_path("/mutate-lmcache-pod"), Some(Webhook::Lmcache));
        assert_eq!(webhook_of_path("/mutate-lmcache-pod/"), None);
        assert_eq!(webhook_of_path("/"), None);
    }
}
