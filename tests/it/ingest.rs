//! Ingest: batches, idempotency by caller id, reading events back.

use serde_json::json;

use crate::support::{Receiver, TestApp, check_error};

#[tokio::test]
async fn a_repeated_id_returns_the_original_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    app.create_webhook(json!({"url": receiver.url})).await;
    let event = json!({"id": "msg-42", "type": "t", "payload": {"v": 1}});
    let first = app.send_event(event.clone()).await;
    assert_eq!(first, json!({"id": "msg-42", "deliveries": 1, "duplicate": false}));

    let changed = json!({"id": "msg-42", "type": "t", "payload": {"v": 2}});
    let (status, again) = app.post("/v1/events", changed).await;
    assert_eq!(status, 200);
    assert_eq!(again, json!({"id": "msg-42", "deliveries": 1, "duplicate": true}));

    assert_eq!(receiver.next().await.json()["data"]["v"], 1);
    let (_, page) = app.get("/v1/deliveries").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    let (_, stored) = app.get("/v1/events/msg-42").await;
    assert_eq!(stored["payload"], json!({"v": 1}));
}

#[tokio::test]
async fn a_batch_is_accepted_whole_with_an_outcome_per_event() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    app.create_webhook(json!({"url": receiver.url, "event_types": ["a"]})).await;
    let batch = json!([
        {"type": "a", "payload": {"n": 0}},
        {"type": "b", "payload": {"n": 1}},
        {"id": "dup", "type": "a", "payload": {"n": 2}},
        {"id": "dup", "type": "a", "payload": {"n": 3}}
    ]);
    let (status, body) = app.post("/v1/events", batch).await;
    assert_eq!(status, 202, "{body}");
    let outcomes = body["events"].as_array().unwrap();
    assert_eq!(outcomes.len(), 4);
    let deliveries: Vec<u64> = outcomes.iter().map(|o| o["deliveries"].as_u64().unwrap()).collect();
    assert_eq!(deliveries, [1, 0, 1, 1]);
    assert_eq!(outcomes[3]["duplicate"], true);
    let mut seen: Vec<i64> = vec![receiver.next().await.json()["data"]["n"].as_i64().unwrap()];
    seen.push(receiver.next().await.json()["data"]["n"].as_i64().unwrap());
    seen.sort();
    assert_eq!(seen, [0, 2]);
}

#[tokio::test]
async fn an_event_reads_back_as_it_was_sent() {
    let app = TestApp::spawn().await;
    let payload =
        json!({"event": "viber:message:in", "nested": {"list": [1, 2.5, "x", null, true]}, "unicode": "👍 ü"});
    let sent = app
        .send_event(json!({"type": "viber:message:in", "payload": payload, "timestamp": "2024-07-04T05:50:08.299Z"}))
        .await;
    assert_eq!(sent["deliveries"], 0);
    let (status, event) = app.get(&format!("/v1/events/{}", sent["id"].as_str().unwrap())).await;
    assert_eq!(status, 200);
    assert_eq!(event["payload"], payload);
    assert_eq!(event["type"], "viber:message:in");
    assert_eq!(event["timestamp"], "2024-07-04T05:50:08.299Z");
    check_error(app.get("/v1/events/evt_nope").await, 404, "not_found", "event not found");
}

#[tokio::test]
async fn the_delivery_log_filters_and_pages() {
    let app = TestApp::spawn().await;
    let a = app.create_webhook(json!({"url": "http://127.0.0.1:1/a"})).await;
    app.create_webhook(json!({"url": "http://127.0.0.1:1/b"})).await;
    // One event a second, so that `since` and `until` have times to tell apart.
    let start = app.now();
    for i in 0..5 {
        app.send_event(json!({"type": if i % 2 == 0 { "even" } else { "odd" }, "payload": {"i": i}})).await;
        app.clock.advance(std::time::Duration::from_secs(1));
    }
    let (_, all) = app.get("/v1/deliveries?limit=250").await;
    let all_ids: Vec<String> =
        all["data"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(all_ids.len(), 10);

    let (_, even) = app.get("/v1/deliveries?type=even").await;
    assert_eq!(even["data"].as_array().unwrap().len(), 6);
    let a_id = a["id"].as_str().unwrap();
    let (_, of_a) = app.get(&format!("/v1/deliveries?webhook_id={a_id}&type=odd")).await;
    assert_eq!(of_a["data"].as_array().unwrap().len(), 2);

    // Pages of exactly 3, 3, 3 and 1, with a cursor on every page but the
    // last, that together are the whole log in its order, each row once.
    let mut ids = Vec::new();
    let mut sizes = Vec::new();
    let mut path = "/v1/deliveries?limit=3".to_owned();
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let rows = page["data"].as_array().unwrap();
        sizes.push(rows.len());
        ids.extend(rows.iter().map(|d| d["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/deliveries?limit=3&cursor={cursor}"),
            None => break,
        }
        assert!(sizes.len() < 10, "the cursor never ends");
    }
    assert_eq!(sizes, [3, 3, 3, 1]);
    assert_eq!(ids, all_ids, "the pages walk the log in its order");
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 10, "no repeats");
    let mut created: Vec<i64> = Vec::new();
    for id in &all_ids {
        created.push(crate::support::unix_ms(app.delivery(id).await["created_at"].as_str().unwrap()));
    }
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first: {created:?}");

    // `since` takes its own millisecond, `until` stops short of its own:
    // events 1 and 2 (made at +1 s and +2 s), two deliveries each.
    let at = |s: i64| herald::model::Timestamp(start.0 + s * 1000).to_rfc3339();
    let (_, in_range) = app.get(&format!("/v1/deliveries?since={}&until={}", at(1), at(3))).await;
    let mut events: Vec<i64> =
        in_range["data"].as_array().unwrap().iter().map(|d| d["payload"]["i"].as_i64().unwrap()).collect();
    events.sort();
    assert_eq!(events, [1, 1, 2, 2], "{in_range}");
    let (_, later) = app.get(&format!("/v1/deliveries?since={}", at(5))).await;
    assert_eq!(later["data"].as_array().unwrap().len(), 0);
}

