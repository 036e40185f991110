//! End-to-end delivery: signed, filtered, targeted, with custom headers.

use herald::model::NextStep;
use serde_json::json;

use crate::support::{Receiver, Reply, TestApp};

#[tokio::test]
async fn a_delivered_event_verifies_with_the_standard_webhooks_library() {
    let mut app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    let webhook = app.create_webhook(json!({"url": receiver.url})).await;
    let payload = json!({"id": "a418d672-9781-4d97-b517-a56f7d95ad8a", "channel": "whatsapp", "status": "read"});
    let ingested_at = app.now();
    let sent = app.send_event(json!({"type": "whatsapp:message:status", "payload": payload})).await;
    assert_eq!(sent["deliveries"], 1);

    let request = receiver.next().await;
    let verifier = standardwebhooks::Webhook::new(webhook["secret"].as_str().unwrap()).unwrap();
    verifier.verify(&request.body, &request.headers).expect("the signature verifies");
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert!(request.header("user-agent").unwrap().starts_with("Herald-Webhooks/"));
    assert_eq!(request.header("webhook-id"), sent["id"].as_str());
    let body = request.json();
    assert_eq!(body["type"], "whatsapp:message:status");
    assert_eq!(body["data"], payload);
    // The manual clock stands still: the envelope's time is the ingest time
    // to the millisecond, in UTC (read by the `time` crate, not Herald).
    let timestamp = body["timestamp"].as_str().unwrap();
    assert!(timestamp.ends_with('Z'), "{timestamp}");
    assert_eq!(crate::support::unix_ms(timestamp), ingested_at.0, "{timestamp}");

    let record = app.next_attempt().await;
    assert_eq!(record.next, NextStep::Success);
    let delivery = app.delivery_of(sent["id"].as_str().unwrap()).await;
    assert_eq!(delivery["status"], "success");
    assert_eq!(delivery["n_attempts"], 1);
    assert_eq!(delivery["attempts"][0]["status_code"], 200);
    assert_eq!(delivery["attempts"][0]["error_class"], serde_json::Value::Null);
}

#[tokio::test]
async fn filters_choose_which_webhooks_get_an_event() {
    let app = TestApp::spawn().await;
    let mut whatsapp = Receiver::start().await;
    let mut viber_status = Receiver::start().await;
    let mut everything = Receiver::start().await;
    let mut disabled = Receiver::start().await;
    let whatsapp_hook = app.create_webhook(json!({"url": whatsapp.url, "event_types": ["whatsapp:message:*"]})).await;
    let viber_hook =
        app.create_webhook(json!({"url": viber_status.url, "event_types": ["viber:message:status"]})).await;
    let everything_hook = app.create_webhook(json!({"url": everything.url})).await;
    app.create_webhook(json!({"url": disabled.url, "enabled": false})).await;

    let sent = app.send_event(json!({"type": "whatsapp:message:in", "payload": {"n": 1}})).await;
    assert_eq!(sent["deliveries"], 2);
    assert_eq!(whatsapp.next().await.json()["data"]["n"], 1);
    assert_eq!(everything.next().await.json()["data"]["n"], 1);

    let sent = app.send_event(json!({"type": "viber:message:status", "payload": {"n": 2}})).await;
    assert_eq!(sent["deliveries"], 2);
    // The viber receiver's first request is the second event: it never saw the first.
    assert_eq!(viber_status.next().await.json()["data"]["n"], 2);
    assert_eq!(everything.next().await.json()["data"]["n"], 2);

    let sent = app.send_event(json!({"type": "sms:status", "payload": {"n": 3}})).await;
    assert_eq!(sent["deliveries"], 1);
    assert_eq!(everything.next().await.json()["data"]["n"], 3);
    // Each webhook got nothing more than the events above; the disabled
    // one got no delivery at all (the counts above), so nothing to send.
    app.nothing_more(&mut whatsapp, whatsapp_hook["id"].as_str().unwrap()).await;
    app.nothing_more(&mut viber_status, viber_hook["id"].as_str().unwrap()).await;
    app.nothing_more(&mut everything, everything_hook["id"].as_str().unwrap()).await;
    let (_, log) = app.get("/v1/deliveries?limit=250").await;
    assert_eq!(log["data"].as_array().unwrap().len(), 2 + 2 + 1 + 3, "three events and three markers");
    assert!(disabled.drain().is_empty());
}

#[tokio::test]
async fn webhook_id_targets_exactly_one_webhook_whatever_its_filter() {
    let app = TestApp::spawn().await;
    let mut composed = Receiver::start().await;
    let mut other = Receiver::start().await;
    let target = app.create_webhook(json!({"url": composed.url, "event_types": ["never:*"]})).await;
    let other_hook = app.create_webhook(json!({"url": other.url})).await;

    let sent = app
        .send_event(json!({"type": "viber:message:status", "payload": {"id": "x"}, "webhook_id": target["id"]}))
        .await;
    assert_eq!(sent["deliveries"], 1);
    assert_eq!(composed.next().await.json()["data"]["id"], "x");

    let sent = app.send_event(json!({"type": "viber:message:status", "payload": {"id": "y"}})).await;
    assert_eq!(sent["deliveries"], 1);
    assert_eq!(other.next().await.json()["data"]["id"], "y");
    app.nothing_more(&mut composed, target["id"].as_str().unwrap()).await;
    app.nothing_more(&mut other, other_hook["id"].as_str().unwrap()).await;
}

