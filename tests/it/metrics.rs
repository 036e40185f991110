//! `/metrics` (issue #12, item 2): the Prometheus text format, parsed with
//! a Prometheus parser, its counters matching exactly what the test sent;
//! who may read it on the API listener, `--metrics-listen` without a token,
//! `--metrics-per-webhook` and `--no-metrics`.

use std::sync::Arc;
use std::time::Duration;

use herald::app::Application;
use herald::clock::{Clock, ManualClock};
use herald::config::{ServeArgs, ServeConfig};
use prometheus_parse::{Sample, Scrape, Value as Metric};
use reqwest::Method;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::{OPERATOR_TOKEN, Receiver, Reply, TestApp, http_client};

/// Reads `/metrics` with the operator token and parses it.
async fn scrape(app: &TestApp) -> Scrape {
    let response = app.http.get(format!("{}/metrics", app.base)).bearer_auth(OPERATOR_TOKEN).send().await.unwrap();
    parse(response).await
}

async fn parse(response: reqwest::Response) -> Scrape {
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The value of the one sample named `name` with exactly `labels`.
#[track_caller]
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && s.labels.len() == labels.len())
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
    match &found[0].value {
        Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
        other => panic!("{name} is not a number: {other:?}"),
    }
}

/// The sum of a series over all its label values.
fn total(scrape: &Scrape, name: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match &s.value {
            Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test]
async fn the_counters_match_what_was_sent() {
    let app = TestApp::spawn_driven().await;
    let mut ok = Receiver::start().await;
    let mut failing = Receiver::start_with(vec![Reply::status(500); 4]).await;
    let good = app.create_webhook(json!({"url": ok.url})).await;
    let bad = app.create_webhook(json!({"url": failing.url, "profile": "business", "retry": {"schedule": [1]}})).await;
    for i in 0..5 {
        app.send_event(json!({"type": "t", "id": format!("ok-{i}"), "payload": {"i": i}, "webhook_id": good["id"]}))
            .await;
    }
    for i in 0..2 {
        app.send_event(json!({"type": "t", "id": format!("bad-{i}"), "payload": {}, "webhook_id": bad["id"]})).await;
    }
    // A repeated id is the same event: not counted again.
    let (status, _) = app.post("/v1/events", json!({"type": "t", "id": "ok-0", "payload": {"i": 0}})).await;
    assert_eq!(status, 200);

    assert_eq!(app.run_until_idle().await, 7);
    assert_eq!((ok.drain().len(), failing.drain().len()), (5, 2));
    let first = scrape(&app).await;
    assert_eq!(value(&first, "herald_events_ingested_total", &[("source", "api")]), 7.0);
    assert_eq!(value(&first, "herald_deliveries_total", &[("outcome", "success"), ("profile", "standard")]), 5.0);
    assert_eq!(value(&first, "herald_deliveries_total", &[("outcome", "failed"), ("profile", "business")]), 0.0);
    assert_eq!(total(&first, "herald_deliveries_total"), 5.0);
    assert_eq!(value(&first, "herald_retries_scheduled_total", &[]), 2.0);
    // The failing webhook's retries wait in the store, due in a second.
    assert_eq!(value(&first, "herald_webhooks_waiting", &[("due", "later")]), 1.0);
    assert_eq!(value(&first, "herald_webhooks_waiting", &[("due", "now")]), 0.0);

    app.clock.advance(Duration::from_secs(2));
    assert_eq!(app.run_until_idle().await, 2);
    assert_eq!(failing.drain().len(), 2);
    let last = scrape(&app).await;
    assert_eq!(value(&last, "herald_events_ingested_total", &[("source", "api")]), 7.0);
    // Each exhausted delivery made a `herald.delivery.exhausted` event.
    assert_eq!(value(&last, "herald_events_ingested_total", &[("source", "herald")]), 2.0);
    assert_eq!(value(&last, "herald_deliveries_total", &[("outcome", "success"), ("profile", "standard")]), 5.0);
    assert_eq!(value(&last, "herald_deliveries_total", &[("outcome", "failed"), ("profile", "business")]), 2.0);
    assert_eq!(total(&last, "herald_deliveries_total"), 7.0);
    assert_eq!(value(&last, "herald_attempts_total", &[("status_class", "2xx"), ("error_class", "none")]), 5.0);
    assert_eq!(value(&last, "herald_attempts_total", &[("status_class", "5xx"), ("error_class", "status")]), 4.0);
    assert_eq!(total(&last, "herald_attempts_total"), 9.0);
    assert_eq!(value(&last, "herald_retries_scheduled_total", &[]), 2.0);
    assert_eq!(value(&last, "herald_breaker_openings_total", &[]), 0.0);
    assert_eq!(total(&last, "herald_webhooks_waiting"), 0.0);
    assert_eq!(value(&last, "herald_deliveries_queued", &[]), 0.0);
    // Every attempt is in the latency histogram.
    let latency = last.samples.iter().find(|s| s.metric == "herald_attempt_duration_seconds").unwrap();
    let Metric::Histogram(buckets) = &latency.value else { panic!("{latency:?}") };
    assert_eq!(buckets.last().map(|b| (b.less_than, b.count)), Some((f64::INFINITY, 9.0)));
    assert_eq!(value(&last, "herald_attempt_duration_seconds_count", &[]), 9.0);
    // The writer thread's commits and the recorder's batches are counted.
    assert!(value(&last, "herald_store_commit_duration_seconds_count", &[]) >= 1.0);
    assert!(value(&last, "herald_store_commit_jobs_sum", &[]) >= 7.0);
    assert_eq!(value(&last, "herald_recorder_batch_attempts_sum", &[]), 9.0);
    // This very scrape is a request in flight.
    assert_eq!(value(&last, "herald_http_requests_in_flight", &[]), 1.0);
    // The process, from /proc.
    assert!(value(&last, "process_cpu_seconds_total", &[]) > 0.0);
    assert!(value(&last, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(value(&last, "process_open_fds", &[]) >= 3.0);
    let started = value(&last, "process_start_time_seconds", &[]);
    let now = herald::clock::SystemClock::new(1.0).now().0 as f64 / 1000.0;
    assert!(started > now - 24.0 * 3600.0 && started <= now + 1.0, "{started} vs {now}");
    // No webhook ids unless asked for.
    assert!(last.samples.iter().all(|s| s.labels.get("webhook_id").is_none()));
}

#[tokio::test]
async fn a_breaker_opening_is_counted() {
    let app = TestApp::spawn_driven().await;
    let mut failing = Receiver::start_with(vec![Reply::status(503); 5]).await;
    let webhook = app.create_webhook(json!({"url": failing.url, "retry": {"schedule": []}})).await;
    for i in 0..5 {
        app.send_event(json!({"type": "t", "payload": {"i": i}, "webhook_id": webhook["id"]})).await;
        // One at a time, so five failures come in a row.
        assert_eq!(app.run_until_idle().await, 1);
    }
    assert_eq!(failing.drain().len(), 5);
    let scraped = scrape(&app).await;
    assert_eq!(value(&scraped, "herald_breaker_openings_total", &[]), 1.0);
    assert_eq!(value(&scraped, "herald_deliveries_total", &[("outcome", "failed"), ("profile", "standard")]), 5.0);
}

#[tokio::test]
async fn on_the_api_listener_only_the_operator_reads_metrics() {
    let app = TestApp::spawn().await;
    let (status, body) = app.call_raw(Method::GET, "/metrics", None, "").await;
    assert_eq!((status.as_u16(), body["code"].as_str()), (401, Some("unauthorized")), "{body}");
    let (status, body) = app.call_raw(Method::GET, "/metrics", Some("hrld_nobody"), "").await;
    assert_eq!((status.as_u16(), body["code"].as_str()), (401, Some("unauthorized")), "{body}");
    let (status, body) = app.call(Method::GET, "/metrics", &app.token, None).await;
    assert_eq!((status.as_u16(), body["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, body) = app.call(Method::POST, "/metrics", OPERATOR_TOKEN, None).await;
    assert_eq!((status.as_u16(), body["code"].as_str()), (404, Some("not_found")), "{body}");
    let scraped = scrape(&app).await;
    assert_eq!(value(&scraped, "herald_events_ingested_total", &[("source", "api")]), 0.0);
}

/// An `Application` built from `adjust`ed flags, serving its API (the
/// engine idle); returns it with its API and metrics addresses.
async fn start(adjust: impl FnOnce(&mut ServeArgs)) -> (String, Option<String>, CancellationToken, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = ServeArgs {
        listen: Some("127.0.0.1:0".into()),
        database: Some(format!("sqlite://{}", dir.path().join("herald.db").display())),
        allow_private_targets: true,
        admin_token: Some(OPERATOR_TOKEN.into()),
        ..Default::default()
    };
    adjust(&mut args);
    let config = ServeConfig::from_args(args).unwrap();
    let clock = ManualClock::new(herald::clock::SystemClock::new(1.0).now());
    let app = Application::build(config, Arc::new(clock)).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let metrics = app.metrics_addr().map(|addr| format!("http://{addr}"));
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_api(shutdown.clone()));
    (base, metrics, shutdown, dir)
}

#[tokio::test]
async fn metrics_listen_serves_metrics_without_a_token_and_nothing_else() {
    let (base, metrics, shutdown, _dir) = start(|args| args.metrics_listen = Some("127.0.0.1:0".into())).await;
    let metrics = metrics.expect("a metrics address");
    assert_ne!(metrics, base);
    let http = http_client();
    let scraped = parse(http.get(format!("{metrics}/metrics")).send().await.unwrap()).await;
    assert_eq!(value(&scraped, "herald_events_ingested_total", &[("source", "api")]), 0.0);
    // The API is not served there, whatever the token.
    let response = http.get(format!("{metrics}/v1/webhooks")).bearer_auth(OPERATOR_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["code"], "not_found");
    // And the API listener still asks for the operator token.
    assert_eq!(http.get(format!("{base}/metrics")).send().await.unwrap().status(), 401);
    shutdown.cancel();
}

#[tokio::test]
async fn per_webhook_series_appear_only_when_asked_for() {
    let app = TestApp::spawn_driven_with(|config| config.metrics.per_webhook = true).await;
    let mut receiver = Receiver::start().await;
    let webhook = app.create_webhook(json!({"url": receiver.url})).await;
    let id = webhook["id"].as_str().unwrap();
    for i in 0..3 {
        app.send_event(json!({"type": "t", "payload": {"i": i}})).await;
    }
    assert_eq!(app.run_until_idle().await, 3);
    assert_eq!(receiver.drain().len(), 3);
    let scraped = scrape(&app).await;
    let labels = [("webhook_id", id), ("outcome", "success")];
    assert_eq!(value(&scraped, "herald_webhook_deliveries_total", &labels), 3.0);
    let labels = [("webhook_id", id), ("status_class", "2xx")];
    assert_eq!(value(&scraped, "herald_webhook_attempts_total", &labels), 3.0);
}

#[tokio::test]
async fn with_metrics_off_there_is_no_metrics_endpoint() {
    let (base, metrics, shutdown, _dir) = start(|args| args.no_metrics = true).await;
    assert_eq!(metrics, None);
    let response = http_client().get(format!("{base}/metrics")).bearer_auth(OPERATOR_TOKEN).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["code"], "not_found");
    assert!(body["message"].as_str().unwrap().contains("--no-metrics"), "{body}");
    shutdown.cancel();

    let refused = ServeConfig::from_args(ServeArgs {
        no_metrics: true,
        metrics_listen: Some("127.0.0.1:0".into()),
        ..Default::default()
    });
    assert!(format!("{:#}", refused.unwrap_err()).contains("metrics_listen"));
}
