//! Self-managed TLS against a fake API (a tower-test mock answering GET/POST/PUT on Secrets and
//! GET/PATCH on MutatingWebhookConfigurations with resourceVersion semantics), and real TLS
//! handshakes on 127.0.0.1 through a CA rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use lmcache_runtime::{ServingCert, shutdown};
use lmcache_webhook::pki::{self, Cert};
use lmcache_webhook::rotation::{self, Action, Contents, Policy};
use lmcache_webhook::self_managed::{Settings, unix_now};
use lmcache_webhook::{Metrics, SelfManaged};
use prometheus_client::registry::Registry;
use rustls::RootCertStore;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const NS: &str = "ops";
const SECRET: &str = "lmcache-operator-webhook-tls";
const CONFIG: &str = "lmcache-webhook";
const SECRETS: &str = "/api/v1/namespaces/ops/secrets";
const SECRET_PATH: &str = "/api/v1/namespaces/ops/secrets/lmcache-operator-webhook-tls";
const CONFIG_PATH: &str =
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/lmcache-webhook";

type Hook = Box<dyn FnOnce(&mut State) + Send>;

#[derive(Default)]
struct State {
    secret: Option<Value>,
    config: Option<Value>,
    version: u64,
    /// `(method, path, status)` of every request.
    log: Vec<(Method, String, u16)>,
    /// The query string of every request.
    queries: Vec<String>,
    /// Run just before the next Secret POST / PUT is handled (another replica's write).
    before_create: Option<Hook>,
    before_update: Option<Hook>,
}

impl State {
    fn bump(&mut self, object: &mut Value) {
        self.version += 1;
        object["metadata"]["resourceVersion"] = json!(self.version.to_string());
    }

    /// Stores `contents` as the Secret, as another writer would.
    fn put_secret(&mut self, contents: &Contents) {
        let mut secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": SECRET, "namespace": NS}, "data": contents.to_data()});
        self.bump(&mut secret);
        self.secret = Some(secret);
    }
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code})
}

#[derive(Clone, Default)]
struct FakeApi {
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    fn with_config(webhooks: usize) -> Self {
        let fake = Self::default();
        let hooks: Vec<Value> = (0..webhooks)
            .map(|i| {
                json!({"name": format!("hook-{i}.lmcache.ai"), "admissionReviewVersions": ["v1"],
                    "sideEffects": "None", "failurePolicy": "Ignore",
                    "clientConfig": {"service": {"name": "lmcache-operator-webhook", "namespace": NS,
                        "path": format!("/mutate-{i}"), "port": 443}}})
            })
            .collect();
        let mut config = json!({"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration", "metadata": {"name": CONFIG, "uid": "config-uid"}, "webhooks": hooks});
        let mut state = fake.state.lock().unwrap();
        state.bump(&mut config);
        state.config = Some(config);
        drop(state);
        fake
    }

