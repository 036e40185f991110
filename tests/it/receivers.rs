//! What a receiver says of itself, and the operator's rules for receivers:
//! `410 Gone` disables its webhook at once, `Retry-After` on 429 and 503
//! holds back that webhook alone, and `--require-https` refuses plain
//! `http` targets. The engine is driven by hand, so "nothing more was
//! sent" is asserted once every attempt has finished.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Receiver, Reply, TestApp, check_error};

#[tokio::test]
async fn a_410_disables_the_webhook_at_once_and_nothing_more_is_sent() {
    let app = TestApp::spawn_driven_with(|config| config.engine.per_webhook_concurrency = 1).await;
    let mut receiver = Receiver::start_with(vec![Reply::status(410)]).await;
    let webhook = app.create_webhook(json!({"url": receiver.url})).await;
    let path = format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap());
    for i in 0..5 {
        app.send_event(json!({"type": "t", "id": format!("g{i}"), "payload": {}})).await;
    }
    let gone_at = app.now();
    app.run_until_idle().await;
    assert_eq!(receiver.drain().len(), 1, "only the request that was answered 410");

    let (_, view) = app.get(&path).await;
    assert_eq!(view["enabled"], false, "{view}");
    assert_eq!(view["disabled_reason"], "the receiver answered 410 Gone");
    assert_eq!(view["disabled_at"], gone_at.to_rfc3339());
    let (_, page) = app.get("/v1/deliveries").await;
    let failed: Vec<&Value> = page["data"].as_array().unwrap().iter().filter(|d| d["status"] == "failed").collect();
    assert_eq!(failed.len(), 5, "{page}");
    let first = app.delivery_of("g0").await;
    assert_eq!((first["n_attempts"].as_u64(), first["last_status_code"].as_u64()), (Some(1), Some(410)));
    for i in 1..5 {
        assert_eq!(app.delivery_of(&format!("g{i}")).await["n_attempts"], 0, "g{i} was never sent");
    }

    // Days later, still nothing: the webhook takes no new events either.
    app.clock.advance(Duration::from_secs(3 * 24 * 3600));
    assert_eq!(app.send_event(json!({"type": "t", "payload": {}})).await["deliveries"], 0);
    assert_eq!(app.run_until_idle().await, 0);
    assert!(receiver.drain().is_empty());

    // Enabled again by the account, it is Herald's doing no more.
    let (status, view) = app.call(Method::PATCH, &path, &app.token, Some(json!({"enabled": true}))).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!((view["enabled"].as_bool(), &view["disabled_reason"]), (Some(true), &Value::Null));
    app.send_event(json!({"type": "t", "id": "back", "payload": {}})).await;
    assert_eq!(app.run_until_idle().await, 1);
    assert_eq!(receiver.drain().len(), 1);
    assert_eq!(app.delivery_of("back").await["status"], "success");
}

#[tokio::test]
async fn retry_after_on_429_holds_back_that_webhook_alone() {
    let app = TestApp::spawn_driven_with(|config| config.engine.per_webhook_concurrency = 1).await;
    let mut slow = Receiver::start_with(vec![Reply::status(429).with_header("retry-after", "120")]).await;
    let mut quick = Receiver::start().await;
    let slow_id = app.create_webhook(json!({"url": slow.url})).await["id"].as_str().unwrap().to_owned();
    let quick_id = app.create_webhook(json!({"url": quick.url})).await["id"].as_str().unwrap().to_owned();
    let held_at = app.now();
    for i in 0..3 {
        app.send_event(json!({"type": "t", "id": format!("s{i}"), "webhook_id": slow_id, "payload": {}})).await;
        app.send_event(json!({"type": "t", "id": format!("q{i}"), "webhook_id": quick_id, "payload": {}})).await;
    }
    app.run_until_idle().await;
    assert_eq!(slow.drain().len(), 1, "the slow receiver got one request, then a pause");
    assert_eq!(quick.drain().len(), 3, "the other webhook is not held");
    let (_, view) = app.get(&format!("/v1/webhooks/{slow_id}")).await;
    let until = herald::model::Timestamp(held_at.0 + 120_000).to_rfc3339();
    assert_eq!(view["circuit"]["open_until"], until, "{view}");
    assert_eq!(view["circuit"]["failures_in_a_row"], 1);

    app.clock.advance(Duration::from_secs(119));
    assert_eq!(app.run_until_idle().await, 0);
    assert!(slow.drain().is_empty(), "nothing before the time it asked for");
    app.clock.advance(Duration::from_secs(2));
    assert_eq!(app.run_until_idle().await, 3);
    assert_eq!(slow.drain().len(), 3);
    for i in 0..3 {
        assert_eq!(app.delivery_of(&format!("s{i}")).await["status"], "success", "s{i}");
    }
}

