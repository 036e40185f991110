//! The engine driven by hand: its step run until nothing is due, then
//! assertions on what was sent and, as surely, on what was not.

use std::time::Duration;

use serde_json::json;

use crate::support::{Receiver, Reply, TestApp};

#[tokio::test]
async fn run_until_idle_sends_and_records_everything_due_and_nothing_more() {
    let app = TestApp::spawn_driven().await;
    let mut receiver = Receiver::start_with(vec![Reply::status(503)]).await;
    app.create_webhook(json!({"url": receiver.url})).await;
    for i in 0..3 {
        app.send_event(json!({"type": "t", "id": format!("e{i}"), "payload": {"i": i}})).await;
    }
    // Handed over at ingest: sent, but recorded only when the engine runs.
    assert_eq!(app.run_until_idle().await, 3);
    assert_eq!(receiver.drain().len(), 3, "every attempt has finished when the engine is idle");
    let statuses: Vec<String> = delivery_statuses(&app, 3).await;
    assert_eq!(statuses.iter().filter(|s| *s == "success").count(), 2, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| *s == "retrying").count(), 1, "{statuses:?}");

    // The failed one's retry is 10 s ± 20 % away: nothing is due yet.
    app.clock.advance(Duration::from_secs(7));
    assert_eq!(app.run_until_idle().await, 0);
    assert!(receiver.drain().is_empty(), "nothing is sent before its time");
    app.clock.advance(Duration::from_secs(6));
    assert_eq!(app.run_until_idle().await, 1);
    assert_eq!(receiver.drain().len(), 1);
    assert!(delivery_statuses(&app, 3).await.iter().all(|s| s == "success"));

    // A manual retry goes through the same one path, and is sent once.
    let (_, page) = app.get("/v1/deliveries?limit=1").await;
    let id = page["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = app.post(&format!("/v1/deliveries/{id}/retry"), json!({})).await;
    assert_eq!(status, 202);
    assert_eq!(app.run_until_idle().await, 1);
    assert_eq!(receiver.drain().len(), 1);
    assert_eq!(app.run_until_idle().await, 0);
    assert!(receiver.drain().is_empty());
}

/// The status of every delivery in the log, newest first.
async fn delivery_statuses(app: &TestApp, expected: usize) -> Vec<String> {
    let (_, page) = app.get("/v1/deliveries").await;
    let statuses: Vec<String> =
        page["data"].as_array().unwrap().iter().map(|d| d["status"].as_str().unwrap().to_owned()).collect();
    assert_eq!(statuses.len(), expected);
    statuses
}