    fn client(&self) -> kube::Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let fake = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let (code, value) = fake.respond(&parts.method, &parts.uri, &bytes);
                let response = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&value).unwrap()))
                    .unwrap();
                send.send_response(response);
            }
        });
        kube::Client::new(service, "default")
    }

    fn respond(&self, method: &Method, uri: &http::Uri, body: &[u8]) -> (StatusCode, Value) {
        let mut state = self.state.lock().unwrap();
        let (code, value) = Self::answer(&mut state, method, uri.path(), body);
        state.log.push((method.clone(), uri.path().to_string(), code));
        state.queries.push(uri.query().unwrap_or_default().to_string());
        (StatusCode::from_u16(code).unwrap(), value)
    }

    fn answer(state: &mut State, method: &Method, path: &str, body: &[u8]) -> (u16, Value) {
        match (method.as_str(), path) {
            ("GET", SECRET_PATH) => match &state.secret {
                Some(secret) => (200, secret.clone()),
                None => (404, status(404, "NotFound")),
            },
            ("POST", SECRETS) => {
                if let Some(hook) = state.before_create.take() {
                    hook(state);
                }
                if state.secret.is_some() {
                    return (409, status(409, "AlreadyExists"));
                }
                let mut secret: Value = serde_json::from_slice(body).unwrap();
                assert_eq!(secret["metadata"]["name"], SECRET);
                state.bump(&mut secret);
                state.secret = Some(secret.clone());
                (201, secret)
            }
            ("PUT", SECRET_PATH) => {
                if let Some(hook) = state.before_update.take() {
                    hook(state);
                }
                let mut secret: Value = serde_json::from_slice(body).unwrap();
                let Some(stored) = &state.secret else {
                    return (404, status(404, "NotFound"));
                };
                if secret["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"] {
                    return (409, status(409, "Conflict"));
                }
                assert_eq!(secret["type"], stored["type"], "type is immutable");
                state.bump(&mut secret);
                state.secret = Some(secret.clone());
                (200, secret)
            }
            ("GET", CONFIG_PATH) => match &state.config {
                Some(config) => (200, config.clone()),
                None => (404, status(404, "NotFound")),
            },
            ("PATCH", CONFIG_PATH) => {
                let Some(config) = &state.config else {
                    return (404, status(404, "NotFound"));
                };
                let patch: json_patch::Patch = serde_json::from_slice(body).unwrap();
                let mut patched = config.clone();
                if json_patch::patch(&mut patched, &patch).is_err() {
                    return (422, status(422, "Invalid"));
                }
                state.bump(&mut patched);
                state.config = Some(patched.clone());
                (200, patched)
            }
            _ => (405, status(405, "MethodNotAllowed")),
        }
    }

    fn log(&self) -> Vec<(Method, String, u16)> {
        self.state.lock().unwrap().log.clone()
    }

    fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    fn secret_contents(&self) -> Contents {
        let state = self.state.lock().unwrap();
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_json::from_value(state.secret.clone().unwrap()).unwrap();
        Contents::from_data(&secret.data.unwrap())
    }

    fn ca_bundles(&self) -> Vec<Option<String>> {
        let state = self.state.lock().unwrap();
        let config: k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration =
            serde_json::from_value(state.config.clone().unwrap()).unwrap();
        config
            .webhooks
            .unwrap()
            .into_iter()
            .map(|hook| {
                hook.client_config
                    .ca_bundle
                    .map(|b| String::from_utf8(b.0).unwrap())
            })
            .collect()
    }
}

fn names() -> Vec<String> {
    pki::service_names("lmcache-operator-webhook", NS, "cluster.local")
}

fn policy() -> Policy {
    Policy {
        ca_lifetime: Duration::from_secs(30 * 86_400),
        serving_lifetime: Duration::from_secs(86_400),
        backdate: Duration::from_secs(60),
        overlap: Duration::ZERO,
    }
}

fn settings(poll: Duration) -> Settings {
    Settings {
        namespace: NS.to_string(),
        secret_name: SECRET.to_string(),
        webhook_configuration: CONFIG.to_string(),
        names: names(),
        policy: policy(),
        poll_interval: poll,
    }
}

fn replica(fake: &FakeApi, registry: &mut Registry) -> SelfManaged {
    SelfManaged::new(
        fake.client(),
        settings(Duration::from_millis(20)),
        Metrics::register(registry),
    )
}

/// What another replica would have written at `now`.
fn issued_at(now: i64, policy: &Policy) -> Contents {
    let empty = Contents::default();
    rotation::execute(
        &Action::Issue(rotation::Reason::Absent),
        now,
        &empty,
        &names(),
        policy,
    )
    .unwrap()
}

fn writes(log: &[(Method, String, u16)]) -> Vec<(Method, String, u16)> {
    log.iter()
        .filter(|(m, _, _)| *m != Method::GET)
        .cloned()
        .collect()
}

