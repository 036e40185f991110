//! Bad input gets a 4xx with `{code, message}` naming the problem, and
//! nothing is half-written.

use axum::http::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, check_error as check};

#[tokio::test]
async fn malformed_json_wrong_types_and_unknown_fields() {
    let app = TestApp::spawn().await;
    let token = Some(app.token.as_str());
    check(app.call_raw(Method::POST, "/v1/webhooks", token, "{\"url\": ").await, 400, "invalid_json", "line 1");
    check(app.call_raw(Method::POST, "/v1/events", token, "not json").await, 400, "invalid_json", "invalid JSON");
    check(
        app.call_raw(Method::POST, "/v1/events", token, "{\"type\":\"t\",\"payload\":{}} trailing").await,
        400,
        "invalid_json",
        "trailing",
    );
    check(
        app.post("/v1/webhooks", json!({"url": "http://127.0.0.1:1/", "timeout_ms": "soon"})).await,
        400,
        "invalid_field",
        "timeout_ms",
    );
    check(
        app.post("/v1/webhooks", json!({"url": "http://127.0.0.1:1/", "colour": "red"})).await,
        400,
        "invalid_field",
        "colour",
    );
    check(app.post("/v1/webhooks", json!({"url": 5})).await, 400, "invalid_field", "url");
    check(app.post("/v1/webhooks", json!({})).await, 400, "invalid_field", "url");
    check(app.post("/v1/events", json!({"type": "t"})).await, 400, "invalid_field", "payload");
    check(app.post("/v1/events", json!({"type": 7, "payload": {}})).await, 400, "invalid_field", "type");
    check(app.post("/v1/events", json!({"type": "t", "payload": {}, "extra": 1})).await, 400, "invalid_field", "extra");
    check(
        app.post("/v1/events", json!([{"type": "t", "payload": {}}, {"type": "t"}])).await,
        400,
        "invalid_field",
        "[1]",
    );
    check(app.post("/v1/events", json!("a string")).await, 400, "invalid_field", "invalid type");
}

#[tokio::test]
async fn bad_values_name_their_field() {
    let app = TestApp::spawn().await;
    let url = "http://127.0.0.1:1/";
    for (body, mentions) in [
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "ftp://example.com/x"}), "scheme"),
        (json!({"url": "http://"}), "url"),
        (json!({"url": format!("http://example.com/{}", "a".repeat(3000))}), "url"),
        (json!({"url": url, "headers": {"X-Bad": "a\r\nInjected: yes"}}), "headers.X-Bad"),
        (json!({"url": url, "headers": {"bad name": "v"}}), "headers.bad name"),
        (json!({"url": url, "headers": {"Webhook-Signature": "forged"}}), "headers.Webhook-Signature"),
        (json!({"url": url, "event_types": ["a*b"]}), "event_types[0]"),
        (json!({"url": url, "profile": "carrier-pigeon"}), "profile"),
        (json!({"url": url, "retry": {"preset": "forever"}}), "retry.preset"),
        (
            json!({"url": url, "retry": {"exponential": {"first": 1, "factor": 0.5, "cap": 10, "attempts": 3}}}),
            "retry.exponential.factor",
        ),
        (json!({"url": url, "retry": {"schedule": [1, -5]}}), "retry.schedule"),
        (json!({"url": url, "retry": {"sometimes": true}}), "retry"),
        (json!({"url": url, "timeout_ms": 0}), "timeout_ms"),
        (json!({"url": url, "secret": "hunter2"}), "secret"),
    ] {
        check(app.post("/v1/webhooks", body).await, 400, "invalid_field", mentions);
    }
    let (_, list) = app.get("/v1/webhooks").await;
    assert_eq!(list["data"], json!([]), "no bad webhook was stored");

    for (event, mentions) in [
        (json!({"type": "", "payload": {}}), "type"),
        (json!({"type": "has space", "payload": {}}), "type"),
        (json!({"type": "t", "payload": {}, "id": "a b"}), "id"),
        (json!({"type": "t", "payload": {}, "timestamp": "yesterday"}), "timestamp"),
    ] {
        check(app.post("/v1/events", event).await, 400, "invalid_field", mentions);
    }
    check(app.post("/v1/events", json!([])).await, 400, "invalid_field", "batch");
    let too_many: Vec<Value> = (0..1001).map(|_| json!({"type": "t", "payload": 1})).collect();
    check(app.post("/v1/events", json!(too_many)).await, 400, "invalid_field", "1001");

    for (query, mentions) in [
        ("status=bogus", "status"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("since=never", "since"),
        ("colour=red", "colour"),
    ] {
        check(app.get(&format!("/v1/deliveries?{query}")).await, 400, "invalid_field", mentions);
    }
}

#[tokio::test]
async fn a_batch_with_one_bad_event_writes_nothing() {
    let app = TestApp::spawn().await;
    let batch = json!([
        {"id": "first", "type": "t", "payload": {}},
        {"id": "second", "type": "t", "payload": {}, "webhook_id": "wh_01ZZZZZZZZZZZZZZZZZZZZZZZZ"}
    ]);
    check(app.post("/v1/events", batch).await, 404, "not_found", "webhook");
    let (status, _) = app.get("/v1/events/first").await;
    assert_eq!(status, 404, "the valid event of a refused batch was not stored");
    let batch =
        json!([{"id": "first", "type": "t", "payload": {}}, {"id": "second", "type": "bad type", "payload": {}}]);
    check(app.post("/v1/events", batch).await, 400, "invalid_field", "[1].type");
    let (status, _) = app.get("/v1/events/first").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let app = TestApp::spawn_with(|config| config.max_body_bytes = 4096).await;
    let big = json!({"type": "t", "payload": {"blob": "x".repeat(5000)}});
    check(app.post("/v1/events", big).await, 413, "payload_too_large", "limit");
    let big_webhook = json!({"url": "http://127.0.0.1:1/", "description": "x".repeat(5000)});
    check(app.post("/v1/webhooks", big_webhook).await, 413, "payload_too_large", "limit");
    let fits = json!({"type": "t", "payload": {"blob": "x".repeat(3000)}});
    assert_eq!(app.post("/v1/events", fits).await.0, 202);
}

#[tokio::test]
async fn unknown_endpoints_and_methods_answer_json() {
    let app = TestApp::spawn().await;
    check(app.get("/v1/nothing-here").await, 404, "not_found", "endpoint");
    check(app.call(Method::PUT, "/v1/events", &app.token, None).await, 404, "not_found", "method");
}
