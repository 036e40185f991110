//! Webhook CRUD, secrets, rotation and the test event.

use axum::http::Method;
use serde_json::{Value, json};

use crate::support::{Receiver, TestApp, check_error};

#[tokio::test]
async fn create_read_list_update_delete() {
    let app = TestApp::spawn().await;
    let created = app
        .create_webhook(json!({
            "url": "http://127.0.0.1:1/a",
            "description": "orders",
            "event_types": ["whatsapp:message:*"],
            "retry": {"exponential": {"first": 5, "factor": 2, "cap": 60, "attempts": 4}},
            "timeout_ms": 3000
        }))
        .await;
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("wh_"));
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created["profile"], "standard");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["effective_timeout_ms"], 3000);

    let (status, read) = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(read["description"], "orders");
    assert_eq!(read["retry"]["exponential"]["attempts"], 4);
    assert!(read.get("secret").is_none(), "the secret is only shown on create and by /secret");

    let (_, list) = app.get("/v1/webhooks").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    let path = format!("/v1/webhooks/{id}");
    let (status, updated) = app
        .call(
            Method::PATCH,
            &path,
            &app.token,
            Some(json!({"event_types": null, "timeout_ms": null, "enabled": false})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["event_types"], Value::Null);
    assert_eq!(updated["timeout_ms"], Value::Null);
    assert_eq!(updated["effective_timeout_ms"], 15_000);
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["description"], "orders", "absent fields stay as they were");

    let (status, _) = app.call(Method::DELETE, &path, &app.token, None).await;
    assert_eq!(status, 204);
    let (status, body) = app.get(&path).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");
    let (status, _) = app.call(Method::DELETE, &path, &app.token, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_given_secret_is_kept_and_readable() {
    let app = TestApp::spawn().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let created = app.create_webhook(json!({"url": "http://127.0.0.1:1/", "secret": secret})).await;
    let (status, body) = app.get(&format!("/v1/webhooks/{}/secret", created["id"].as_str().unwrap())).await;
    assert_eq!(status, 200);
    assert_eq!(body["secret"], secret);
    assert_eq!(body["previous_secret"], Value::Null);
}

#[tokio::test]
async fn during_a_rotation_both_secrets_verify() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    let created = app.create_webhook(json!({"url": receiver.url})).await;
    let id = created["id"].as_str().unwrap();
    let old = created["secret"].as_str().unwrap().to_owned();

    let (status, rotated) = app.post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({"grace_seconds": 3600})).await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["previous_secret"]["secret"], old);

    app.send_event(json!({"type": "t", "payload": {"rotated": true}})).await;
    let request = receiver.next().await;
    assert_eq!(request.header("webhook-signature").unwrap().split(' ').count(), 2);
    for secret in [&old, &new] {
        standardwebhooks::Webhook::new(secret).unwrap().verify(&request.body, &request.headers).unwrap();
    }

    // Once the grace period is over only the new secret signs: the old one
    // no longer verifies.
    app.clock.advance(std::time::Duration::from_secs(3601));
    app.send_event(json!({"type": "t", "payload": {}})).await;
    let request = receiver.next().await;
    // (The library's own `verify` checks the timestamp against the wall
    // clock, which the manual clock has left behind: sign with it instead.)
    let signature = |secret: &str| {
        let (id, at) = (request.header("webhook-id").unwrap(), request.header("webhook-timestamp").unwrap());
        standardwebhooks::Webhook::new(secret).unwrap().sign(id, at.parse().unwrap(), &request.body).unwrap()
    };
    assert_eq!(request.header("webhook-signature"), Some(signature(&new).as_str()), "only the new secret signs");
    assert_ne!(signature(&old), signature(&new));
    let (_, secrets) = app.get(&format!("/v1/webhooks/{id}/secret")).await;
    assert_eq!(secrets["previous_secret"], Value::Null);
}

#[tokio::test]
async fn the_test_endpoint_sends_a_test_event_to_that_webhook_only() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    let mut other = Receiver::start().await;
    let created = app.create_webhook(json!({"url": receiver.url, "event_types": ["orders:*"]})).await;
    let other_hook = app.create_webhook(json!({"url": other.url})).await;
    let id = created["id"].as_str().unwrap();
    let (status, body) = app.post(&format!("/v1/webhooks/{id}/test"), json!(null)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["deliveries"], 1);
    let request = receiver.next().await;
    assert_eq!(request.json()["type"], "webhook.test");
    assert_eq!(request.json()["data"]["webhook_id"], id);
    app.nothing_more(&mut receiver, id).await;
    app.nothing_more(&mut other, other_hook["id"].as_str().unwrap()).await;

    let path = format!("/v1/webhooks/{id}");
    app.call(Method::PATCH, &path, &app.token, Some(json!({"enabled": false}))).await;
    check_error(app.post(&format!("/v1/webhooks/{id}/test"), json!(null)).await, 409, "conflict", "disabled");
}

