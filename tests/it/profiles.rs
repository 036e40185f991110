//! Profile defaults walked on the clock, the environment-only wwebjs
//! deployment, the seed-004 log words, stats, the event catalogue and the
//! egress report.

use axum::http::Method;
use herald::model::NextStep;
use serde_json::{Value, json};

use crate::support::{
    Receiver, Reply, TestApp, check_error, nearest_rank, run_herald, seed_js_verifier_accepts, spawn_herald_with_env,
    stop_gracefully, unix_ms,
};

/// Fails every attempt of a webhook with `profile`'s defaults and checks
/// each wait against the seed's numbers, to the millisecond.
async fn walk_default_schedule(profile: &str, extra: Value, timeout_ms: u64, waits_s: &[u64]) {
    let mut app = TestApp::spawn().await;
    let mut receiver = Receiver::start_with((0..=waits_s.len()).map(|_| Reply::status(503)).collect()).await;
    let mut body = json!({"url": receiver.url, "profile": profile});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let webhook = app.create_webhook(body).await;
    assert_eq!(webhook["effective_timeout_ms"], timeout_ms, "{profile}");
    app.send_event(json!({"type": "t", "payload": {"n": 1}})).await;
    for wait in waits_s {
        receiver.next().await;
        let record = app.next_attempt().await;
        let NextStep::RetryAt(at) = record.next else { panic!("{profile}: expected a retry, got {:?}", record.next) };
        assert_eq!(at.0 - app.now().0, *wait as i64 * 1000, "{profile}");
        app.clock.set(at);
    }
    receiver.next().await;
    assert_eq!(app.next_attempt().await.next, NextStep::Failed, "{profile}: all attempts used");
}

#[tokio::test]
async fn business_and_compose_retry_twice_after_10_and_100_seconds() {
    walk_default_schedule("business", json!({}), 3000, &[10, 100]).await;
    walk_default_schedule("compose", json!({"template": {}}), 3000, &[10, 100]).await;
}

#[tokio::test]
async fn routee_retries_twelve_times_over_a_day() {
    let waits = [30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14_400, 28_800, 86_400];
    walk_default_schedule("routee", json!({}), 2000, &waits).await;
}

#[tokio::test]
async fn wwebjs_tries_three_times_doubling_from_five_seconds() {
    walk_default_schedule("wwebjs", json!({}), 30_000, &[5, 10]).await;
}