#[tokio::test]
async fn creates_the_secret_publishes_the_bundle_then_stays_quiet() {
    let fake = FakeApi::with_config(2);
    let mut registry = Registry::default();
    let manager = replica(&fake, &mut registry);
    let contents = manager.sync().await.unwrap();
    assert_eq!(contents, fake.secret_contents());
    let stored = fake.state.lock().unwrap().secret.clone().unwrap();
    assert_eq!(stored["type"], "kubernetes.io/tls");
    let keys: Vec<&String> = stored["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["ca.crt", "ca.key", "tls.crt", "tls.key"]);
    // Owned by the webhook configuration: uninstalling it collects the Secret.
    assert_eq!(
        stored["metadata"]["ownerReferences"],
        json!([{"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                "name": CONFIG, "uid": "config-uid"}])
    );
    assert_eq!(
        fake.ca_bundles(),
        [Some(contents.ca_crt.clone()), Some(contents.ca_crt.clone())]
    );
    let config = fake.state.lock().unwrap().config.clone().unwrap();
    assert_eq!(
        config["webhooks"][1]["clientConfig"]["service"]["path"],
        "/mutate-1"
    );
    assert_eq!(config["webhooks"][0]["failurePolicy"], "Ignore");

    let log = fake.log();
    assert_eq!(
        writes(&log),
        [
            (Method::POST, SECRETS.to_string(), 201),
            (Method::PATCH, CONFIG_PATH.to_string(), 200)
        ]
    );
    // Only the two named objects, never a list or a watch.
    for (_, path, _) in &log {
        assert!(
            path.starts_with(SECRET_PATH) || path.starts_with(CONFIG_PATH) || path == SECRETS,
            "{path}"
        );
    }
    for query in &fake.state.lock().unwrap().queries {
        assert!(!query.contains("watch"), "{query}");
    }

    // Served, with the expiry exported.
    let serving = ServingCert::from_pem(contents.tls_crt.as_bytes(), contents.tls_key.as_bytes()).unwrap();
    assert!(!manager.serve(&serving, &contents).unwrap(), "already serving it");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let ca_expiry = Cert::all_from_pem(contents.ca_crt.as_bytes()).0[0].not_after;
    for want in [
        format!(r#"lmcache_webhook_certificate_expiry_timestamp_seconds{{certificate="ca"}} {ca_expiry}"#),
        r#"lmcache_webhook_certificate_rotations_total{certificate="serving"} 1"#.to_string(),
        r#"lmcache_webhook_certificate_rotations_total{certificate="ca"} 1"#.to_string(),
    ] {
        assert!(text.contains(&want), "missing {want}\n{text}");
    }

    // Nothing to do: GETs only.
    fake.clear_log();
    assert_eq!(manager.sync().await.unwrap(), contents);
    assert_eq!(writes(&fake.log()), []);
}

#[tokio::test]
async fn a_create_race_is_lost_gracefully() {
    let fake = FakeApi::with_config(1);
    let theirs = issued_at(unix_now(), &policy());
    let winner = theirs.clone();
    fake.state.lock().unwrap().before_create = Some(Box::new(move |state| state.put_secret(&winner)));
    let mut registry = Registry::default();
    let ours = replica(&fake, &mut registry).sync().await.unwrap();
    assert_eq!(ours, theirs, "the other replica's Secret is used");
    let secret_calls: Vec<(Method, u16)> = fake
        .log()
        .into_iter()
        .filter(|(_, path, _)| path.starts_with(SECRETS))
        .map(|(m, _, code)| (m, code))
        .collect();
    assert_eq!(
        secret_calls,
        [(Method::GET, 404), (Method::POST, 409), (Method::GET, 200)]
    );
    assert_eq!(fake.ca_bundles(), [Some(theirs.ca_crt)]);
}

#[tokio::test]
async fn an_update_conflict_rereads_and_replans() {
    let fake = FakeApi::with_config(1);
    let policy = policy();
    // A serving certificate two days old (lifetime one day): due for renewal.
    let stale = issued_at(unix_now() - 2 * 86_400, &policy);
    fake.state.lock().unwrap().put_secret(&stale);
    // Another replica renews it first.
    let plan = rotation::plan(unix_now(), &stale, &[], &names(), &policy);
    assert_eq!(plan, Action::RenewServing(rotation::Reason::Invalid));
    let renewed = rotation::execute(&plan, unix_now(), &stale, &names(), &policy).unwrap();
    let winner = renewed.clone();
    fake.state.lock().unwrap().before_update = Some(Box::new(move |state| state.put_secret(&winner)));

    let mut registry = Registry::default();
    let ours = replica(&fake, &mut registry).sync().await.unwrap();
    assert_eq!(
        ours, renewed,
        "converged on the winner's renewal, not a second one"
    );
    let secret_calls: Vec<(Method, u16)> = fake
        .log()
        .into_iter()
        .filter(|(_, path, _)| path.starts_with(SECRETS))
        .map(|(m, _, code)| (m, code))
        .collect();
    assert_eq!(
        secret_calls,
        [(Method::GET, 200), (Method::PUT, 409), (Method::GET, 200)]
    );
}

#[tokio::test]
async fn two_replicas_converge_on_one_secret() {
    let fake = FakeApi::with_config(2);
    let mut registry = Registry::default();
    let a = replica(&fake, &mut registry);
    let mut other_registry = Registry::default();
    let b = replica(&fake, &mut other_registry);
    let (from_a, from_b) = tokio::join!(a.sync(), b.sync());
    let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
    assert_eq!(from_a, from_b);
    assert_eq!(from_a, fake.secret_contents());
    let creates: Vec<u16> = fake
        .log()
        .into_iter()
        .filter(|(m, _, _)| *m == Method::POST)
        .map(|(_, _, code)| code)
        .collect();
    assert_eq!(creates.iter().filter(|c| **c == 201).count(), 1, "{creates:?}");
    assert_eq!(
        fake.ca_bundles(),
        [Some(from_a.ca_crt.clone()), Some(from_a.ca_crt)]
    );
}

#[tokio::test]
async fn every_replica_reloads_a_renewed_secret_without_restart() {
    let fake = FakeApi::with_config(1);
    let mut registry = Registry::default();
    let manager = replica(&fake, &mut registry);
    let first = manager.sync().await.unwrap();
    let serving =
        Arc::new(ServingCert::from_pem(first.tls_crt.as_bytes(), first.tls_key.as_bytes()).unwrap());
    let (trigger, stop) = shutdown::channel();
    let task = tokio::spawn(manager.run(serving.clone(), stop));

    // Another replica renews the serving certificate.
    let renewed = rotation::execute(
        &Action::RenewServing(rotation::Reason::Expiring),
        unix_now(),
        &first,
        &names(),
        &policy(),
    )
    .unwrap();
    fake.state.lock().unwrap().put_secret(&renewed);
    let want = Cert::all_from_pem(renewed.tls_crt.as_bytes()).0.remove(0).der;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while serving.current().cert[0].as_ref() != want.as_slice() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(serving.current().cert[0].as_ref(), want.as_slice());
    trigger.trigger();
    task.await.unwrap();
    assert_eq!(fake.secret_contents(), renewed, "the loop wrote nothing over it");
}

/// A TLS server on 127.0.0.1 serving `serving`, accepting handshakes until dropped.
async fn tls_server(serving: Arc<ServingCert>) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let acceptor = TlsAcceptor::from(serving.server_config().unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(stream).await;
            });
        }
    });
    (addr, task)
}

