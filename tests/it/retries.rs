//! Retries walked on the manual clock: the waits, the final failure,
//! `Retry-After`, redirects, timeouts, refused connections, manual retry.

use std::time::Duration;

use herald::model::{ErrorClass, NextStep, Timestamp};
use serde_json::{Value, json};

use crate::support::{Receiver, Reply, TestApp};

fn ts(value: &Value) -> Timestamp {
    Timestamp::parse_rfc3339(value.as_str().unwrap()).unwrap()
}

/// Gives the engine its chance to act at the clock's present time: an event
/// to another webhook goes through and is recorded, and it is the next
/// attempt recorded, so nothing else was sent meanwhile.
async fn let_the_engine_run(app: &mut TestApp, pacer: &mut Receiver, pacer_id: &str) {
    app.send_event(json!({"type": "pace", "payload": {}, "webhook_id": pacer_id})).await;
    pacer.next().await;
    let record = app.next_attempt().await;
    assert_eq!(record.attempt.started_at, app.now(), "the pacing event's attempt, not another");
    assert_eq!(record.next, NextStep::Success, "the pacing event's attempt, not another");
}

#[tokio::test]
async fn fail_fail_succeed_follows_the_policy_waits_on_the_clock() {
    let mut app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    // Keyed to the event, so that a marker sent meanwhile cannot take them.
    for _ in 0..2 {
        receiver.reply_to(|r| r.header("webhook-id") == Some("retried"), Reply::status(500));
    }
    let webhook = app.create_webhook(json!({"url": receiver.url, "retry": {"preset": "business"}})).await;
    let start = app.now();
    let sent = app.send_event(json!({"id": "retried", "type": "t", "payload": {"n": 1}})).await;

    receiver.next().await;
    let first = app.next_attempt().await;
    assert_eq!(first.attempt.started_at, start);
    assert_eq!(first.next, NextStep::RetryAt(Timestamp(start.0 + 10_000)));
    let delivery = app.delivery_of(sent["id"].as_str().unwrap()).await;
    assert_eq!(delivery["status"], "retrying");
    assert_eq!(ts(&delivery["next_attempt_at"]), Timestamp(start.0 + 10_000));

    // Nothing happens until the wait is over: the second attempt starts at
    // exactly +10 s on the clock, not at +9 s.
    app.clock.advance(Duration::from_secs(9));
    app.nothing_more(&mut receiver, webhook["id"].as_str().unwrap()).await;
    assert_eq!(app.next_attempt().await.next, NextStep::Success, "the marker's attempt, not the retry's");
    app.clock.advance(Duration::from_secs(1));
    let retry = receiver.next().await;
    assert_eq!(retry.header("webhook-id"), sent["id"].as_str(), "the id is stable across retries");
    let second = app.next_attempt().await;
    assert_eq!(second.attempt.started_at, Timestamp(start.0 + 10_000));
    assert_eq!(second.next, NextStep::RetryAt(Timestamp(start.0 + 110_000)));

    app.clock.advance(Duration::from_secs(100));
    receiver.next().await;
    let third = app.next_attempt().await;
    assert_eq!(third.attempt.started_at, Timestamp(start.0 + 110_000));
    assert_eq!(third.next, NextStep::Success);

    let delivery = app.delivery_of(sent["id"].as_str().unwrap()).await;
    assert_eq!(delivery["status"], "success");
    let codes: Vec<&Value> = delivery["attempts"].as_array().unwrap().iter().map(|a| &a["status_code"]).collect();
    assert_eq!(codes, [&json!(500), &json!(500), &json!(200)]);
    assert_eq!(delivery["attempts"][0]["error_class"], "status");
}

#[tokio::test]
async fn the_last_failed_attempt_fails_the_delivery_and_a_manual_retry_sends_it_again() {
    let mut app = TestApp::spawn().await;
    let mut receiver = Receiver::start_with(vec![
        Reply::status(500).with_body("down for maintenance"),
        Reply::status(502),
        Reply::status(404),
    ])
    .await;
    app.create_webhook(json!({"url": receiver.url, "retry": {"schedule": [1, 2]}})).await;
    let sent = app.send_event(json!({"type": "t", "payload": {}})).await;
    let event_id = sent["id"].as_str().unwrap();

    receiver.next().await;
    app.next_attempt().await;
    app.clock.advance(Duration::from_secs(1));
    receiver.next().await;
    app.next_attempt().await;
    app.clock.advance(Duration::from_secs(2));
    receiver.next().await;
    assert_eq!(app.next_attempt().await.next, NextStep::Failed);

    let delivery = app.delivery_of(event_id).await;
    assert_eq!(delivery["status"], "failed");
    assert_eq!(delivery["next_attempt_at"], Value::Null);
    assert_eq!(delivery["n_attempts"], 3);
    assert_eq!(delivery["last_status_code"], 404);
    assert_eq!(delivery["attempts"][0]["response_body"], "down for maintenance");

    let (_, failed) = app.get("/v1/deliveries?status=failed").await;
    assert_eq!(failed["data"].as_array().unwrap().len(), 1);

    let path = format!("/v1/deliveries/{}/retry", delivery["id"].as_str().unwrap());
    let (status, body) = app.post(&path, json!(null)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "pending");
    receiver.next().await;
    assert_eq!(app.next_attempt().await.next, NextStep::Success);
    let delivery = app.delivery_of(event_id).await;
    assert_eq!(delivery["status"], "success");
    assert_eq!(delivery["n_attempts"], 4);

    // A delivery still in progress is not retried by hand.
    receiver.then(Reply::status(500));
    let sent = app.send_event(json!({"type": "t", "payload": {}})).await;
    receiver.next().await;
    app.next_attempt().await;
    let pending = app.delivery_of(sent["id"].as_str().unwrap()).await;
    let (status, body) =
        app.post(&format!("/v1/deliveries/{}/retry", pending["id"].as_str().unwrap()), json!(null)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "conflict");
}

