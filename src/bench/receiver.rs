//! The bench's receiver: a minimal HTTP server on loopback that answers
//! `/ok…` with 200 and `/fail…` with 500, counts what it gets and, when
//! asked, notes when each event (by `webhook-id`) arrived.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use tokio::sync::Notify;

#[derive(Default)]
pub struct Counts {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    changed: Notify,
    /// First arrival of each event id at an `/ok` path, when tracking.
    arrivals: Mutex<Option<HashMap<String, Instant>>>,
    last_ok: Mutex<Option<Instant>>,
}

pub struct BenchReceiver {
    pub base: String,
    pub counts: Arc<Counts>,
}

impl BenchReceiver {
    pub async fn start() -> anyhow::Result<BenchReceiver> {
        let counts = Arc::new(Counts::default());
        let state = counts.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, _body: Bytes| {
            let counts = state.clone();
            async move {
                if uri.path().starts_with("/fail") {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    counts.changed.notify_waiters();
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                let now = Instant::now();
                if let Some(arrivals) = counts.arrivals.lock().unwrap().as_mut()
                    && let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok())
                {
                    arrivals.entry(id.to_owned()).or_insert(now);
                }
                *counts.last_ok.lock().unwrap() = Some(now);
                counts.ok.fetch_add(1, Ordering::Relaxed);
                counts.changed.notify_waiters();
                StatusCode::OK
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(BenchReceiver { base, counts })
    }

    pub fn track_arrivals(&self) {
        *self.counts.arrivals.lock().unwrap() = Some(HashMap::new());
    }

    pub fn take_arrivals(&self) -> HashMap<String, Instant> {
        self.counts.arrivals.lock().unwrap().take().unwrap_or_default()
    }

    pub fn last_ok(&self) -> Option<Instant> {
        *self.counts.last_ok.lock().unwrap()
    }

    /// Waits until `done` holds or `limit` passes; true if it held.
    pub async fn wait_until(&self, limit: Duration, done: impl Fn(&Counts) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.counts.changed.notified();
            if done(&self.counts) {
                return true;
            }
            // A periodic look as well, in case a notification fell between.
            if tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + Duration::from_millis(50)), changed)
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return done(&self.counts);
            }
        }
    }
}