/// Whether a client trusting only `bundle` (PEM) completes a handshake for every Service name.
async fn trusted(addr: std::net::SocketAddr, bundle: &str) -> bool {
    let mut roots = RootCertStore::empty();
    for ca in Cert::all_from_pem(bundle.as_bytes()).0 {
        roots.add(ca.der.into()).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    for name in names() {
        let stream = TcpStream::connect(addr).await.unwrap();
        let server_name = ServerName::try_from(name).unwrap();
        if connector.connect(server_name, stream).await.is_err() {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn handshakes_succeed_through_a_ca_rotation() {
    lmcache_runtime::install_crypto_provider();
    let policy = Policy {
        ca_lifetime: Duration::from_secs(3000),
        serving_lifetime: Duration::from_secs(3000),
        backdate: Duration::from_secs(60),
        overlap: Duration::ZERO,
    };
    let now = unix_now();
    let step = |contents: &Contents, published: &[Vec<u8>]| {
        let action = rotation::plan(now, contents, published, &names(), &policy);
        let next = rotation::execute(&action, now, contents, &names(), &policy).unwrap();
        (action, next)
    };
    // A Secret written 2100 s ago (of 3000): the CA is due now, its serving certificate still
    // valid.
    let old = issued_at(now - 2100, &policy);
    let old_ca = Cert::all_from_pem(old.ca_crt.as_bytes()).0.remove(0);

    let serving = Arc::new(ServingCert::from_pem(old.tls_crt.as_bytes(), old.tls_key.as_bytes()).unwrap());
    let (addr, server) = tls_server(serving.clone()).await;
    assert!(trusted(addr, &old.ca_crt).await, "before rotation");

    // Phase 1: new CA in the bundle, serving still from the old CA.
    let (action, added) = step(&old, std::slice::from_ref(&old_ca.der));
    assert_eq!(action, Action::AddCa(rotation::Reason::Expiring));
    let bundle = Cert::all_from_pem(added.ca_crt.as_bytes()).0;
    assert_eq!(bundle.len(), 2);
    let new_ca_pem = bundle[1].pem();
    assert!(
        serving
            .update(added.tls_crt.as_bytes(), added.tls_key.as_bytes())
            .is_ok()
    );
    assert!(trusted(addr, &added.ca_crt).await, "old leaf, bundle old+new");
    // Not published: the serving certificate does not move.
    assert_eq!(
        rotation::plan(now, &added, std::slice::from_ref(&old_ca.der), &names(), &policy),
        Action::Keep
    );

    // Phase 2: published; the serving certificate moves to the new CA.
    let published: Vec<Vec<u8>> = bundle.iter().map(|c| c.der.clone()).collect();
    let (action, switched) = step(&added, &published);
    assert_eq!(action, Action::RenewServing(rotation::Reason::NewCa));
    assert!(
        serving
            .update(switched.tls_crt.as_bytes(), switched.tls_key.as_bytes())
            .unwrap()
    );
    assert!(trusted(addr, &added.ca_crt).await, "new leaf, bundle old+new");
    assert!(trusted(addr, &new_ca_pem).await, "new leaf, new CA only");
    assert!(
        !trusted(addr, &old.ca_crt).await,
        "the old CA alone no longer verifies"
    );

    // Phase 3: the old CA leaves the bundle.
    let (action, pruned) = step(&switched, &published);
    assert_eq!(action, Action::Prune(vec![0]));
    assert_eq!(pruned.ca_crt, new_ca_pem);
    assert!(trusted(addr, &pruned.ca_crt).await, "after rotation");
    assert_eq!(
        rotation::plan(now, &pruned, &published, &names(), &policy),
        Action::Keep
    );
    server.abort();
}

#[tokio::test]
async fn an_unknown_configuration_does_not_block_the_certificate() {
    let fake = FakeApi::default();
    let mut registry = Registry::default();
    let contents = replica(&fake, &mut registry).sync().await.unwrap();
    assert_eq!(contents, fake.secret_contents());
    let log = fake.log();
    assert!(
        log.contains(&(Method::GET, CONFIG_PATH.to_string(), 404)),
        "{log:?}"
    );
    assert_eq!(writes(&log), [(Method::POST, SECRETS.to_string(), 201)]);
    let stored = fake.state.lock().unwrap().secret.clone().unwrap();
    assert!(stored["metadata"].get("ownerReferences").is_none(), "{stored}");
}
