//! Events go out beside the reconciles: `publish` returns at once, at most four are in flight,
//! and `events_sent` waits for the rest.

use crate::context::{Context, ServiceMonitorApi, Writers};
use crate::metrics::Metrics;
use http::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::client::Body;
use kube::runtime::events::EventType;
use std::time::Duration;
use tower_test::mock::{Handle, SendResponse};

fn engine(i: usize) -> ObjectReference {
    ObjectReference {
        api_version: Some("lmcache.lmcache.ai/v1alpha1".into()),
        kind: Some("LMCacheEngine".into()),
        namespace: Some("default".into()),
        name: Some(format!("engine-{i}")),
        uid: Some(format!("uid-{i}")),
        ..ObjectReference::default()
    }
}

/// Answers one Event POST with the posted Event (as the API server does).
async fn answer(request: Request<Body>, send: SendResponse<Response<Body>>) {
    assert_eq!(request.method(), http::Method::POST);
    assert!(
        request.uri().path().ends_with("/namespaces/default/events"),
        "{}",
        request.uri()
    );
    let body = request.into_body().collect_bytes().await.expect("body");
    send.send_response(
        Response::builder()
            .status(StatusCode::CREATED)
            .header("content-type", "application/json")
            .body(Body::from(body.to_vec()))
            .expect("response"),
    );
}

/// A context whose API server is `handle`: every request waits until the test answers it.
fn context() -> (Context, Handle<Request<Body>, Response<Body>>) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ctx = Context::new(
        Client::new(service, "default"),
        "cluster.local",
        Writers::default().stores(),
        ServiceMonitorApi::new(false),
        Metrics::default(),
    );
    (ctx, handle)
}

async fn next(
    handle: &mut Handle<Request<Body>, Response<Body>>,
) -> (Request<Body>, SendResponse<Response<Body>>) {
    handle.next_request().await.expect("an Event request")
}

#[tokio::test]
async fn events_are_sent_in_the_background_four_at_a_time() {
    let (ctx, mut handle) = context();
    // Six Events published while the API server answers none: `publish` does not wait.
    for i in 0..6 {
        ctx.publish(
            &engine(i),
            1,
            EventType::Normal,
            "Created",
            "Created DaemonSet default/x",
        );
    }
    // The same (reason, message) again for one generation is not sent twice.
    ctx.publish(
        &engine(0),
        1,
        EventType::Normal,
        "Created",
        "Created DaemonSet default/x",
    );
    let mut in_flight = Vec::new();
    for _ in 0..4 {
        in_flight.push(next(&mut handle).await);
    }
    let fifth = tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await;
    assert!(fifth.is_err(), "a fifth Event was sent while four were in flight");
    let mut sent = std::pin::pin!(ctx.events_sent());
    assert!(
        futures::poll!(&mut sent).is_pending(),
        "events_sent returned with Events unanswered"
    );
    for (request, send) in in_flight {
        answer(request, send).await;
    }
    for _ in 0..2 {
        let (request, send) = next(&mut handle).await;
        answer(request, send).await;
    }
    tokio::time::timeout(Duration::from_secs(5), sent)
        .await
        .expect("events_sent returns once every Event is answered");
    let seventh = tokio::time::timeout(Duration::from_millis(100), handle.next_request()).await;
    assert!(seventh.is_err(), "the repeated Event was sent");
}

#[tokio::test]
async fn a_failed_event_may_be_published_again() {
    let (ctx, mut handle) = context();
    ctx.publish(&engine(0), 1, EventType::Warning, "NameConflict", "taken");
    let (_, send) = next(&mut handle).await;
    let refused = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}"#;
    send.send_response(
        Response::builder()
            .status(StatusCode::FORBIDDEN)
            .header("content-type", "application/json")
            .body(Body::from(refused.as_bytes().to_vec()))
            .expect("response"),
    );
    ctx.events_sent().await;
    // Unmarked after the failure: the next reconcile's publish sends it again.
    ctx.publish(&engine(0), 1, EventType::Warning, "NameConflict", "taken");
    let (request, send) = next(&mut handle).await;
    answer(request, send).await;
    ctx.events_sent().await;
}
