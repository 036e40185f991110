//! The bench's load generator and API client: a pooled HTTP client that
//! posts events to Herald (or straight to the receiver, for the baseline)
//! from many concurrent tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// A realistic payload: the WhatsApp message-status example of seed 001.
pub fn status_payload(n: usize) -> Value {
    json!({
        "id": format!("a418d672-9781-4d97-b517-{n:012}"),
        "channel": "whatsapp",
        "from": "919019120xxx",
        "to": "9190199xxxxx",
        "status": "delivered",
        "delivered_at": "2021-06-18T14:48:06.886358Z",
        "read_at": "2021-06-18T14:48:06.886358Z",
        "processed_at": "2021-06-18T14:48:06.886358Z",
        "timestamp": "2021-06-18T14:48:06.886358Z",
        "foreign_id": "your-business-identifier"
    })
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub fn new(base: &str, token: &str) -> Client {
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .expect("a client builds");
        Client { http, base: base.to_owned(), token: token.to_owned() }
    }

    /// Posts `body` and checks the answer is a success; the answer's body
    /// is read but not parsed (the load generator spends as little CPU as
    /// it can: it shares the machine with what it measures).
    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> anyhow::Result<bytes::Bytes> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status();
        let answer = response.bytes().await?;
        if !status.is_success() {
            bail!("POST {path}: {status} {}", String::from_utf8_lossy(&answer));
        }
        Ok(answer)
    }

    pub async fn create_webhook(&self, body: Value) -> anyhow::Result<String> {
        let created: Value = serde_json::from_slice(&self.post("/v1/webhooks", body.to_string()).await?)?;
        Ok(created["id"].as_str().context("webhook id")?.to_owned())
    }

    /// A batch of `size` events numbered from `first`.
    pub fn batch_body(event_type: &str, first: usize, size: usize) -> bytes::Bytes {
        let events: Vec<Value> = (first..first + size)
            .map(|n| json!({"id": format!("e{n}"), "type": event_type, "payload": status_payload(n)}))
            .collect();
        Value::Array(events).to_string().into()
    }

    /// `n` events in batches of `batch`, built before any is sent, so that
    /// building them does not compete with Herald for the CPU while it is
    /// measured (the baseline's body is built up front too).
    pub fn batch_bodies(event_type: &str, n: usize, batch: usize) -> Vec<bytes::Bytes> {
        (0..n.div_ceil(batch)).map(|b| Client::batch_body(event_type, b * batch, batch.min(n - b * batch))).collect()
    }
}

/// Runs `job(i)` for i in 0..n on `concurrency` tasks; returns the wall time.
pub async fn run_concurrently<F, Fut>(n: usize, concurrency: usize, job: F) -> anyhow::Result<Duration>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (next, job) = (next.clone(), job.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), anyhow::Error>(());
                }
                job(i).await?;
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    Ok(started.elapsed())
}
