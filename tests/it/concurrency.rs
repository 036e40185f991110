//! `--per-webhook-concurrency` and `--max-in-flight`: a receiver that holds
//! every request open counts how many are open at once, per webhook and in
//! all, against a real `herald serve` started with both flags.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{StatusCode, Uri};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::support::{PATIENCE, child_post, child_token, spawn_herald};

#[derive(Default, Debug)]
struct Open {
    now: usize,
    most: usize,
    now_by_path: HashMap<String, usize>,
    most_by_path: HashMap<String, usize>,
    answered: usize,
}

/// Holds every request until the gate opens, noting the most open at once.
struct HoldingReceiver {
    base: String,
    open: Arc<Mutex<Open>>,
    changed: watch::Receiver<()>,
    gate: watch::Sender<bool>,
}

async fn holding_receiver() -> HoldingReceiver {
    let open = Arc::new(Mutex::new(Open::default()));
    let (changed_tx, changed) = watch::channel(());
    let (gate, gate_rx) = watch::channel(false);
    let state = (open.clone(), Arc::new(changed_tx), gate_rx);
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let (open, changed_tx, mut gate_rx) = state.clone();
        async move {
            let path = uri.path().to_owned();
            {
                let mut open = open.lock().unwrap();
                open.now += 1;
                open.most = open.most.max(open.now);
                let on_path = open.now_by_path.entry(path.clone()).or_default();
                *on_path += 1;
                let on_path = *on_path;
                let most = open.most_by_path.entry(path.clone()).or_default();
                *most = (*most).max(on_path);
            }
            changed_tx.send_replace(());
            let _ = gate_rx.wait_for(|open| *open).await;
            {
                let mut open = open.lock().unwrap();
                open.now -= 1;
                *open.now_by_path.get_mut(&path).unwrap() -= 1;
                open.answered += 1;
            }
            changed_tx.send_replace(());
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    HoldingReceiver { base, open, changed, gate }
}

impl HoldingReceiver {
    async fn wait_until(&mut self, what: &str, done: impl Fn(&Open) -> bool) {
        let open = self.open.clone();
        tokio::time::timeout(PATIENCE, self.changed.wait_for(|_| done(&open.lock().unwrap())))
            .await
            .unwrap_or_else(|_| panic!("{what}: not in time ({:?})", self.open.lock().unwrap()))
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_webhook_concurrency_and_max_in_flight_bound_the_requests_open_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let mut receiver = holding_receiver().await;
    let (_child, base) = spawn_herald(&db, &["--per-webhook-concurrency", "2", "--max-in-flight", "5"]).await;
    let token = child_token(dir.path());
    let mut webhooks = Vec::new();
    for path in ["a", "b", "c"] {
        let url = format!("{}/{path}", receiver.base);
        webhooks.push(child_post(&base, &token, "/v1/webhooks", json!({"url": url})).await);
    }
    // Four for each webhook: any one could take three slots or more, and
    // the three lanes together six.
    let events: Vec<Value> = webhooks
        .iter()
        .flat_map(|webhook| (0..4).map(|i| json!({"type": "t", "payload": {"i": i}, "webhook_id": webhook["id"]})))
        .collect();
    child_post(&base, &token, "/v1/events", Value::from(events)).await;

    receiver.wait_until("five requests open", |open| open.now == 5).await;
    // A round trip to Herald while all five are held, so a sixth the
    // engine wrongly started has time to arrive.
    let health = crate::support::http_client().get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let mut held: Vec<usize> = receiver.open.lock().unwrap().now_by_path.values().copied().collect();
    held.sort_unstable();
    assert_eq!(held, [1, 2, 2], "five held, at most two per webhook");
    receiver.gate.send_replace(true);
    receiver.wait_until("every request answered", |open| open.answered == 12).await;

    let open = receiver.open.lock().unwrap();
    assert_eq!(open.most, 5, "{open:?}");
    assert!(open.most_by_path.values().all(|most| *most <= 2), "{open:?}");
}