#[tokio::test]
async fn a_manual_retry_that_fails_fails_again_at_once() {
    let mut app = TestApp::spawn().await;
    let mut receiver = Receiver::start_with(vec![Reply::status(500), Reply::status(500)]).await;
    app.create_webhook(json!({"url": receiver.url, "retry": {"schedule": []}})).await;
    let sent = app.send_event(json!({"type": "t", "payload": {}})).await;
    receiver.next().await;
    assert_eq!(app.next_attempt().await.next, NextStep::Failed);
    let delivery = app.delivery_of(sent["id"].as_str().unwrap()).await;
    let (status, body) =
        app.post(&format!("/v1/deliveries/{}/retry", delivery["id"].as_str().unwrap()), json!(null)).await;
    assert_eq!(status, 202, "{body}");
    receiver.next().await;
    assert_eq!(app.next_attempt().await.next, NextStep::Failed);
    let delivery = app.delivery_of(sent["id"].as_str().unwrap()).await;
    assert_eq!(delivery["n_attempts"], 2);
    assert_eq!(delivery["status"], "failed");
    assert_eq!(delivery["next_attempt_at"], Value::Null);
}

#[tokio::test]
async fn retry_after_in_seconds_or_as_a_date_lengthens_the_wait() {
    let mut app = TestApp::spawn().await;
    let mut receiver = Receiver::start_with(vec![Reply::status(503).with_header("retry-after", "120")]).await;
    app.create_webhook(json!({"url": receiver.url, "retry": {"preset": "business"}})).await;
    let start = app.now();
    app.send_event(json!({"type": "t", "payload": {}})).await;
    receiver.next().await;
    assert_eq!(app.next_attempt().await.next, NextStep::RetryAt(Timestamp(start.0 + 120_000)));
    app.clock.advance(Duration::from_secs(120));
    receiver.next().await;
    assert_eq!(app.next_attempt().await.next, NextStep::Success);

    // An HTTP date 300 s ahead of the clock.
    let now = app.now();
    let at = std::time::UNIX_EPOCH + Duration::from_secs(now.unix_seconds() as u64 + 300);
    receiver.then(Reply::status(429).with_header("retry-after", httpdate::fmt_http_date(at)));
    app.send_event(json!({"type": "t", "payload": {}})).await;
    receiver.next().await;
    let NextStep::RetryAt(next) = app.next_attempt().await.next else { panic!("expected a retry") };
    let wait = next.0 - now.0;
    assert!((299_000..=300_000).contains(&wait), "waited {wait} ms");
}

