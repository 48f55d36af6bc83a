//! One AdmissionReview in, one AdmissionReview out (cacheblend.md §5).
//!
//! [`Admitter::review`] is synchronous, does no I/O and never fails: an envelope that is not a
//! JSON `admission.k8s.io/v1` `AdmissionReview` with a request is answered with
//! `AdmissionResponse::invalid` (echoing the request uid when one could be read); everything
//! else is allowed, with a JSON Patch only when the pod is injected or skipped.

use crate::engines::{EngineCache, Lookup};
use crate::metrics::outcomes;
use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use lmcache_blend_injector::{Outcome, inject, patch, requested_engine};
use serde_json::Value;

/// The webhook's only path.
pub const MUTATE_PATH: &str = "/mutate-cacheblend-pod";

const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";
const REVIEW_KIND: &str = "AdmissionReview";

/// Answers admission reviews from the engine cache.
#[derive(Clone, Debug)]
pub struct Admitter {
    engines: EngineCache,
    cluster_domain: String,
}

/// The answer to one review plus what the log line and the metrics need.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// The response to send.
    pub response: AdmissionResponse,
    /// `injected`, `skipped`, `ignored` or `not_ready`.
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
    /// Why a review was ignored or rejected as invalid.
    pub note: Option<String>,
}

impl Verdict {
    /// A review that could not be read: `AdmissionResponse::invalid`, counted as `ignored`.
    pub fn invalid(uid: Option<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut response = AdmissionResponse::invalid(&message);
        let uid = uid.unwrap_or_default();
        response.uid.clone_from(&uid);
        Self {
            response,
            outcome: outcomes::IGNORED,
            reason: "",
            uid,
            namespace: String::new(),
            pod: String::new(),
            engine: String::new(),
            dry_run: false,
            note: Some(message),
        }
    }

    /// Whether the review itself was rejected as invalid.
    pub fn is_invalid(&self) -> bool {
        !self.response.allowed
    }

    /// The `AdmissionReview` JSON to send back. `patch` is base64 (Go's `[]byte` encoding, as
    /// the API reference shows it), not kube-core's array of numbers: both decode, the string
    /// is the canonical form and a quarter of the size.
    pub fn to_json(&self) -> Vec<u8> {
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
            // Unreachable in practice (plain data); still answer with a valid review.
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}"#
                .to_vec()
        })
    }
}

impl Admitter {
    /// An admitter reading `engines`; `cluster_domain` must equal the operator's.
    pub fn new(engines: EngineCache, cluster_domain: impl Into<String>) -> Self {
        Self {
            engines,
            cluster_domain: cluster_domain.into(),
        }
    }

    /// The engine cache.
    pub fn engines(&self) -> &EngineCache {
        &self.engines
    }

    /// Answers one AdmissionReview body.
    pub fn review(&self, body: &[u8]) -> Verdict {
        let mut value: Value = match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(error) if body.is_empty() || error.is_eof() => {
                return Verdict::invalid(None, format!("empty or truncated request body: {error}"));
            }
            Err(error) => return Verdict::invalid(None, format!("request body is not JSON: {error}")),
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
            return Verdict::invalid(
                uid,
                format!(
                    "expected apiVersion {REVIEW_API_VERSION} kind {REVIEW_KIND}, got apiVersion {api_version:?} kind {kind:?}"
                ),
            );
        }
        // The object is decoded as a Pod separately, so an undecodable object is "allowed,
        // no patch" (step 1) rather than an invalid review.
        let object = value.pointer_mut("/request/object").map(Value::take);
        let review: AdmissionReview<DynamicObject> = match serde_json::from_value(value) {
            Ok(review) => review,
            Err(error) => return Verdict::invalid(uid, format!("malformed AdmissionReview: {error}")),
        };
        let request: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(request) => request,
            Err(_) => return Verdict::invalid(uid, "AdmissionReview has no request"),
        };
        self.review_request(&request, object)
    }

    fn review_request(&self, request: &AdmissionRequest<DynamicObject>, object: Option<Value>) -> Verdict {
        let mut verdict = Verdict {
            response: AdmissionResponse::from(request),
            outcome: outcomes::IGNORED,
            reason: "",
            uid: request.uid.clone(),
            namespace: request.namespace.clone().unwrap_or_default(),
            pod: request.name.clone(),
            engine: String::new(),
            dry_run: request.dry_run,
            note: None,
        };
        let is_pod_create = request.operation == Operation::Create
            && request.kind.group.is_empty()
            && request.kind.version == "v1"
            && request.kind.kind == "Pod"
            && request.sub_resource.as_deref().is_none_or(str::is_empty);
        if !is_pod_create {
            verdict.note = Some(format!(
                "not a CREATE of a v1 Pod ({:?} {}/{} {})",
                request.operation, request.kind.group, request.kind.version, request.kind.kind
            ));
            return verdict;
        }
        let pod = match object.map(serde_json::from_value::<Pod>) {
            Some(Ok(pod)) => pod,
            Some(Err(error)) => {
                verdict.note = Some(format!("object is not a decodable Pod: {error}"));
                return verdict;
            }
            None => {
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
        verdict.engine = requested_engine(&pod).unwrap_or_default().to_string();
        if !self.engines.is_synced() {
            verdict.outcome = outcomes::NOT_READY;
            verdict.note = Some("engine cache has not completed its initial list".into());
            return verdict;
        }

        let (outcome, note) = self.admit_pod(&pod, &verdict.namespace);
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

    /// Steps 3–11 for a decoded pod admitted in `namespace`: look the engine up in the cache
    /// (same namespace only) and run the injector. Also returns a note when the named engine
    /// exists but cannot be decoded.
    pub fn admit_pod(&self, pod: &Pod, namespace: &str) -> (Outcome, Option<String>) {
        let (stored, note) = match requested_engine(pod).map(|name| self.engines.get(namespace, name)) {
            Some(Lookup::Found(stored)) => (Some(stored), None),
            Some(Lookup::Invalid(error)) => (None, Some(format!("engine cannot be decoded: {error}"))),
            Some(Lookup::Missing) | None => (None, None),
        };
        let engine = stored.as_deref().and_then(|s| s.engine());
        (inject(pod, namespace, engine, &self.cluster_domain), note)
    }
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
}