#[tokio::test]
async fn require_https_refuses_http_targets_everywhere_they_are_set() {
    let app = TestApp::spawn_with(|config| config.require_https = true).await;
    let refused = app.post("/v1/webhooks", json!({"url": "http://127.0.0.1:9/hook"})).await;
    check_error(refused, 400, "invalid_field", "only to https receivers");
    let webhook = app.create_webhook(json!({"url": "https://127.0.0.1:9/hook"})).await;
    let path = format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap());
    let refused = app.call(Method::PATCH, &path, &app.token, Some(json!({"url": "http://127.0.0.1:9/x"}))).await;
    check_error(refused, 400, "invalid_field", "only to https receivers");
    let compose = json!({"url": "http://127.0.0.1:9/?id=@{{payload.id}}", "profile": "compose", "template": {}});
    check_error(app.post("/v1/webhooks", compose).await, 400, "invalid_field", "only to https receivers");

    let bot = app.viber_token().await;
    let reply = app
        .http
        .post(format!("{}/pa/set_webhook", app.base))
        .header("X-Viber-Auth-Token", bot)
        .body(json!({"url": "http://127.0.0.1:9/viber"}).to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!((reply["status"].as_u64(), reply["status_message"].as_str()), (Some(1), Some("invalidUrl")));

    // The environment-configured webhook is held to it too: Herald does not start.
    let dir = tempfile::tempdir().unwrap();
    let mut config = herald::config::ServeConfig::from_args(herald::config::ServeArgs {
        listen: Some("127.0.0.1:0".into()),
        database: Some(format!("sqlite://{}", dir.path().join("h.db").display())),
        allow_private_targets: true,
        require_https: true,
        webhook_url: Some("http://127.0.0.1:9/hook".into()),
        ..Default::default()
    })
    .unwrap();
    config.admin_token = Some(crate::support::OPERATOR_TOKEN.into());
    let clock = std::sync::Arc::new(herald::clock::ManualClock::new(herald::model::Timestamp(1_800_000_000_000)));
    let err = herald::app::Application::build(config, clock).await.err().expect("an http WEBHOOK_URL is refused");
    assert!(format!("{err:#}").contains("only to https receivers"), "{err:#}");
}

/// A receiver that notes when each request arrives.
async fn timed_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<std::time::Instant>>>) {
    let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let noted = arrivals.clone();
    let app = axum::Router::new().fallback(move || {
        noted.lock().unwrap().push(std::time::Instant::now());
        async { StatusCode::OK }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, arrivals)
}

#[tokio::test]
async fn a_rate_limit_is_never_exceeded_at_the_receiver() {
    let mut app = TestApp::spawn().await;
    let (url, arrivals) = timed_receiver().await;
    let limit = json!({"per_second": 50, "burst": 5});
    let webhook = app.create_webhook(json!({"url": url, "rate_limit": limit})).await;
    assert_eq!(webhook["rate_limit"], json!({"per_second": 50.0, "burst": 5}));
    for bad in [json!({"per_second": 0}), json!({"per_second": 5, "burst": 0}), json!({"per_second": "fast"})] {
        let (status, body) = app.post("/v1/webhooks", json!({"url": url, "rate_limit": bad})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["message"].as_str().unwrap().contains("rate_limit"), "{body}");
    }
    let events: Vec<Value> = (0..120).map(|i| json!({"type": "t", "id": format!("p{i}"), "payload": {}})).collect();
    assert_eq!(app.post("/v1/events", Value::Array(events)).await.0, StatusCode::ACCEPTED);
    for _ in 0..120 {
        assert_eq!(app.next_attempt().await.next, herald::model::NextStep::Success);
    }
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 120);
    // At most burst + rate in any second, as sent; one more allowed for a
    // request that the network held back a few milliseconds.
    for (i, at) in arrivals.iter().enumerate() {
        let within = arrivals[i..].iter().take_while(|t| t.duration_since(*at) < Duration::from_secs(1)).count();
        assert!(within <= 56, "{within} requests arrived within one second");
    }
    let spread = arrivals[119].duration_since(arrivals[0]);
    assert!(spread >= Duration::from_millis(2200), "120 requests at 50/s after a burst of 5 took {spread:?}");
    // Lifted with null: as fast as the lane allows.
    let path = format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap());
    let (_, view) = app.call(Method::PATCH, &path, &app.token, Some(json!({"rate_limit": null}))).await;
    assert_eq!(view["rate_limit"], Value::Null);
}
