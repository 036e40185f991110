//! The binary as a user runs it: `serve` as a child process, the CLI
//! finding the default account through the credentials file, the time
//! scale shrinking retry waits, and SIGTERM stopping it cleanly.

use serde_json::Value;

use crate::support::{Receiver, Reply, run_herald, spawn_herald, stop_gracefully};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_start_works_end_to_end_with_a_scaled_clock() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let database = format!("sqlite://{}", db.display());
    let (child, _base) = spawn_herald(&db, &["--time-scale", "0.001"]).await;
    let mut receiver = Receiver::start_with(vec![Reply::status(500)]).await;

    let created: Value = serde_json::from_str(
        &run_herald(&["webhooks", "create", "--url", &receiver.url, "--database", &database]).await,
    )
    .unwrap();
    let secret = created["secret"].as_str().unwrap();
    let sent: Value = serde_json::from_str(
        &run_herald(&[
            "send",
            "--type",
            "whatsapp:message:status",
            "--payload",
            r#"{"id":"a418","status":"read"}"#,
            "--database",
            &database,
        ])
        .await,
    )
    .unwrap();
    assert_eq!(sent["deliveries"], 1);

    // The first attempt fails; the default policy's 10 s wait is 10 ms here.
    let first = receiver.next().await;
    let second = receiver.next().await;
    assert_eq!(first.header("webhook-id"), second.header("webhook-id"));
    standardwebhooks::Webhook::new(secret).unwrap().verify(&second.body, &second.headers).unwrap();

    stop_gracefully(child).await;

    // A clean stop records every attempt made; a restart reads them back.
    let (_child, _base) = spawn_herald(&db, &[]).await;
    let log: Value = serde_json::from_str(&run_herald(&["deliveries", "list", "--database", &database]).await).unwrap();
    let delivery = &log["data"][0];
    let shown: Value = serde_json::from_str(
        &run_herald(&["deliveries", "show", delivery["id"].as_str().unwrap(), "--database", &database]).await,
    )
    .unwrap();
    assert_eq!(shown["attempts"].as_array().unwrap().len(), 2, "{shown}");
    let started: Vec<herald::model::Timestamp> = shown["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| herald::model::Timestamp::parse_rfc3339(a["started_at"].as_str().unwrap()).unwrap())
        .collect();
    let gap = started[1].0 - started[0].0;
    // Only a lower bound: a loaded machine may take longer, never shorter.
    assert!(gap >= 5, "the scaled wait was {gap} ms");
}