/// Follows `next_cursor` from the first page of `/v1/deliveries?{query}`;
/// returns each page's size and every row in order.
async fn walk_pages(app: &TestApp, query: &str) -> (Vec<usize>, Vec<serde_json::Value>) {
    let (mut sizes, mut rows) = (Vec::new(), Vec::new());
    let mut path = format!("/v1/deliveries?{query}");
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{path}: {page}");
        let data = page["data"].as_array().unwrap();
        sizes.push(data.len());
        rows.extend(data.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/deliveries?{query}&cursor={cursor}"),
            None => return (sizes, rows),
        }
        assert!(sizes.len() < 20, "the cursor never ends: {sizes:?}");
    }
}

#[tokio::test]
async fn the_delivery_log_pages_at_its_limits_and_a_cursor_keeps_the_filters() {
    // Driven and never run: the log holds pending deliveries and nothing is sent.
    let app = TestApp::spawn_driven().await;
    let a = app.create_webhook(json!({"url": "http://127.0.0.1:1/a"})).await;
    let b = app.create_webhook(json!({"url": "http://127.0.0.1:1/b"})).await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let to_both: Vec<serde_json::Value> = (0..150).map(|i| json!({"type": "x", "payload": {"i": i}})).collect();
    assert_eq!(app.post("/v1/events", json!(to_both)).await.0, 202);
    let to_a: Vec<serde_json::Value> =
        (0..100).map(|i| json!({"type": "y", "payload": {"i": i}, "webhook_id": a})).collect();
    assert_eq!(app.post("/v1/events", json!(to_a)).await.0, 202);

    // 400 in all: the default page is 50, the largest 250, and 251 or 0 is refused.
    let (_, first) = app.get("/v1/deliveries").await;
    assert_eq!(first["data"].as_array().unwrap().len(), 50);
    assert!(first["next_cursor"].is_string(), "{}", first["next_cursor"]);
    let (sizes, all) = walk_pages(&app, "limit=250").await;
    assert_eq!(sizes, [250, 150]);
    let ids: Vec<&str> = all.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first, each once");
    for limit in ["251", "0"] {
        check_error(app.get(&format!("/v1/deliveries?limit={limit}")).await, 400, "invalid_field", "limit");
    }

    // A last page that is exactly full ends the walk: no cursor to an empty page.
    assert_eq!(walk_pages(&app, &format!("webhook_id={a}&limit=125")).await.0, [125, 125]);
    assert_eq!(walk_pages(&app, "type=y&limit=50").await.0, [50, 50]);

    // Every page after the first keeps the filters.
    let (sizes, rows) = walk_pages(&app, &format!("webhook_id={b}&type=x&limit=40")).await;
    assert_eq!(sizes, [40, 40, 40, 30]);
    assert!(rows.iter().all(|d| d["webhook_id"] == b && d["event_type"] == "x"), "a page left the filters");
    let mut seen: Vec<i64> = rows.iter().map(|d| d["payload"]["i"].as_i64().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..150).collect::<Vec<i64>>(), "each of b's deliveries once");
}

#[tokio::test]
async fn a_batch_of_exactly_1000_events_is_accepted_whole() {
    let app = TestApp::spawn_driven().await;
    app.create_webhook(json!({"url": "http://127.0.0.1:1/a"})).await;
    let batch: Vec<serde_json::Value> = (0..1000).map(|i| json!({"type": "t", "payload": {"i": i}})).collect();
    let (status, body) = app.post("/v1/events", json!(batch)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["events"].as_array().unwrap().len(), 1000);
    let (sizes, _) = walk_pages(&app, "limit=250").await;
    assert_eq!(sizes, [250, 250, 250, 250]);
}

/// A caller's event id is the account's own: the same id in another
/// account is another event, and each account reads back its own.
#[tokio::test]
async fn one_caller_id_in_two_accounts_is_two_events() {
    let app = TestApp::spawn_driven().await;
    let other = app.new_account().await;
    let call = |token: &str, method: axum::http::Method, path: &str, body: Option<serde_json::Value>| {
        let (app, token, path) = (&app, token.to_owned(), path.to_owned());
        async move { app.call(method, &path, &token, body).await }
    };
    for (token, owner) in [(app.token.as_str(), "default"), (other.token.as_str(), "other")] {
        let (status, _) =
            call(token, axum::http::Method::POST, "/v1/webhooks", Some(json!({"url": "http://127.0.0.1:1/a"}))).await;
        assert_eq!(status, 201);
        let event = json!({"id": "order-1", "type": "t", "payload": {"owner": owner}});
        let (status, sent) = call(token, axum::http::Method::POST, "/v1/events", Some(event)).await;
        assert_eq!(status, 202, "{sent}");
        assert_eq!((&sent["deliveries"], &sent["duplicate"]), (&json!(1), &json!(false)), "{owner}: {sent}");
    }
    for (token, owner) in [(app.token.as_str(), "default"), (other.token.as_str(), "other")] {
        let (status, event) = call(token, axum::http::Method::GET, "/v1/events/order-1", None).await;
        assert_eq!(status, 200, "{event}");
        assert_eq!(event["payload"]["owner"], owner, "{event}");
        let (_, log) = call(token, axum::http::Method::GET, "/v1/deliveries", None).await;
        assert_eq!(log["data"].as_array().unwrap().len(), 1, "{owner}: {log}");
    }
}