#[tokio::test]
async fn a_redirect_is_a_failure_and_is_not_followed() {
    let mut app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    let elsewhere = receiver.url.replace("/hook", "/elsewhere");
    receiver.then(Reply::status(302).with_header("location", elsewhere));
    app.create_webhook(json!({"url": receiver.url, "retry": {"schedule": [5]}})).await;
    app.send_event(json!({"type": "t", "payload": {}})).await;
    assert_eq!(receiver.next().await.uri.path(), "/hook");
    let record = app.next_attempt().await;
    assert!(matches!(record.next, NextStep::RetryAt(_)));
    assert_eq!(record.attempt.status_code, Some(302));
    assert_eq!(record.attempt.error_class, Some(ErrorClass::Status));
    app.clock.advance(Duration::from_secs(5));
    assert_eq!(receiver.next().await.uri.path(), "/hook", "the retry goes to the webhook, not the redirect");
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out() {
    let mut app = TestApp::spawn().await;
    // Accepts connections and never writes a byte.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    app.create_webhook(json!({"url": url, "timeout_ms": 200, "retry": {"schedule": []}})).await;
    app.send_event(json!({"type": "t", "payload": {}})).await;
    let record = app.next_attempt().await;
    assert_eq!(record.attempt.error_class, Some(ErrorClass::Timeout));
    assert_eq!(record.next, NextStep::Failed);
    assert!(record.attempt.duration_ms >= 200);
    held.abort();
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let mut app = TestApp::spawn().await;
    let (_reserved, url) = crate::support::refused_url();
    app.create_webhook(json!({"url": url, "retry": {"schedule": [1]}})).await;
    app.send_event(json!({"type": "t", "payload": {}})).await;
    let record = app.next_attempt().await;
    assert_eq!(record.attempt.error_class, Some(ErrorClass::Connect));
    assert!(matches!(record.next, NextStep::RetryAt(_)));
}

#[tokio::test]
async fn the_standard_policy_spreads_eight_attempts_over_about_a_day_with_jitter() {
    let mut app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    for _ in 0..8 {
        receiver.then(Reply::status(500));
    }
    app.create_webhook(json!({"url": receiver.url})).await;
    let sent = app.send_event(json!({"type": "t", "payload": {}})).await;
    let bases = [10.0, 50.0, 250.0, 1250.0, 6250.0, 31_250.0, 36_000.0];
    let mut total_ms = 0i64;
    for base in bases {
        receiver.next().await;
        let record = app.next_attempt().await;
        let NextStep::RetryAt(at) = record.next else { panic!("expected a retry, got {:?}", record.next) };
        let wait = at.0 - app.now().0;
        let (low, high) = ((base * 800.0) as i64, (base * 1200.0) as i64);
        assert!((low..=high).contains(&wait), "wait {wait} ms outside {low}..={high}");
        total_ms += wait;
        app.clock.set(at);
    }
    receiver.next().await;
    assert_eq!(app.next_attempt().await.next, NextStep::Failed);
    let hours = total_ms as f64 / 3_600_000.0;
    assert!((15.0..=27.0).contains(&hours), "{hours} h");
    let delivery = app.delivery_of(sent["id"].as_str().unwrap()).await;
    assert_eq!(delivery["n_attempts"], 8);
    assert_eq!(delivery["status"], "failed");
}

#[tokio::test]
async fn a_circuit_breaker_stops_hammering_a_failing_receiver_and_probes_it() {
    let mut app = TestApp::spawn_with(|config| config.engine.per_webhook_concurrency = 1).await;
    let mut receiver = Receiver::start_with((0..6).map(|_| Reply::status(503)).collect()).await;
    let webhook = app.create_webhook(json!({"url": receiver.url, "retry": {"schedule": [3600]}})).await;
    let mut pacer = Receiver::start().await;
    let pacer_id =
        app.create_webhook(json!({"url": pacer.url, "event_types": ["pace"]})).await["id"].as_str().unwrap().to_owned();
    let start = app.now();
    let batch: Vec<Value> = (0..8).map(|n| json!({"type": "t", "payload": {"n": n}})).collect();
    assert_eq!(app.post("/v1/events", json!(batch)).await.0, 202);
    // Five failures in a row open the breaker...
    for _ in 0..5 {
        receiver.next().await;
        assert!(matches!(app.next_attempt().await.next, NextStep::RetryAt(_)));
    }
    // ...so the other three wait, their attempts intact, until the cooldown
    // ends: the next attempt is a single probe at +1 s.
    let (_, shown) = app.get(&format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap())).await;
    assert_eq!(shown["circuit"]["state"], "open", "{shown}");
    assert_eq!(shown["circuit"]["failures_in_a_row"], 5);
    app.clock.advance(Duration::from_millis(999));
    let_the_engine_run(&mut app, &mut pacer, &pacer_id).await;
    assert_eq!(receiver.drain().len(), 0, "no probe before the cooldown ends");
    app.clock.advance(Duration::from_millis(1));
    receiver.next().await;
    let probe = app.next_attempt().await;
    assert_eq!(probe.attempt.started_at, Timestamp(start.0 + 1000));
    // The probe failed (a sixth 503): twice the cooldown.
    app.clock.advance(Duration::from_millis(1999));
    let_the_engine_run(&mut app, &mut pacer, &pacer_id).await;
    assert_eq!(receiver.drain().len(), 0, "no second probe before the doubled cooldown ends");
    app.clock.advance(Duration::from_millis(1));
    receiver.next().await;
    let probe = app.next_attempt().await;
    assert_eq!(probe.attempt.started_at, Timestamp(start.0 + 3000));
    assert_eq!(probe.next, NextStep::Success, "the receiver is back");
    // Closed again: the last delivery, put off while the breaker was open,
    // follows at once, with its attempts intact.
    receiver.next().await;
    assert_eq!(app.next_attempt().await.next, NextStep::Success);
    let (_, page) =
        app.get(&format!("/v1/deliveries?status=success&webhook_id={}", webhook["id"].as_str().unwrap())).await;
    let succeeded = page["data"].as_array().unwrap();
    assert_eq!(succeeded.len(), 2);
    for delivery in succeeded {
        assert_eq!(delivery["n_attempts"], 1, "{delivery}");
    }
    let (_, retrying) = app.get("/v1/deliveries?status=retrying").await;
    assert_eq!(retrying["data"].as_array().unwrap().len(), 6, "five failures and one failed probe");
}
