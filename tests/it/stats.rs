//! `GET /v1/stats`: the default window of the last day, counts of pending
//! and retrying deliveries, and a `webhook_id` of another account.

use std::time::Duration;

use axum::http::Method;
use serde_json::json;

use crate::support::{Receiver, Reply, TestApp};

const DAY_MS: u64 = 86_400_000;

#[tokio::test]
async fn the_default_window_is_the_last_day_and_counts_pending_and_retrying() {
    let app = TestApp::spawn_driven().await;
    let receiver = Receiver::start_with(vec![Reply::status(200), Reply::status(200), Reply::status(500)]).await;
    app.create_webhook(json!({"url": receiver.url})).await;

    // Two successes 2 ms apart; then a day passes, so that the first is
    // 1 ms older than a day and the second 1 ms younger.
    app.send_event(json!({"type": "t", "payload": {"n": "old"}})).await;
    assert_eq!(app.run_until_idle().await, 1);
    app.clock.advance(Duration::from_millis(2));
    app.send_event(json!({"type": "t", "payload": {"n": "edge"}})).await;
    assert_eq!(app.run_until_idle().await, 1);
    app.clock.advance(Duration::from_millis(DAY_MS - 1));
    // Now one that fails and waits to be retried, and one never tried.
    app.send_event(json!({"type": "t", "payload": {"n": "retrying"}})).await;
    assert_eq!(app.run_until_idle().await, 1);
    app.send_event(json!({"type": "t", "payload": {"n": "pending"}})).await;

    let (status, stats) = app.get("/v1/stats").await;
    assert_eq!(status, 200, "{stats}");
    let overall = &stats["overall"];
    assert_eq!(overall["deliveries"], 3, "{stats}");
    assert_eq!(overall["by_status"], json!({"pending": 1, "retrying": 1, "success": 1, "failed": 0}), "{stats}");
    assert_eq!(overall["attempts"], 2, "{stats}");
    assert_eq!(overall["success_rate"], 1.0, "{stats}");
    let window = crate::support::unix_ms(stats["until"].as_str().unwrap())
        - crate::support::unix_ms(stats["since"].as_str().unwrap());
    assert_eq!(window, DAY_MS as i64, "{stats}");

    // With a window that reaches back far enough, the older success counts too.
    let since = herald::model::Timestamp(app.now().0 - 2 * DAY_MS as i64).to_rfc3339();
    let (_, wider) = app.get(&format!("/v1/stats?since={since}")).await;
    assert_eq!(wider["overall"]["by_status"], json!({"pending": 1, "retrying": 1, "success": 2, "failed": 0}));
}

#[tokio::test]
async fn another_accounts_webhook_id_shows_nothing_of_theirs() {
    let app = TestApp::spawn_driven().await;
    let other = app.new_account().await;
    let (status, theirs) =
        app.call(Method::POST, "/v1/webhooks", &other.token, Some(json!({"url": "http://127.0.0.1:1/x"}))).await;
    assert_eq!(status, 201, "{theirs}");
    let wh = theirs["id"].as_str().unwrap();
    let (status, _) =
        app.call(Method::POST, "/v1/events", &other.token, Some(json!({"type": "t", "payload": {}}))).await;
    assert_eq!(status, 202);
    let (_, own) = app.call(Method::GET, &format!("/v1/stats?webhook_id={wh}"), &other.token, None).await;
    assert_eq!(own["overall"]["deliveries"], 1, "the owner sees its delivery: {own}");

    // To anyone else the id filters to nothing, exactly as an id that
    // does not exist does: neither their counts nor that the id exists.
    let (status, seen) = app.get(&format!("/v1/stats?webhook_id={wh}")).await;
    assert_eq!(status, 200, "{seen}");
    let (_, missing) = app.get("/v1/stats?webhook_id=wh_01ZZZZZZZZZZZZZZZZZZZZZZZZ").await;
    let empty = json!({"deliveries": 0, "by_status": {"pending": 0, "retrying": 0, "success": 0, "failed": 0},
        "success_rate": null, "attempts": 0, "latency_ms": null});
    assert_eq!((&seen["overall"], &seen["webhooks"]), (&empty, &json!([])), "{seen}");
    assert_eq!(seen, missing);
}