#[tokio::test]
async fn business_attempts_are_configurable_and_capped_at_100_000_seconds() {
    let retry = json!({"exponential": {"first": 10, "factor": 10, "cap": 100000, "attempts": 7}});
    walk_default_schedule("business", json!({"retry": retry}), 3000, &[10, 100, 1000, 10_000, 100_000, 100_000]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_only_wwebjs_deployment_delivers_without_any_api_setup() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let mut receiver = Receiver::start_with(vec![Reply::status(500)]).await;
    let url = receiver.url.clone();
    // The seed's variables, in the child's environment only.
    let env = [
        ("WEBHOOK_URL", url.as_str()),
        ("WEBHOOK_RETRY_ATTEMPTS", "2"),
        ("WEBHOOK_RETRY_DELAY", "50"),
        ("WEBHOOK_SECRET", "env-secret"),
    ];
    let (child, base) = spawn_herald_with_env(&db, &[], &env).await;
    let credentials: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("herald.credentials.json")).unwrap()).unwrap();
    let token = credentials["token"].as_str().unwrap();
    let http = crate::support::http_client();
    let sent = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(token)
        .body(json!({"type": "message_create", "payload": {"body": "Hello!", "from": "1234567890@c.us"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let first = receiver.next().await;
    let second = receiver.next().await;
    assert_eq!(second.json()["event"], "message_create");
    assert_eq!(second.json()["data"]["body"], "Hello!");
    assert_eq!(first.body, second.body);
    seed_js_verifier_accepts("env-secret", &second).await;
    // A clean stop records every attempt; the restarted deployment reads them.
    stop_gracefully(child).await;
    let (_child, _base) = spawn_herald_with_env(&db, &[], &env).await;
    let log: Value = serde_json::from_str(
        &run_herald(&["deliveries", "list", "--json", "--database", &format!("sqlite://{}", db.display())]).await,
    )
    .unwrap();
    let entry = &log["data"][0];
    assert_eq!(entry["webhookUrl"], receiver.url.as_str());
    assert_eq!(entry["retryCount"], 1);
}

#[tokio::test]
async fn the_log_speaks_the_seed_words_and_stats_add_up() {
    let mut app = TestApp::spawn().await;
    // Slower and slower answers, so that every percentile falls on a
    // different attempt and a wrong rank shows.
    let ms = std::time::Duration::from_millis;
    let mut good = Receiver::start_with((0..3).map(|n| Reply::status(200).after(ms(40 * n))).collect()).await;
    let mut bad = Receiver::start_with(vec![
        Reply::status(500).with_body("nope").after(ms(120)),
        Reply::status(500).after(ms(160)),
    ])
    .await;
    let good_hook = app.create_webhook(json!({"url": good.url, "event_types": ["ok"]})).await;
    let bad_hook =
        app.create_webhook(json!({"url": bad.url, "event_types": ["bad"], "retry": {"schedule": [1]}})).await;
    for n in 0..3 {
        app.send_event(json!({"type": "ok", "payload": {"n": n}})).await;
        good.next().await;
        app.next_attempt().await;
    }
    let bad_ingested_at = app.now();
    app.send_event(json!({"type": "bad", "payload": {"n": 9}})).await;
    bad.next().await;
    app.next_attempt().await;
    app.clock.advance(std::time::Duration::from_secs(1));
    bad.next().await;
    app.next_attempt().await;

    let (_, failed) = app.get("/v1/deliveries?status=failed").await;
    let entry = &failed["data"][0];
    assert_eq!(entry["event"], "bad");
    assert_eq!(entry["payload"], json!({"n": 9}));
    assert_eq!(entry["webhookUrl"], bad.url.as_str());
    assert_eq!(entry["status"], "failed");
    assert_eq!(entry["statusCode"], 500);
    assert_eq!(entry["retryCount"], 1);
    assert_eq!(entry["errorMessage"], "status: receiver answered 500");
    // The manual clock moved on by 1 s since; `createdAt` is the ingest time.
    assert_eq!(unix_ms(entry["createdAt"].as_str().unwrap()), bad_ingested_at.0, "{entry}");

    // Every attempt's duration, per webhook, from the deliveries themselves.
    let (_, all) = app.get("/v1/deliveries?limit=250").await;
    let mut durations: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for listed in all["data"].as_array().unwrap() {
        let delivery = app.delivery(listed["id"].as_str().unwrap()).await;
        for attempt in delivery["attempts"].as_array().unwrap() {
            let webhook = delivery["webhook_id"].as_str().unwrap().to_owned();
            durations.entry(webhook).or_default().push(attempt["duration_ms"].as_u64().unwrap());
        }
    }
    let latency = |values: &[u64]| {
        json!({"p50": nearest_rank(values, 50), "p90": nearest_rank(values, 90), "p99": nearest_rank(values, 99),
               "max": values.iter().max().unwrap()})
    };
    let every: Vec<u64> = durations.values().flatten().copied().collect();
    assert_eq!(every.len(), 5);

    let (status, stats) = app.get("/v1/stats").await;
    assert_eq!(status, 200, "{stats}");
    let overall = &stats["overall"];
    assert_eq!(overall["deliveries"], 4);
    assert_eq!(overall["by_status"], json!({"pending": 0, "retrying": 0, "success": 3, "failed": 1}));
    assert_eq!(overall["success_rate"], 0.75);
    assert_eq!(overall["attempts"], 5);
    assert_eq!(overall["latency_ms"], latency(&every), "{stats}");
    let (good_id, bad_id) = (good_hook["id"].as_str().unwrap(), bad_hook["id"].as_str().unwrap());
    let mut per_webhook: Vec<Value> = stats["webhooks"].as_array().unwrap().clone();
    per_webhook.sort_by_key(|w| w["webhook_id"] != good_id);
    let expected = [
        (good_id, 3, json!({"pending": 0, "retrying": 0, "success": 3, "failed": 0}), json!(1.0), 3),
        (bad_id, 1, json!({"pending": 0, "retrying": 0, "success": 0, "failed": 1}), json!(0.0), 2),
    ];
    assert_eq!(per_webhook.len(), expected.len(), "{stats}");
    for (entry, (id, deliveries, by_status, rate, attempts)) in per_webhook.iter().zip(expected) {
        assert_eq!(entry["webhook_id"], id, "{entry}");
        assert_eq!(entry["deliveries"], deliveries, "{entry}");
        assert_eq!(entry["by_status"], by_status, "{entry}");
        assert_eq!(entry["success_rate"], rate, "{entry}");
        assert_eq!(entry["attempts"], attempts, "{entry}");
        assert_eq!(entry["latency_ms"], latency(&durations[id]), "{entry}");
    }
    let (_, only_good) = app.get(&format!("/v1/stats?webhook_id={}", good_hook["id"].as_str().unwrap())).await;
    assert_eq!(only_good["overall"]["success_rate"], 1.0);
    let (_, empty) = app.get("/v1/stats?since=2001-01-01T00:00:00Z&until=2001-01-02T00:00:00Z").await;
    assert_eq!(empty["overall"]["deliveries"], 0);
    assert_eq!(empty["overall"]["success_rate"], Value::Null);
    check_error(
        app.get("/v1/stats?since=2001-01-02T00:00:00Z&until=2001-01-01T00:00:00Z").await,
        400,
        "invalid_field",
        "since: must be before until",
    );
}

#[tokio::test]
async fn the_catalogue_informs_and_strict_mode_gates() {
    let app = TestApp::spawn().await;
    let (status, catalogue) = app.get("/v1/event-types").await;
    assert_eq!(status, 200);
    let channels: Vec<&str> =
        catalogue["channels"].as_array().unwrap().iter().map(|c| c["channel"].as_str().unwrap()).collect();
    assert_eq!(channels, ["viber", "whatsapp", "wwebjs", "routee", "viber-bot", "herald"]);
    let wwebjs = catalogue["channels"].as_array().unwrap().iter().find(|c| c["channel"] == "wwebjs").unwrap();
    assert_eq!(wwebjs["events"].as_array().unwrap().len(), 13);
    assert_eq!(wwebjs["events"][0]["example"]["event"], "message_create");

    assert_eq!(
        app.post("/v1/events", json!({"type": "made:up", "payload": {}})).await.0,
        202,
        "unknown types pass by default"
    );
    let (status, account) =
        app.call(Method::PATCH, "/v1/account", &app.token, Some(json!({"strict_event_types": true}))).await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["strict_event_types"], true);
    check_error(
        app.post("/v1/events", json!({"type": "made:up", "payload": {}})).await,
        400,
        "invalid_field",
        "made:up",
    );
    assert_eq!(app.post("/v1/events", json!({"type": "whatsapp:message:status", "payload": {}})).await.0, 202);
}

#[tokio::test]
async fn egress_reports_the_bind_address() {
    // 127.0.0.2, not the loopback default, so that the receiver can tell.
    let app = TestApp::spawn_with(|config| config.bind_address = Some("127.0.0.2".parse().unwrap())).await;
    let (status, egress) = app.get("/v1/egress").await;
    assert_eq!(status, 200);
    assert_eq!(egress["addresses"], json!(["127.0.0.2"]));
    // Deliveries go out from it.
    let mut receiver = Receiver::start().await;
    app.create_webhook(json!({"url": receiver.url, "profile": "routee"})).await;
    app.send_event(json!({"type": "viber:campaign:status", "payload": {"trackingId": "x"}})).await;
    let request = receiver.next().await;
    assert_eq!(request.json()["trackingId"], "x");
    assert_eq!(request.peer.ip(), "127.0.0.2".parse::<std::net::IpAddr>().unwrap());
}

/// `WEBHOOK_URL` alone: 3 tries in all, the first wait 5000 ms, doubling,
/// walked on the manual clock to the millisecond, with the defaults taken
/// from the same argument parsing `herald serve` does.
#[tokio::test]
async fn an_environment_webhook_without_retry_variables_tries_three_times_from_5000_ms_doubling() {
    let mut receiver = Receiver::start_with((0..3).map(|_| Reply::status(500)).collect()).await;
    let url = receiver.url.clone();
    let app = TestApp::spawn_driven_with(move |config| {
        let args = herald::config::ServeArgs { webhook_url: Some(url), ..Default::default() };
        config.env_webhook = herald::config::ServeConfig::from_args(args).unwrap().env_webhook;
    })
    .await;
    app.send_event(json!({"type": "message_create", "payload": {"body": "Hello!"}})).await;
    let ms = std::time::Duration::from_millis;
    assert_eq!(app.run_until_idle().await, 1, "the first try");
    for wait_ms in [5000, 10_000] {
        app.clock.advance(ms(wait_ms - 1));
        assert_eq!(app.run_until_idle().await, 0, "1 ms before the {wait_ms} ms wait ends");
        app.clock.advance(ms(1));
        assert_eq!(app.run_until_idle().await, 1, "when the {wait_ms} ms wait ends");
    }
    app.clock.advance(std::time::Duration::from_secs(86_400));
    assert_eq!(app.run_until_idle().await, 0, "no fourth try");
    assert_eq!(receiver.drain().len(), 3);
    let (_, log) = app.get("/v1/deliveries").await;
    assert_eq!((&log["data"][0]["status"], &log["data"][0]["n_attempts"]), (&json!("failed"), &json!(3)), "{log}");
}

/// The webhooks of a child Herald, listed with its default account's token.
async fn child_webhooks(base: &str, token: &str) -> Vec<Value> {
    let response =
        crate::support::http_client().get(format!("{base}/v1/webhooks")).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    body["data"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_keep_one_environment_webhook_and_a_changed_webhook_url_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let mut first = Receiver::start().await;
    let mut second = Receiver::start().await;

    let (child, base) = spawn_herald_with_env(&db, &[], &[("WEBHOOK_URL", &first.url)]).await;
    let token = crate::support::child_token(dir.path());
    let created = child_webhooks(&base, &token).await;
    assert_eq!(created.len(), 1, "{created:?}");
    stop_gracefully(child).await;

    // The same variable again: the same webhook, not a second one.
    let (child, base) = spawn_herald_with_env(&db, &[], &[("WEBHOOK_URL", &first.url)]).await;
    let again = child_webhooks(&base, &token).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!((&again[0]["id"], &again[0]["url"]), (&created[0]["id"], &json!(first.url)));
    crate::support::child_post(&base, &token, "/v1/events", json!({"type": "t", "payload": {"n": 1}})).await;
    assert_eq!(first.next().await.json()["data"]["n"], 1);
    stop_gracefully(child).await;

    // A changed variable moves that webhook; events follow it.
    let (child, base) = spawn_herald_with_env(&db, &[], &[("WEBHOOK_URL", &second.url)]).await;
    let moved = child_webhooks(&base, &token).await;
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!((&moved[0]["id"], &moved[0]["url"]), (&created[0]["id"], &json!(second.url)));
    crate::support::child_post(&base, &token, "/v1/events", json!({"type": "t", "payload": {"n": 2}})).await;
    assert_eq!(second.next().await.json()["data"]["n"], 2);
    stop_gracefully(child).await;
    assert!(first.drain().is_empty(), "the old URL still got deliveries");
}
