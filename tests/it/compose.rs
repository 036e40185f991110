//! Compose webhooks (seeds 000/001): a template of method, URL, headers and
//! body, rendered per event with every value escaped for where it lands.

use axum::http::Method;
use serde_json::{Value, json};

use crate::support::{Receiver, TestApp, check_error, hex_hmac};

fn status_payload() -> Value {
    json!({
        "id": "a418d672-9781-4d97-b517-a56f7d95ad8a",
        "channel": "whatsapp",
        "from": "919019120xxx",
        "to": "9190199xxxxx",
        "status": "read",
        "read_at": "2021-06-18T14:48:06.886358Z",
        "foreign_id": "order 42 & co"
    })
}

#[tokio::test]
async fn the_seed_compose_request_is_rendered_and_routed_by_webhook_id() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    let mut plain = Receiver::start().await;
    let plain_hook = app.create_webhook(json!({"url": plain.url, "profile": "business"})).await;
    let url = format!(
        "{}?id=@{{{{payload.id}}}}&mobile=@{{{{payload.mobile}}}}&status=@{{{{payload.status}}}}&ref=@{{{{payload.foreign_id}}}}",
        receiver.url
    );
    let created = app
        .create_webhook(json!({
            "url": url,
            "profile": "compose",
            "template": {
                "name": "ack receiver",
                "method": "POST",
                "headers": {"Authorization": "Bearer %token%", "X-Message": "@{{payload.id}}"},
                "body": "{\"id\": \"@{{payload.id}}\", \"mobile\": \"@{{payload.mobile}}\", \"message_status\": \"@{{payload.status}}\", \"read_at\": \"@{{payload.read_at}}\", \"event_id\": \"@{{id}}\"}",
                "body_format": "json"
            }
        }))
        .await;
    assert_eq!(created["template"]["name"], "ack receiver");
    assert!(created.get("warnings").is_none(), "{created}");

    let sent = app
        .send_event(json!({"id": "evt-7", "type": "whatsapp:message:status", "payload": status_payload(), "webhook_id": created["id"]}))
        .await;
    assert_eq!(sent["deliveries"], 1, "only the composed webhook gets an event that names it");
    let request = receiver.next().await;
    assert_eq!(request.method, Method::POST);
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(request.uri.query().unwrap().as_bytes()).into_owned().collect();
    assert_eq!(
        query,
        [
            ("id".to_owned(), "a418d672-9781-4d97-b517-a56f7d95ad8a".to_owned()),
            ("mobile".to_owned(), "9190199xxxxx".to_owned()),
            ("status".to_owned(), "read".to_owned()),
            ("ref".to_owned(), "order 42 & co".to_owned()),
        ]
    );
    assert_eq!(request.header("authorization"), Some("Bearer %token%"));
    assert_eq!(request.header("x-message"), Some("a418d672-9781-4d97-b517-a56f7d95ad8a"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.json(),
        json!({"id": "a418d672-9781-4d97-b517-a56f7d95ad8a", "mobile": "9190199xxxxx", "message_status": "read", "read_at": "2021-06-18T14:48:06.886358Z", "event_id": "evt-7"})
    );
    let id = created["id"].as_str().unwrap();
    assert_eq!(request.header("signature"), Some(hex_hmac(id.as_bytes(), &request.body).as_str()));
    app.nothing_more(&mut plain, plain_hook["id"].as_str().unwrap()).await;
}

#[tokio::test]
async fn form_bodies_get_and_put() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    let form = app
        .create_webhook(json!({
            "url": receiver.url,
            "profile": "compose",
            "template": {"method": "PUT", "body": {"to": "@{{payload.to}}", "note": "@{{payload.foreign_id}}"}, "body_format": "form"}
        }))
        .await;
    app.send_event(json!({"type": "t", "payload": status_payload(), "webhook_id": form["id"]})).await;
    let request = receiver.next().await;
    assert_eq!(request.method, Method::PUT);
    assert_eq!(request.header("content-type"), Some("application/x-www-form-urlencoded"));
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(&request.body).into_owned().collect();
    assert_eq!(fields, [("to".to_owned(), "9190199xxxxx".to_owned()), ("note".to_owned(), "order 42 & co".to_owned())]);

    let get = app
        .create_webhook(json!({"url": format!("{}?s=@{{{{payload.status}}}}", receiver.url), "profile": "compose", "template": {"method": "GET"}}))
        .await;
    app.send_event(json!({"type": "t", "payload": status_payload(), "webhook_id": get["id"]})).await;
    let request = receiver.next().await;
    assert_eq!(request.method, Method::GET);
    assert_eq!(request.uri.query(), Some("s=read"));
    assert!(request.body.is_empty());
}

#[tokio::test]
async fn hostile_values_cannot_escape_the_template() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    let webhook = app
        .create_webhook(json!({
            "url": format!("{}?q=@{{{{payload.evil}}}}", receiver.url),
            "profile": "compose",
            "template": {"headers": {"X-Evil": "@{{payload.evil}}"}, "body": "{\"v\": \"@{{payload.evil}}\", \"raw\": @{{payload.evil}}}"}
        }))
        .await;
    let evil = "\"}, \"admin\": true, \"x\": \"\r\nX-Injected: yes&q2=1#frag";
    app.send_event(json!({"type": "t", "payload": {"evil": evil}, "webhook_id": webhook["id"]})).await;
    let request = receiver.next().await;
    assert_eq!(request.header("x-injected"), None);
    assert!(!request.header("x-evil").unwrap().contains('\n'));
    let body = request.json();
    assert_eq!(body, json!({"v": evil, "raw": evil}));
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(request.uri.query().unwrap().as_bytes()).into_owned().collect();
    assert_eq!(query, [("q".to_owned(), evil.to_owned())]);
}

#[tokio::test]
async fn templates_are_checked_when_saved() {
    let app = TestApp::spawn().await;
    let url = "http://127.0.0.1:1/hook";
    let unclosed = app
        .post(
            "/v1/webhooks",
            json!({"url": url, "profile": "compose", "template": {"body": "{\"id\": \"@{{payload.id\"}"}}),
        )
        .await;
    assert!(unclosed.1["message"].as_str().unwrap().contains("offset 8"), "{}", unclosed.1);
    check_error(unclosed, 400, "invalid_field", "template.body");

    let two_values = app
        .post("/v1/webhooks", json!({"url": url, "profile": "compose", "template": {"body": "{\"id\": @{{payload.id}} @{{payload.to}}}"}}))
        .await;
    check_error(two_values, 400, "invalid_field", "not valid JSON");

    check_error(
        app.post("/v1/webhooks", json!({"url": url, "profile": "compose"})).await,
        400,
        "invalid_field",
        "needs a template",
    );
    let bad_url = app
        .post("/v1/webhooks", json!({"url": "http://@{{payload.host/x", "profile": "compose", "template": {}}))
        .await;
    assert!(bad_url.1["message"].as_str().unwrap().starts_with("url"), "{}", bad_url.1);
    check_error(bad_url, 400, "invalid_field", "url");
    check_error(
        app.post("/v1/webhooks", json!({"url": url, "template": {"method": "GET"}})).await,
        400,
        "invalid_field",
        "compose",
    );

    let (status, created) = app
        .post("/v1/webhooks", json!({"url": format!("{url}?c=@{{{{payload.colour}}}}"), "profile": "compose", "template": {"body": {"s": "@{{payload.status}}", "x": "@{{user.name}}"}}}))
        .await;
    assert_eq!(status, 201, "{created}");
    let warnings: Vec<&str> = created["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("payload.colour")));
    assert!(warnings.iter().any(|w| w.contains("user.name")));
}