#[tokio::test]
async fn rotating_a_seed_profile_secret_switches_its_single_signature_at_once() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    let created = app.create_webhook(json!({"url": receiver.url, "profile": "business", "secret": "old-secret"})).await;
    let id = created["id"].as_str().unwrap();
    let (status, rotated) =
        app.post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({"secret": "new-secret"})).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["previous_secret"], Value::Null, "no second signature to keep the old one in");
    app.send_event(json!({"type": "t", "payload": {}})).await;
    let request = receiver.next().await;
    assert_eq!(request.header("signature"), Some(crate::support::hex_hmac(b"new-secret", &request.body).as_str()));
    check_error(
        app.post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({"secret": "has space"})).await,
        400,
        "invalid_field",
        "secret",
    );
}

/// `rotate-secret` with no `grace_seconds`: the old secret signs beside
/// the new one for 86 400 s, and not after.
#[tokio::test]
async fn a_rotation_without_grace_seconds_keeps_the_old_secret_for_86_400_s() {
    let app = TestApp::spawn_driven().await;
    let mut receiver = Receiver::start().await;
    let created = app.create_webhook(json!({"url": receiver.url})).await;
    let id = created["id"].as_str().unwrap();
    let rotated_at = app.now();
    let (status, rotated) = app.call(Method::POST, &format!("/v1/webhooks/{id}/rotate-secret"), &app.token, None).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["previous_secret"]["secret"], created["secret"], "{rotated}");

    let ms = std::time::Duration::from_millis;
    app.clock.advance(ms(86_400_000 - 1));
    app.send_event(json!({"type": "t", "payload": {}})).await;
    assert_eq!(app.run_until_idle().await, 1);
    let last_moment = receiver.next().await;
    assert_eq!(last_moment.header("webhook-signature").unwrap().split(' ').count(), 2, "1 ms before the end");
    app.clock.advance(ms(1));
    assert_eq!(app.now().0 - rotated_at.0, 86_400_000);
    app.send_event(json!({"type": "t", "payload": {}})).await;
    assert_eq!(app.run_until_idle().await, 1);
    let after = receiver.next().await;
    assert_eq!(after.header("webhook-signature").unwrap().split(' ').count(), 1, "at 86 400 s: {after:?}");
    let (_, secrets) = app.get(&format!("/v1/webhooks/{id}/secret")).await;
    assert_eq!(secrets["previous_secret"], Value::Null);
}

/// A delivery waiting for its next attempt is not sent to a webhook that
/// was disabled or deleted meanwhile.
#[tokio::test]
async fn disabling_or_deleting_a_webhook_stops_its_retries() {
    let app = TestApp::spawn_driven().await;
    let mut disabled = Receiver::start_with(vec![crate::support::Reply::status(500)]).await;
    let mut deleted = Receiver::start_with(vec![crate::support::Reply::status(500)]).await;
    let a = app.create_webhook(json!({"url": disabled.url})).await;
    let b = app.create_webhook(json!({"url": deleted.url})).await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let sent = app.send_event(json!({"type": "t", "payload": {}})).await;
    assert_eq!(sent["deliveries"], 2);
    assert_eq!(app.run_until_idle().await, 2);
    assert_eq!((disabled.drain().len(), deleted.drain().len()), (1, 1));
    let waiting = app.delivery_of_webhook(sent["id"].as_str().unwrap(), a).await;
    assert_eq!(waiting["status"], "retrying", "{waiting}");

    let (status, _) =
        app.call(Method::PATCH, &format!("/v1/webhooks/{a}"), &app.token, Some(json!({"enabled": false}))).await;
    assert_eq!(status, 200);
    let (status, _) = app.call(Method::DELETE, &format!("/v1/webhooks/{b}"), &app.token, None).await;
    assert_eq!(status.as_u16() / 100, 2);
    // Past every wait the standard policy has left (the longest is 10 h + 20 %).
    for _ in 0..8 {
        app.clock.advance(std::time::Duration::from_secs(12 * 3600));
        assert_eq!(app.run_until_idle().await, 0);
    }
    assert_eq!((disabled.drain().len(), deleted.drain().len()), (0, 0), "a retry went out");
    let after = app.delivery(waiting["id"].as_str().unwrap()).await;
    assert_eq!(after["n_attempts"], 1, "{after}");
}
