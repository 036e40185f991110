//! Herald tells an account what it did to its webhooks, as its own signed
//! events (`herald.*`) to the webhooks whose filter names them: a webhook
//! disabled after failing for the account's window, a delivery exhausted,
//! a webhook recovered. The engine is driven by hand, so "nothing more"
//! is asserted once every attempt has finished.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Receiver, Reply, TestApp, check_error, hex_hmac};

/// An operations webhook: `business` bodies (`{"event","payload"}`),
/// signed with a secret the test knows.
async fn ops_webhook(app: &TestApp, receiver: &Receiver, event_types: Value) {
    let body = json!({"url": receiver.url, "profile": "business", "secret": "ops-secret", "event_types": event_types});
    app.create_webhook(body).await;
}

/// The operational events an ops receiver got, each checked for its signature.
fn news(receiver: &mut Receiver) -> Vec<Value> {
    receiver
        .drain()
        .into_iter()
        .map(|request| {
            assert_eq!(request.header("signature"), Some(hex_hmac(b"ops-secret", &request.body).as_str()));
            request.json()
        })
        .collect()
}

#[tokio::test]
async fn a_webhook_failing_for_the_accounts_window_is_disabled_and_the_account_told() {
    let app = TestApp::spawn_driven().await;
    let (status, account) =
        app.call(Method::PATCH, "/v1/account", &app.token, Some(json!({"disable_after_seconds": 600}))).await;
    assert_eq!((status, &account["disable_after_seconds"]), (StatusCode::OK, &json!(600)));
    let refused = app.call(Method::PATCH, "/v1/account", &app.token, Some(json!({"disable_after_seconds": 5}))).await;
    check_error(refused, 400, "invalid_field", "disable_after_seconds");

    let mut failing = Receiver::start_with(vec![Reply::status(500); 1000]).await;
    let failing_id =
        app.create_webhook(json!({"url": failing.url, "event_types": ["t"]})).await["id"].as_str().unwrap().to_owned();
    let mut ops = Receiver::start().await;
    ops_webhook(&app, &ops, json!(["herald.*"])).await;
    let first_failure = app.now();
    for i in 0..5 {
        app.send_event(json!({"type": "t", "id": format!("f{i}"), "payload": {}})).await;
    }
    app.run_until_idle().await;
    assert_eq!(failing.drain().len(), 5);
    let path = format!("/v1/webhooks/{failing_id}");
    // A minute at a time: disabled once, and only once, the window has passed.
    let mut disabled_after = None;
    for minute in 1..=40 {
        app.clock.advance(Duration::from_secs(60));
        app.run_until_idle().await;
        failing.drain();
        let (_, view) = app.get(&path).await;
        if view["enabled"] == false {
            disabled_after = Some(minute);
            let reason = view["disabled_reason"].as_str().unwrap();
            assert!(reason.starts_with("every attempt has failed since"), "{reason}");
            assert!(reason.contains(&first_failure.to_rfc3339()), "{reason}");
            break;
        }
    }
    let minute = disabled_after.expect("the webhook was never disabled");
    assert!(minute >= 10, "disabled after {minute} minutes, before the 600 s window");
    let told = news(&mut ops);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["event"], "herald.webhook.disabled");
    assert_eq!(told[0]["payload"]["webhook_id"], failing_id.as_str());
    assert!(told[0]["payload"]["reason"].as_str().unwrap().starts_with("every attempt has failed"));

    // Nothing more goes to it.
    app.send_event(json!({"type": "t", "payload": {}})).await;
    app.clock.advance(Duration::from_secs(3600));
    app.run_until_idle().await;
    assert!(failing.drain().is_empty());

    // Enabled again, it starts afresh: one more failure does not disable it
    // (its old failures no longer count).
    let (status, view) = app.call(Method::PATCH, &path, &app.token, Some(json!({"enabled": true}))).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    app.send_event(json!({"type": "t", "id": "again", "payload": {}})).await;
    app.run_until_idle().await;
    // The new event and the retries that waited while it was disabled: all
    // fail, and open its breaker afresh, not past the window.
    assert!(failing.drain().len() >= 5);
    assert_eq!(app.get(&path).await.1["enabled"], true, "fresh failures after enabling are not past the window");
}