#[tokio::test]
async fn custom_headers_are_sent_and_caller_timestamps_fill_the_envelope() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    app.create_webhook(json!({"url": receiver.url, "headers": {"Authorization": "Bearer abc", "X-Tenant": "42"}}))
        .await;
    app.send_event(json!({"type": "t", "payload": [1, "two", null], "timestamp": "2021-06-18T14:48:06.886Z"})).await;
    let request = receiver.next().await;
    assert_eq!(request.header("authorization"), Some("Bearer abc"));
    assert_eq!(request.header("x-tenant"), Some("42"));
    let body = request.json();
    assert_eq!(body["timestamp"], "2021-06-18T14:48:06.886Z");
    assert_eq!(body["data"], json!([1, "two", null]));
}

#[tokio::test]
async fn a_deleted_webhook_gets_nothing_more() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    let webhook = app.create_webhook(json!({"url": receiver.url})).await;
    let path = format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap());
    let (status, _) = app.call(axum::http::Method::DELETE, &path, &app.token, None).await;
    assert_eq!(status, 204);
    let sent = app.send_event(json!({"type": "t", "payload": {}})).await;
    assert_eq!(sent["deliveries"], 0);
    // No delivery was made, so none can still be on its way.
    let (_, log) = app.get("/v1/deliveries").await;
    assert_eq!(log["data"], json!([]));
    assert!(receiver.drain().is_empty());
}

#[tokio::test]
async fn a_stuck_receiver_does_not_starve_the_others() {
    let app = TestApp::spawn_with(|config| {
        config.engine.per_webhook_concurrency = 2;
        config.engine.max_in_flight = 16;
    })
    .await;
    let mut stuck = Receiver::start_with((0..100).map(|_| Reply::hang()).collect()).await;
    let mut healthy = Receiver::start().await;
    let slow = app.create_webhook(json!({"url": stuck.url})).await;
    let fast = app.create_webhook(json!({"url": healthy.url})).await;
    // Far more work for the stuck webhook than there are slots in all.
    let batch: Vec<serde_json::Value> =
        (0..60).map(|i| json!({"type": "t", "payload": {"i": i}, "webhook_id": slow["id"]})).collect();
    let (status, _) = app.post("/v1/events", json!(batch)).await;
    assert_eq!(status, 202);
    for n in 0..3 {
        app.send_event(json!({"type": "t", "payload": {"n": n}, "webhook_id": fast["id"]})).await;
        assert_eq!(healthy.next().await.json()["data"]["n"], n);
    }
    // The stuck webhook holds its lane's two slots and no more: two requests
    // reached it, and (its batch went in before the healthy events, which
    // have all come and gone) no third.
    let first_two = [stuck.next().await, stuck.next().await];
    for request in &first_two {
        assert!(request.json()["data"]["i"].is_u64());
    }
    assert_eq!(stuck.drain().len(), 0, "more than two requests in flight to one webhook");
    let (_, waiting) = app.get(&format!("/v1/deliveries?webhook_id={}&limit=250", slow["id"].as_str().unwrap())).await;
    let attempted: Vec<&serde_json::Value> =
        waiting["data"].as_array().unwrap().iter().filter(|d| d["n_attempts"] != 0).collect();
    assert_eq!(attempted, Vec::<&serde_json::Value>::new(), "no stuck attempt has finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ingest_while_time_moves_never_strands_a_delivery() {
    // Regression: a mark arriving mid-claim with a later time than the one
    // being claimed was lost, and the engine slept with deliveries due.
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let mut receiver = Receiver::start().await;
    app.create_webhook(json!({"url": receiver.url})).await;
    let mut senders = Vec::new();
    for n in 0..200 {
        let app = app.clone();
        senders.push(tokio::spawn(async move {
            app.clock.advance(std::time::Duration::from_millis(1));
            app.send_event(json!({"type": "t", "payload": {"n": n}})).await;
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 200 {
        seen.insert(receiver.next().await.json()["data"]["n"].as_i64().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_is_sent_exactly_once_while_ingest_claims_and_records_interleave() {
    // Small lanes, so that claims, hand-overs from ingest, claims that skip
    // what the engine holds, and batched records all take turns.
    let mut app = TestApp::spawn_with(|config| {
        config.engine.per_webhook_concurrency = 2;
        config.engine.max_in_flight = 8;
    })
    .await;
    let mut receivers = [Receiver::start().await, Receiver::start().await];
    for receiver in &receivers {
        app.create_webhook(json!({"url": receiver.url})).await;
    }
    const EVENTS: usize = 400;
    for first in (0..EVENTS).step_by(20) {
        let batch: Vec<serde_json::Value> =
            (first..first + 20).map(|n| json!({"id": format!("e{n}"), "type": "t", "payload": {"n": n}})).collect();
        let (status, body) = app.post("/v1/events", json!(batch)).await;
        assert_eq!(status, 202, "{body}");
    }
    for _ in 0..2 * EVENTS {
        assert_eq!(app.next_attempt().await.next, NextStep::Success);
    }
    for receiver in &mut receivers {
        let ids: Vec<String> = receiver.drain().iter().map(|r| r.header("webhook-id").unwrap().to_owned()).collect();
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!((ids.len(), unique.len()), (EVENTS, EVENTS), "each event once at each webhook");
    }
}
