//! An in-memory Kubernetes API behind a tower-test mock: enough GET, server-side apply (main
//! resource and `/status`), DELETE and Event creation for the reconciler, with every request
//! recorded so tests can count writes.

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tower::Layer;

/// `(resource plural, namespace, name)`.
pub type Key = (String, String, String);

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    requests: Vec<(Method, String)>,
    events: Vec<Value>,
    counter: u64,
    /// Applies of `(plural, name)` answered with this code and message (a webhook, a policy,
    /// a schema the fake does not know).
    rejections: BTreeMap<(String, String), (u16, String)>,
}

/// The fake API server. Cheap to clone.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

/// A parsed request path.
struct Target {
    plural: String,
    namespace: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..)?,
        Some(&"apis") => segments.get(3..)?,
        _ => return None,
    };
    match rest {
        ["namespaces", ns, plural, tail @ ..] => Some(Target {
            plural: (*plural).to_string(),
            namespace: (*ns).to_string(),
            name: tail.first().map(|s| (*s).to_string()),
            subresource: tail.get(1).map(|s| (*s).to_string()),
        }),
        _ => None,
    }
}

fn query_param(uri: &http::Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

/// `fieldsV1` of an applied body: every map key, lists atomic.
fn fields_of(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (format!("f:{k}"), fields_of(v)))
                .collect::<Map<String, Value>>(),
        ),
        _ => json!({}),
    }
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason,
           "reason": reason, "code": code})
}