/// The review of #13: an update written from a stale read (a PATCH racing
/// Herald's disable) wrote `enabled` back and undid the disable.
#[tokio::test]
async fn an_update_from_a_stale_read_is_refused_not_written() {
    use herald::store::{SqliteStore, Store};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("herald.db")).unwrap();
    let now = herald::model::Timestamp(1_800_000_000_000);
    let account = store.bootstrap(None, now).await.unwrap().default_account.unwrap().0;
    let webhook =
        herald::model::Webhook::new(&account.id, "http://127.0.0.1:9/hook", Default::default(), "whsec_x".into(), now);
    store.create_webhook(webhook.clone()).await.unwrap();
    let later = herald::model::Timestamp(now.0 + 1000);
    assert!(store.disable_webhook(&account.id, &webhook.id, "gone", later).await.unwrap());
    let stale = herald::model::Webhook { description: "renamed".into(), updated_at: later, ..webhook.clone() };
    let err = store.update_webhook(stale, webhook.updated_at).await.unwrap_err();
    assert!(matches!(err, herald::store::StoreError::Conflict(_)), "{err}");
    let stored = store.get_webhook(&account.id, &webhook.id).await.unwrap().unwrap();
    assert_eq!((stored.enabled, stored.description.as_str()), (false, ""));
}

#[tokio::test]
async fn an_exhausted_delivery_and_a_recovery_are_told_to_the_webhooks_that_ask() {
    let app = TestApp::spawn_driven().await;
    let mut flaky = Receiver::start_with(vec![Reply::status(500); 5]).await;
    let mut every_event = Receiver::start().await;
    let mut ops = Receiver::start().await;
    let flaky_id =
        app.create_webhook(json!({"url": flaky.url, "event_types": ["t"], "retry": {"schedule": [10]}})).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
    app.create_webhook(json!({"url": every_event.url})).await;
    ops_webhook(&app, &ops, json!(["herald.delivery.exhausted", "herald.webhook.recovered"])).await;

    // Two attempts, both failed: exhausted.
    let sent = app.send_event(json!({"type": "t", "id": "x1", "payload": {}})).await;
    assert_eq!(sent["deliveries"], 2, "the flaky webhook and the one that takes every event");
    app.run_until_idle().await;
    app.clock.advance(Duration::from_secs(11));
    app.run_until_idle().await;
    assert_eq!(flaky.drain().len(), 2);
    let told = news(&mut ops);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["event"], "herald.delivery.exhausted");
    let exhausted = &told[0]["payload"];
    let delivery = app.delivery_of_webhook("x1", &flaky_id).await;
    assert_eq!(exhausted["delivery_id"], delivery["id"]);
    assert_eq!(
        (&exhausted["event_id"], &exhausted["event_type"], &exhausted["attempts"], &exhausted["last_status_code"]),
        (&json!("x1"), &json!("t"), &json!(2), &json!(500))
    );
    // A webhook that takes every event gets the account's events, not Herald's.
    let seen: Vec<Value> = every_event.drain().iter().map(|r| r.json()).collect();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["type"], "t");

    // Three more fail, five in a row: the breaker opens; two minutes later
    // the receiver answers again, and it closes.
    for i in 0..3 {
        app.send_event(json!({"type": "t", "id": format!("r{i}"), "payload": {}})).await;
    }
    app.run_until_idle().await;
    assert_eq!(flaky.drain().len(), 3);
    assert_eq!(app.get(&format!("/v1/webhooks/{flaky_id}")).await.1["circuit"]["state"], "open");
    app.clock.advance(Duration::from_secs(120));
    app.run_until_idle().await;
    assert_eq!(flaky.drain().len(), 3, "a probe, then the other two");
    let told = news(&mut ops);
    let recovered: Vec<&Value> = told.iter().filter(|e| e["event"] == "herald.webhook.recovered").collect();
    assert_eq!(recovered.len(), 1, "{told:?}");
    assert_eq!(recovered[0]["payload"]["webhook_id"], flaky_id.as_str());
    let (_, view) = app.get(&format!("/v1/webhooks/{flaky_id}")).await;
    assert_eq!(view["circuit"]["state"], "closed");
}

#[tokio::test]
async fn herald_event_types_are_refused_at_ingest_and_listed_in_the_catalogue() {
    let app = TestApp::spawn().await;
    let refused = app.post("/v1/events", json!({"type": "herald.webhook.disabled", "payload": {}})).await;
    check_error(refused, 400, "invalid_field", "herald's own operational events");
    let (_, catalogue) = app.get("/v1/event-types").await;
    let herald = catalogue["channels"].as_array().unwrap().iter().find(|c| c["channel"] == "herald").unwrap();
    let types: Vec<&str> = herald["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["herald.webhook.disabled", "herald.webhook.recovered", "herald.delivery.exhausted"]);
}
