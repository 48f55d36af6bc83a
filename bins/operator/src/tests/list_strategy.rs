//! The start-up probe that decides between streamed and paged initial lists, against a mock
//! API server answering the probe's watch as each Kubernetes version does.

use crate::list_strategy::ListStrategy;
use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;

const BOOKMARK_END: &str = r#"{"type":"BOOKMARK","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"resourceVersion":"42","annotations":{"k8s.io/initial-events-end":"true"}}}}
"#;
const BOOKMARK_PLAIN: &str = r#"{"type":"BOOKMARK","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"resourceVersion":"42"}}}
"#;
const ADDED: &str = r#"{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"x","namespace":"default","resourceVersion":"41"}}}
"#;
const REFUSED_1_33: &str = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled","reason":"Invalid","code":422}"#;

/// How the mock answers the probe.
enum Answer {
    Stream(&'static str),
    Status(StatusCode, &'static str),
    /// Accepts the watch and sends nothing (a server that ignores `sendInitialEvents`).
    Silent,
}

/// Resolves `Auto` against a server answering `answer`; also returns the probe's query.
async fn probe(answer: Answer) -> (ListStrategy, String) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.expect("the probe asks");
        let query = request.uri().query().unwrap_or_default().to_string();
        let response = match answer {
            Answer::Stream(body) => Response::builder()
                .status(StatusCode::OK)
                .body(Body::from(body.as_bytes().to_vec())),
            Answer::Status(code, body) => Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(body.as_bytes().to_vec())),
            Answer::Silent => {
                // Never answered: the probe's own deadline must end the wait.
                std::mem::forget(send);
                return query;
            }
        };
        send.send_response(response.expect("valid response"));
        query
    });
    let client = Client::new(service, "default");
    let strategy = ListStrategy::Auto.resolve(&client).await;
    (strategy, server.await.expect("mock server"))
}

#[tokio::test]
async fn streams_only_when_the_initial_events_end_with_the_bookmark() {
    let (strategy, query) = probe(Answer::Stream(BOOKMARK_END)).await;
    assert_eq!(strategy, ListStrategy::Streaming);
    for part in [
        "watch=true",
        "sendInitialEvents=true",
        "resourceVersionMatch=NotOlderThan",
        "allowWatchBookmarks=true",
        "labelSelector=lmcache.ai%2Fwatch-list-probe%3Dnone",
    ] {
        assert!(query.split('&').any(|p| p == part), "{part} missing from {query}");
    }
    // A bookmark without the annotation or an object first: the parameter was not understood.
    assert_eq!(probe(Answer::Stream(BOOKMARK_PLAIN)).await.0, ListStrategy::Paged);
    assert_eq!(probe(Answer::Stream(ADDED)).await.0, ListStrategy::Paged);
}

#[tokio::test]
async fn pages_when_the_server_refuses_streamed_lists() {
    // Kubernetes 1.33 (WatchList off by default) and servers older than 1.27.
    let (strategy, _) = probe(Answer::Status(StatusCode::UNPROCESSABLE_ENTITY, REFUSED_1_33)).await;
    assert_eq!(strategy, ListStrategy::Paged);
    let forbidden =
        r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}"#;
    assert_eq!(
        probe(Answer::Status(StatusCode::FORBIDDEN, forbidden)).await.0,
        ListStrategy::Paged
    );
}

#[tokio::test(start_paused = true)]
async fn pages_when_the_server_never_answers() {
    let (strategy, _) = probe(Answer::Silent).await;
    assert_eq!(strategy, ListStrategy::Paged);
}

#[tokio::test]
async fn an_explicit_strategy_sends_no_probe() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    assert_eq!(ListStrategy::Paged.resolve(&client).await, ListStrategy::Paged);
    assert_eq!(
        ListStrategy::Streaming.resolve(&client).await,
        ListStrategy::Streaming
    );
    drop(client);
    assert!(handle.next_request().await.is_none(), "no request was sent");
}

#[test]
fn streamed_or_pages_of_100() {
    use kube::runtime::watcher::{Config, InitialListStrategy};
    let base = Config::default().labels("a=b");
    let streamed = ListStrategy::Streaming.apply(base.clone());
    assert_eq!(streamed.initial_list_strategy, InitialListStrategy::StreamingList);
    assert_eq!(streamed.label_selector.as_deref(), Some("a=b"));
    // `Auto` unresolved pages: that works on every server.
    for paged in [ListStrategy::Paged, ListStrategy::Auto] {
        let config = paged.apply(base.clone());
        assert_eq!(config.initial_list_strategy, InitialListStrategy::ListWatch);
        assert_eq!(config.page_size, Some(100));
        assert_eq!(config.label_selector.as_deref(), Some("a=b"));
    }
}
