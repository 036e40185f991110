//! Shutdown grace: SIGTERM stops a real `herald serve` child from taking
//! work, an attempt that finishes within `--shutdown-grace-seconds` is
//! recorded, a hung one is abandoned at the bound, and what was abandoned
//! is sent again at the next start.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::support::{PATIENCE, child_post, child_token, spawn_herald, spawn_herald_logging, wait_for_log};

/// A receiver that hands each request's `webhook-id` to the test and
/// answers 200 only once the test opens the gate.
struct GatedReceiver {
    url: String,
    arrived: mpsc::UnboundedReceiver<String>,
    gate: watch::Sender<bool>,
}

async fn gated_receiver() -> GatedReceiver {
    let (arrived_tx, arrived) = mpsc::unbounded_channel();
    let (gate, gate_rx) = watch::channel(false);
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let (arrived_tx, mut gate_rx) = (arrived_tx.clone(), gate_rx.clone());
        async move {
            let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let _ = arrived_tx.send(id);
            let _ = gate_rx.wait_for(|open| *open).await;
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    GatedReceiver { url, arrived, gate }
}

impl GatedReceiver {
    async fn next(&mut self) -> String {
        tokio::time::timeout(PATIENCE, self.arrived.recv()).await.expect("no request arrived in time").unwrap()
    }
}

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("the child is running") as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
}

/// Every delivery's status, attempt count and first attempt's status
/// code, read from the file of a Herald that is not running (the CLI would
/// ask the server).
async fn recorded(db: &std::path::Path) -> Vec<(String, i64, Option<i64>)> {
    const SQL: &str = "SELECT status, n_attempts, first_status_code FROM deliveries";
    if crate::support::on_postgres() {
        let client = crate::support::postgres_client(db).await;
        return client.query(SQL, &[]).await.unwrap().iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    }
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut query = conn.prepare("SELECT status, n_attempts, first_status_code FROM deliveries").unwrap();
    query.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_that_finishes_within_the_grace_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let mut receiver = gated_receiver().await;
    let (mut child, base, mut log) = spawn_herald_logging(&db, &["--shutdown-grace-seconds", "10"]).await;
    let token = child_token(dir.path());
    child_post(&base, &token, "/v1/webhooks", json!({"url": receiver.url, "timeout_ms": 60000})).await;
    child_post(&base, &token, "/v1/events", json!({"type": "t", "payload": {}})).await;
    receiver.next().await;

    // The attempt is in flight when the stop begins, and answered only after.
    sigterm(&child);
    wait_for_log(&mut log, "shutting down").await;
    receiver.gate.send_replace(true);
    let status = tokio::time::timeout(PATIENCE, child.wait()).await.expect("herald stopped in time").unwrap();
    assert!(status.success(), "herald exited with {status}");

    assert_eq!(recorded(&db).await, [("success".to_owned(), 1, Some(200))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_receiver_is_abandoned_at_the_grace_and_its_delivery_sent_again_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let mut receiver = gated_receiver().await;
    let (mut child, base, mut log) = spawn_herald_logging(&db, &["--shutdown-grace-seconds", "1"]).await;
    let token = child_token(dir.path());
    // A timeout far past the test's patience: only the grace can end the wait.
    child_post(&base, &token, "/v1/webhooks", json!({"url": receiver.url, "timeout_ms": 60000})).await;
    child_post(&base, &token, "/v1/events", json!({"type": "t", "payload": {}})).await;
    let first = receiver.next().await;

    sigterm(&child);
    wait_for_log(&mut log, "shutting down").await;
    let stopping = Instant::now();
    let status = tokio::time::timeout(PATIENCE, child.wait()).await.expect("herald exited at the grace").unwrap();
    assert!(status.success(), "herald exited with {status}");
    // Not before the grace: an upper bound is the timeout above.
    assert!(stopping.elapsed() >= Duration::from_secs(1), "herald exited after {:?}", stopping.elapsed());
    wait_for_log(&mut log, "abandoned").await;
    assert_eq!(recorded(&db).await, [("pending".to_owned(), 0, None)], "the abandoned attempt was recorded");

    // The next start sends the same delivery again, and this time it lands.
    receiver.gate.send_replace(true);
    let (child, _base) = spawn_herald(&db, &[]).await;
    assert_eq!(receiver.next().await, first);
    crate::support::stop_gracefully(child).await;
    assert_eq!(recorded(&db).await, [("success".to_owned(), 1, Some(200))]);
}