impl FakeApi {
    /// A client talking to this fake, through `layer` (e.g. the write counter).
    pub fn client<L>(&self, layer: L) -> Client
    where
        L: Layer<tower_test::mock::Mock<Request<Body>, Response<Body>>>,
        L::Service: tower::Service<Request<Body>, Response = Response<Body>> + Send + 'static,
        <L::Service as tower::Service<Request<Body>>>::Future: Send + 'static,
        <L::Service as tower::Service<Request<Body>>>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let response = fake.handle(request).await;
                send.send_response(response);
            }
        });
        Client::new(layer.layer(service), "default")
    }

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let (code, value) = self.respond(&parts.method, &parts.uri, &bytes);
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&value).unwrap_or_default()))
            .unwrap_or_else(|_| Response::new(Body::from(Vec::new())))
    }

    fn respond(&self, method: &Method, uri: &http::Uri, body: &[u8]) -> (StatusCode, Value) {
        let mut state = self.state.lock().unwrap();
        state.requests.push((method.clone(), uri.path().to_string()));
        state.counter += 1;
        let counter = state.counter;
        let Some(target) = parse(uri.path()) else {
            return (StatusCode::NOT_FOUND, status(404, "NotFound"));
        };
        if target.plural == "events" && (*method == Method::POST || *method == Method::PATCH) {
            let event: Value = serde_json::from_slice(body).unwrap_or_default();
            state.events.push(event.clone());
            return (StatusCode::CREATED, event);
        }
        let Some(name) = target.name.clone() else {
            return (StatusCode::NOT_FOUND, status(404, "NotFound"));
        };
        let key = (target.plural.clone(), target.namespace.clone(), name.clone());
        match (method.clone(), target.subresource.as_deref()) {
            (Method::GET, None) => match state.objects.get(&key) {
                Some(obj) => (StatusCode::OK, obj.clone()),
                None => (StatusCode::NOT_FOUND, status(404, "NotFound")),
            },
            (Method::PATCH, None)
                if state
                    .rejections
                    .contains_key(&(target.plural.clone(), name.clone())) =>
            {
                let (code, message) = state.rejections[&(target.plural.clone(), name.clone())].clone();
                let mut answer = status(code, "Invalid");
                answer["message"] = json!(message);
                (
                    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
                    answer,
                )
            }
            (Method::PATCH, None) => {
                let applied: Value = serde_json::from_slice(body).unwrap_or_default();
                let manager = query_param(uri, "fieldManager").unwrap_or_default();
                let existing = state.objects.get(&key).cloned();
                let mut obj = applied.clone();
                let meta = &mut obj["metadata"];
                meta["namespace"] = json!(target.namespace);
                meta["uid"] = existing
                    .as_ref()
                    .and_then(|e| e.pointer("/metadata/uid").cloned())
                    .unwrap_or_else(|| json!(format!("uid-{}-{counter}", target.plural)));
                meta["resourceVersion"] = json!(counter.to_string());
                let mut owned = fields_of(&applied);
                if let Some(o) = owned.as_object_mut() {
                    o.remove("f:apiVersion");
                    o.remove("f:kind");
                }
                meta["managedFields"] = json!([{"manager": manager, "operation": "Apply",
                    "apiVersion": applied["apiVersion"], "fieldsType": "FieldsV1", "fieldsV1": owned}]);
                if let Some(status) = existing.as_ref().and_then(|e| e.get("status")) {
                    obj["status"] = status.clone();
                }
                if target.plural == "daemonsets" {
                    // As the API server: the template generation moves only when the pod
                    // template changes.
                    let template_generation = |o: &Value| {
                        o.pointer("/metadata/annotations/deprecated.daemonset.template.generation")
                            .and_then(Value::as_str)
                            .and_then(|g| g.parse::<i64>().ok())
                    };
                    let next = match &existing {
                        None => 1,
                        Some(e) => {
                            let current = template_generation(e).unwrap_or(1);
                            if e["spec"]["template"] == obj["spec"]["template"] {
                                current
                            } else {
                                current + 1
                            }
                        }
                    };
                    if !obj["metadata"]["annotations"].is_object() {
                        obj["metadata"]["annotations"] = json!({});
                    }
                    obj["metadata"]["annotations"]["deprecated.daemonset.template.generation"] =
                        json!(next.to_string());
                }
                state.objects.insert(key, obj.clone());
                (StatusCode::OK, obj)
            }
            (Method::PATCH, Some("status")) => {
                let applied: Value = serde_json::from_slice(body).unwrap_or_default();
                match state.objects.get_mut(&key) {
                    Some(obj) => {
                        obj["status"] = applied["status"].clone();
                        obj["metadata"]["resourceVersion"] = json!(counter.to_string());
                        (StatusCode::OK, obj.clone())
                    }
                    None => (StatusCode::NOT_FOUND, status(404, "NotFound")),
                }
            }
            (Method::DELETE, None) => match state.objects.remove(&key) {
                Some(_) => (
                    StatusCode::OK,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                ),
                None => (StatusCode::NOT_FOUND, status(404, "NotFound")),
            },
            _ => (StatusCode::METHOD_NOT_ALLOWED, status(405, "MethodNotAllowed")),
        }
    }

    /// Answers every apply of `plural/name` with `code` and `message` until [`Self::accept`].
    pub fn reject(&self, plural: &str, name: &str, code: u16, message: &str) {
        let mut state = self.state.lock().unwrap();
        state
            .rejections
            .insert((plural.into(), name.into()), (code, message.into()));
    }

    /// Stops rejecting applies of `plural/name`.
    pub fn accept(&self, plural: &str, name: &str) {
        self.state
            .lock()
            .unwrap()
            .rejections
            .remove(&(plural.to_string(), name.to_string()));
    }

    /// Stores `obj` as if created by someone (keeps its metadata as given).
    pub fn put(&self, plural: &str, obj: Value) {
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        self.state
            .lock()
            .unwrap()
            .objects
            .insert((plural.to_string(), ns, name), obj);
    }

    /// The stored object.
    pub fn get(&self, plural: &str, ns: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .get(&(plural.to_string(), ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Changes a stored object in place.
    pub fn edit(&self, plural: &str, ns: &str, name: &str, f: impl FnOnce(&mut Value)) {
        let mut state = self.state.lock().unwrap();
        state.counter += 1;
        let rv = state.counter.to_string();
        let obj = state
            .objects
            .get_mut(&(plural.to_string(), ns.to_string(), name.to_string()))
            .unwrap_or_else(|| panic!("no {plural} {ns}/{name}"));
        f(obj);
        obj["metadata"]["resourceVersion"] = json!(rv);
    }

    /// Deletes a stored object.
    pub fn remove(&self, plural: &str, ns: &str, name: &str) {
        self.state
            .lock()
            .unwrap()
            .objects
            .remove(&(plural.to_string(), ns.to_string(), name.to_string()));
    }

    /// Every stored object with its key.
    pub fn objects(&self) -> Vec<(Key, Value)> {
        self.state
            .lock()
            .unwrap()
            .objects
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Requests since the last call, as `METHOD path`.
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap().requests)
            .into_iter()
            .map(|(m, p)| format!("{m} {p}"))
            .collect()
    }

    /// Events posted since the last call.
    pub fn take_events(&self) -> Vec<Value> {
        std::mem::take(&mut self.state.lock().unwrap().events)
    }
}

/// Only the write requests of `requests` that are not Events.
pub fn child_writes(requests: &[String]) -> Vec<&str> {
    writes(requests)
        .into_iter()
        .filter(|r| !r.contains("/events"))
        .collect()
}

/// Only the write requests of `requests`.
pub fn writes(requests: &[String]) -> Vec<&str> {
    requests
        .iter()
        .map(String::as_str)
        .filter(|r| !r.starts_with("GET "))
        .collect()
}
