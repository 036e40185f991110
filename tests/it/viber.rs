//! `POST /pa/set_webhook` (seed 002): every rule of the Viber Bot API's
//! webhook registration.

use axum::http::Method;
use serde_json::{Value, json};

use crate::support::{Receiver, Reply, TestApp, viberbot_accepts};

async fn set_webhook(app: &TestApp, token: Option<&str>, body: Value) -> Value {
    let mut request = app.http.post(format!("{}/pa/set_webhook", app.base)).body(body.to_string());
    if let Some(token) = token {
        request = request.header("X-Viber-Auth-Token", token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "set_webhook always answers 200");
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

async fn viber_event(app: &TestApp, event_type: &str) -> u64 {
    let payload = json!({"event": event_type, "timestamp": 1457764197627u64, "message_token": 4912661846655238145u64,
        "user_id": "01234567890A=", "sender": {"id": "01234567890A=", "name": "John McClane", "avatar": "http://avatar.example.com"}});
    app.send_event(json!({"type": event_type, "payload": payload})).await["deliveries"].as_u64().unwrap()
}

#[tokio::test]
async fn registering_verifies_the_url_and_filters_events() {
    let app = TestApp::spawn().await;
    let mut bot = Receiver::start().await;
    let asked = json!(["delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started"]);
    let reply = set_webhook(
        &app,
        Some(&app.token),
        json!({"url": bot.url, "event_types": asked, "send_name": true, "send_photo": true}),
    )
    .await;
    assert_eq!(reply, json!({"status": 0, "status_message": "ok", "event_types": asked}));

    // Before accepting, Herald sent the verification callback, signed.
    let check = bot.next().await;
    assert_eq!(check.json()["event"], "webhook");
    assert!(check.json()["timestamp"].is_u64());
    viberbot_accepts(&app.token, &check).await;

    assert_eq!(viber_event(&app, "delivered").await, 1);
    let request = bot.next().await;
    viberbot_accepts(&app.token, &request).await;
    assert_eq!(request.json()["sender"]["name"], "John McClane", "send_name keeps names");

    // Narrow it to the mandatory events only.
    let reply = set_webhook(&app, Some(&app.token), json!({"url": bot.url, "event_types": []})).await;
    assert_eq!(reply, json!({"status": 0, "status_message": "ok", "event_types": ["subscribed", "unsubscribed"]}));
    bot.next().await;
    assert_eq!(viber_event(&app, "delivered").await, 0);
    assert_eq!(viber_event(&app, "message").await, 1, "message is mandatory");
    let request = bot.next().await;
    assert_eq!(request.json()["sender"].get("name"), None, "send_name defaults to false");
    assert_eq!(request.json()["sender"].get("avatar"), None, "send_photo defaults to false");
    assert_eq!(viber_event(&app, "subscribed").await, 1);
    bot.next().await;

    // Absent event_types: everything.
    let reply = set_webhook(&app, Some(&app.token), json!({"url": bot.url})).await;
    assert_eq!(reply["event_types"], asked);
    bot.next().await;
    assert_eq!(viber_event(&app, "seen").await, 1);
    bot.next().await;
    let (_, list) = app.get("/v1/webhooks").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "one bot webhook per account, updated in place");

    // An empty url removes it.
    let reply = set_webhook(&app, Some(&app.token), json!({"url": ""})).await;
    assert_eq!(reply, json!({"status": 0, "status_message": "ok"}));
    assert_eq!(viber_event(&app, "message").await, 0);
    let (_, list) = app.get("/v1/webhooks").await;
    assert_eq!(list["data"], json!([]));
    assert!(bot.drain().is_empty());
}

#[tokio::test]
async fn failures_answer_with_vibers_status_codes() {
    let app = TestApp::spawn().await;
    let refusing = Receiver::start_with(vec![Reply::status(500)]).await;
    let cases = [
        (None, json!({"url": refusing.url}), 2, "invalidAuthToken"),
        (Some("not-a-token"), json!({"url": refusing.url}), 2, "invalidAuthToken"),
        (Some(app.token.as_str()), json!({"event_types": []}), 4, "missingData"),
        (
            Some(app.token.as_str()),
            json!({"url": refusing.url, "event_types": ["delivered", "teleported"]}),
            3,
            "badData",
        ),
        (Some(app.token.as_str()), json!({"url": 7}), 3, "badData"),
        (Some(app.token.as_str()), json!({"url": "ftp://example.com"}), 1, "invalidUrl"),
        (Some(app.token.as_str()), json!({"url": refusing.url}), 1, "invalidUrl"),
    ];
    for (token, body, status, message) in cases {
        let reply = set_webhook(&app, token, body.clone()).await;
        assert_eq!(reply["status"], status, "{body}: {reply}");
        assert_eq!(reply["status_message"], message, "{body}: {reply}");
    }
    let (_, list) = app.call(Method::GET, "/v1/webhooks", &app.token, None).await;
    assert_eq!(list["data"], json!([]), "a URL that failed verification is not registered");
}
