//! Regression tests for what an outside attacker and a hostile environment
//! found (the hardening issue): each test names the defect it guards and
//! fails on the code that had it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{PATIENCE, Receiver, Reply, TestApp, check_error};

/// Defect 1: `1e400`, a lone surrogate and deep nesting were accepted (202);
/// reading the event back then panicked, and `wwebjs` delivered `null`.
#[tokio::test]
async fn payloads_that_cannot_be_read_back_exactly_are_refused_at_ingest() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    app.create_webhook(json!({"url": receiver.url, "profile": "wwebjs"})).await;
    let token = Some(app.token.as_str());
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for (payload, problem) in [
        ("1e400", "number out of range"),
        (r#"{"text": "\ud800"}"#, "hex escape"),
        (r#"{"text": "\udc00 alone"}"#, "lone leading surrogate"),
        (deep.as_str(), "recursion limit exceeded"),
        (r#"{"to": "1", "to": "2"}"#, "key `to` appears twice"),
    ] {
        let one = format!(r#"{{"type": "t", "id": "bad-1", "payload": {payload}}}"#);
        let response = app.call_raw(Method::POST, "/v1/events", token, one).await;
        check_error(response, 400, "invalid_field", "payload (event `bad-1`): cannot be stored");
        let response = app.call_raw(Method::POST, "/v1/events", token, one_more(payload)).await;
        check_error(response.clone(), 400, "invalid_field", "[1].payload");
        check_error(response, 400, "invalid_field", problem);
    }
    // Nothing of any of them was stored.
    assert_eq!(app.get("/v1/events/bad-1").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v1/deliveries").await.1["data"], json!([]));

    // What a JSON value holds is taken, read back as sent and delivered.
    let nested = format!("{}1{}", "[".repeat(120), "]".repeat(120));
    let text = format!(r#"{{"big": 1.7976931348623157e308, "emoji": "\ud83d\ude00", "nested": {nested}}}"#);
    let body = format!(r#"{{"type": "t", "id": "good-1", "payload": {text}}}"#);
    assert_eq!(app.call_raw(Method::POST, "/v1/events", token, body).await.0, StatusCode::ACCEPTED);
    let read_back = app.http.get(format!("{}/v1/events/good-1", app.base)).bearer_auth(&app.token).send().await;
    let read_back = read_back.unwrap().text().await.unwrap();
    assert!(read_back.contains(&format!(r#""payload":{text}"#)), "{read_back}");
    let delivered = receiver.next().await.json();
    let sent: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(delivered["data"], sent);
    assert_eq!(delivered["data"]["emoji"], "😀");
}

/// A batch whose second event carries `payload`.
fn one_more(payload: &str) -> String {
    format!(r#"[{{"type": "t", "payload": {{}}}}, {{"type": "t", "payload": {payload}}}]"#)
}

/// Defect 2: PATCH skipped every check create makes.
#[tokio::test]
async fn an_update_is_checked_as_a_create_is() {
    let app = TestApp::spawn_with(|config| config.allow_private_targets = false).await;
    // A public address that no test ever sends to: nothing is ingested here.
    let original = "http://100.128.0.1/hook";
    let webhook = app.create_webhook(json!({"url": original, "description": "kept"})).await;
    let path = format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap());
    let patch = |body: Value| app.call(Method::PATCH, &path, &app.token, Some(body));
    check_error(patch(json!({"url": "http://10.0.0.5/x"})).await, 400, "invalid_field", "not a public address");
    check_error(
        patch(json!({"url": "file:///etc/passwd"})).await,
        400,
        "invalid_field",
        "scheme must be http or https",
    );
    check_error(patch(json!({"url": "not a url"})).await, 400, "invalid_field", "url:");
    let long = format!("http://100.128.0.1/{}", "a".repeat(100_000));
    check_error(patch(json!({"url": long})).await, 400, "invalid_field", "at most 2048");
    check_error(patch(json!({"profile": "compose"})).await, 400, "invalid_field", "needs a template");
    check_error(
        patch(json!({"profile": "compose", "template": {"body": "{\"id\": \"@{{payload.id\"}"}})).await,
        400,
        "invalid_field",
        "template.body",
    );
    check_error(patch(json!({"description": "d".repeat(1001)})).await, 400, "invalid_field", "description");
    check_error(patch(json!({"event_types": [""]})).await, 400, "invalid_field", "event_types");
    // Create refuses a token as a secret (its answer shows the secret).
    let token_as_secret = json!({"url": original, "profile": "business", "secret": app.token});
    check_error(app.post("/v1/webhooks", token_as_secret).await, 400, "invalid_field", "a herald token cannot be");
    // A compose URL template is bounded by its own length, not its sample's.
    let template_url = format!("http://100.128.0.1/?{}", "@{{payload.id}}".repeat(200));
    check_error(
        patch(json!({"url": template_url, "profile": "compose", "template": {}})).await,
        400,
        "invalid_field",
        "at most 2048",
    );
    // Nothing of it was stored.
    let (_, stored) = app.get(&path).await;
    assert_eq!((stored["url"].as_str(), stored["profile"].as_str()), (Some(original), Some("standard")));
    assert_eq!(stored["description"], "kept");
    // A valid update still goes through, and names what it changed.
    let (status, updated) = patch(json!({"url": "https://100.128.0.2/new"})).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["url"], "https://100.128.0.2/new");
}

/// Defect 9: header values past ASCII went out as raw bytes.
#[tokio::test]
async fn custom_header_values_must_be_visible_ascii() {
    let app = TestApp::spawn().await;
    let url = "http://127.0.0.1:9/hook";
    let refused = app.post("/v1/webhooks", json!({"url": url, "headers": {"X-A": "café"}})).await;
    check_error(refused, 400, "invalid_field", "headers.X-A");
    let webhook = app.create_webhook(json!({"url": url, "headers": {"X-A": "plain value\twith tab"}})).await;
    assert_eq!(webhook["headers"]["x-a"], "plain value\twith tab");
    let path = format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap());
    let refused = app.call(Method::PATCH, &path, &app.token, Some(json!({"headers": {"X-B": "naïve"}}))).await;
    check_error(refused, 400, "invalid_field", "headers.X-B");
}

/// Defect 9: `cursor=garbage` answered 200 with a page.
#[tokio::test]
async fn a_cursor_that_is_not_a_delivery_id_is_refused() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    app.create_webhook(json!({"url": receiver.url})).await;
    for i in 0..3 {
        app.send_event(json!({"type": "t", "id": format!("e{i}"), "payload": {}})).await;
    }
    let (_, first) = app.get("/v1/deliveries?limit=2").await;
    let cursor = first["next_cursor"].as_str().expect("a second page").to_owned();
    for bad in ["garbage", "dlv_", "dlv_0000", &cursor.to_lowercase(), &cursor.replace("dlv_", "evt_")] {
        let (status, body) = app.get(&format!("/v1/deliveries?cursor={bad}")).await;
        check_error((status, body), 400, "invalid_field", "cursor");
    }
    let (status, second) = app.get(&format!("/v1/deliveries?limit=2&cursor={cursor}")).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["data"].as_array().unwrap().len(), 1);
    assert_eq!(second["next_cursor"], Value::Null);
}

/// Defect 3: a 7 KB template with a placeholder 300 times over a 400 KB
/// value built a 114 MiB request.
#[tokio::test]
async fn a_compose_template_cannot_render_past_its_limits() {
    let mut app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    let body = format!("[{}0]", "\"@{{payload.b}}\",".repeat(300));
    let webhook = app
        .create_webhook(json!({
            "url": format!("{}?to=@{{{{payload.to}}}}", receiver.url),
            "profile": "compose",
            "template": {"body": body},
        }))
        .await;
    let large = "x".repeat(400 * 1024);
    app.send_event(json!({"type": "t", "id": "huge", "payload": {"b": large, "to": "1"}})).await;
    let attempt = app.next_attempt().await;
    assert_eq!(attempt.attempt.error_class, Some(herald::model::ErrorClass::Render));
    assert_eq!(attempt.attempt.status_code, None);
    assert_eq!(attempt.next, herald::model::NextStep::Failed);
    let delivery = app.delivery_of("huge").await;
    assert_eq!(delivery["status"], "failed");
    assert_eq!(delivery["attempts"][0]["error_class"], "render");
    let message = delivery["attempts"][0]["error_message"].as_str().unwrap();
    assert_eq!(message, "compose: the body rendered to more than 1048576 bytes");

    // The URL is bounded too (8 KiB), and the same webhook still delivers
    // what fits: its breaker was not fed by what it never sent.
    app.send_event(json!({"type": "t", "id": "long-url", "payload": {"b": "y", "to": "9".repeat(9000)}})).await;
    let attempt = app.next_attempt().await;
    assert_eq!(attempt.attempt.error_message.as_deref(), Some("compose: the url rendered to more than 8192 bytes"));
    app.send_event(json!({"type": "t", "id": "small", "payload": {"b": "y", "to": "7"}})).await;
    let request = receiver.next().await;
    assert_eq!(request.uri.query(), Some("to=7"));
    assert_eq!(request.json(), serde_json::from_str::<Value>(&format!("[{}0]", "\"y\",".repeat(300))).unwrap());
    assert_eq!(app.next_attempt().await.next, herald::model::NextStep::Success);
    assert!(receiver.drain().is_empty(), "only the event that fits was sent");
    let (_, view) = app.get(&format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap())).await;
    assert_eq!(view["circuit"]["state"], "closed");
}

/// Defect 6: `herald.db`, `-wal` and `-shm` were 0644 under umask 022.
#[tokio::test]
async fn the_database_files_are_readable_by_their_owner_only() {
    if crate::support::skip_on_postgres("about the SQLite file's modes") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("private.db");
    // The usual umask, whatever this process was started with (022 is what
    // made the files world-readable).
    // SAFETY: umask only swaps the process's file-creation mask.
    unsafe { libc::umask(0o022) };
    let url = format!("sqlite://{}", db.display());
    let app = TestApp::spawn_with(|config| config.database = url).await;
    app.create_webhook(json!({"url": "http://127.0.0.1:9/hook", "enabled": false})).await;
    app.send_event(json!({"type": "t", "payload": {}})).await;
    for name in ["private.db", "private.db-wal", "private.db-shm", "private.credentials.json"] {
        let mode = std::fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} has mode {mode:o}");
    }
    drop(app);

    // A file an older Herald left readable by others is made private.
    let old = dir.path().join("old.db");
    std::fs::write(&old, b"").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    let url = format!("sqlite://{}", old.display());
    let _app = TestApp::spawn_with(|config| config.database = url).await;
    assert_eq!(std::fs::metadata(&old).unwrap().permissions().mode() & 0o777, 0o600);
}

/// A receiver that answers only when the test lets it: requests wait at a
/// gate, so the test decides when their attempts finish.
struct GatedReceiver {
    url: String,
    arrived: Arc<AtomicUsize>,
    open: Arc<tokio::sync::Semaphore>,
}

impl GatedReceiver {
    async fn start() -> GatedReceiver {
        let arrived = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(tokio::sync::Semaphore::new(0));
        let (count, gate) = (arrived.clone(), open.clone());
        let app = axum::Router::new().fallback(move || {
            let (count, gate) = (count.clone(), gate.clone());
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await.unwrap().forget();
                StatusCode::OK
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        GatedReceiver { url, arrived, open }
    }

    async fn wait_for(&self, n: usize) {
        tokio::time::timeout(PATIENCE, async {
            while self.arrived.load(Ordering::SeqCst) < n {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the receiver did not get the requests in time");
    }
}

/// Defect 7: with the file locked past the busy timeout, the recorder
/// dropped the attempts and their deliveries stayed pending until a
/// restart; ingest answered "herald is shutting down".
#[tokio::test]
async fn attempts_made_while_the_database_is_locked_are_recorded_once_it_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let url = format!("sqlite://{}?busy_timeout_ms=100", db.display());
    let mut app = TestApp::spawn_with(|config| config.database = url).await;
    let receiver = GatedReceiver::start().await;
    app.create_webhook(json!({"url": receiver.url})).await;
    let events: Vec<Value> = (0..8).map(|i| json!({"type": "t", "id": format!("e{i}"), "payload": {"i": i}})).collect();
    let (status, _) = app.post("/v1/events", Value::Array(events)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    receiver.wait_for(8).await;

    // Another process takes the write lock and keeps it.
    let other = rusqlite::Connection::open(&db).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    receiver.open.add_permits(8);
    // The recorder's commit fails; it says so, and keeps the attempts.
    tokio::time::timeout(PATIENCE, async {
        while app.call_raw(Method::GET, "/healthz", None, "").await.1["status"] != "degraded" {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("healthz never said that attempts cannot be recorded");
    // Ingest says what is wrong, and stores nothing.
    let refused = app.post("/v1/events", json!({"type": "t", "id": "during", "payload": {}})).await;
    check_error(refused, 503, "unavailable", "database is locked");

    // The lock goes; the recorder's next try (on the clock) commits all 8.
    other.execute_batch("ROLLBACK").unwrap();
    let mut recorded = 0;
    tokio::time::timeout(PATIENCE, async {
        while recorded < 8 {
            app.clock.advance(Duration::from_secs(5));
            if let Ok(attempt) = tokio::time::timeout(Duration::from_millis(200), app.next_attempt()).await {
                assert_eq!(attempt.next, herald::model::NextStep::Success);
                recorded += 1;
            }
        }
    })
    .await
    .expect("the attempts were not recorded after the lock was released");
    for i in 0..8 {
        let delivery = app.delivery_of(&format!("e{i}")).await;
        assert_eq!((delivery["status"].as_str(), delivery["n_attempts"].as_u64()), (Some("success"), Some(1)));
    }
    assert_eq!(app.get("/v1/events/during").await.0, StatusCode::NOT_FOUND);
    // And Herald takes events again, without a restart.
    app.send_event(json!({"type": "t", "id": "after", "payload": {}})).await;
    receiver.wait_for(9).await;
}

/// A receiver that is down (503) until the test brings it up; while down,
/// the first `burst` requests are all held until every one of them has
/// arrived, so that all of them are in flight when the breaker opens.
struct FlakyReceiver {
    url: String,
    up: Arc<AtomicBool>,
    arrived: Arc<AtomicUsize>,
}

impl FlakyReceiver {
    async fn start(burst: usize) -> FlakyReceiver {
        let up = Arc::new(AtomicBool::new(false));
        let arrived = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(tokio::sync::Barrier::new(burst));
        let (is_up, count) = (up.clone(), arrived.clone());
        let app = axum::Router::new().fallback(move || {
            let (is_up, count, barrier) = (is_up.clone(), count.clone(), barrier.clone());
            async move {
                if is_up.load(Ordering::SeqCst) {
                    count.fetch_add(1, Ordering::SeqCst);
                    return StatusCode::OK;
                }
                if count.fetch_add(1, Ordering::SeqCst) < burst {
                    barrier.wait().await;
                }
                StatusCode::SERVICE_UNAVAILABLE
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FlakyReceiver { url, up, arrived }
    }
}

/// Defect 8: the sends in flight when the breaker opened each counted as
/// a failed probe and doubled its wait: a one-second blip during a burst
/// left the breaker open for 299 s.
#[tokio::test]
async fn a_receiver_that_fails_for_a_second_gets_every_event_within_seconds() {
    let mut app = TestApp::spawn_with(|config| config.engine.per_webhook_concurrency = 20).await;
    let receiver = FlakyReceiver::start(20).await;
    let webhook = app.create_webhook(json!({"url": receiver.url})).await;
    let path = format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap());
    let events: Vec<Value> = (0..20).map(|i| json!({"type": "t", "id": format!("b{i}"), "payload": {}})).collect();
    let opened_at = app.now();
    assert_eq!(app.post("/v1/events", Value::Array(events)).await.0, StatusCode::ACCEPTED);
    // All 20 are in flight when the first answer comes back: all fail.
    for _ in 0..20 {
        assert_eq!(app.next_attempt().await.attempt.status_code, Some(503));
    }
    let (_, view) = app.get(&path).await;
    assert_eq!(view["circuit"]["state"], "open", "{view}");
    assert_eq!(view["circuit"]["failures_in_a_row"], 20);
    let open_until = herald::model::Timestamp(opened_at.0 + 1000).to_rfc3339();
    assert_eq!(view["circuit"]["open_until"], open_until, "one second, not lengthened by the sends in flight");

    // The receiver is back a second later. Each delivery's first retry is
    // due 10 s ± 20 % later; by then the breaker lets a probe through, and
    // its success lets the rest through at once.
    receiver.up.store(true, Ordering::SeqCst);
    app.clock.advance(Duration::from_secs(13));
    for _ in 0..20 {
        assert_eq!(app.next_attempt().await.attempt.status_code, Some(200));
    }
    for i in 0..20 {
        assert_eq!(app.delivery_of(&format!("b{i}")).await["status"], "success", "b{i}");
    }
    assert_eq!(receiver.arrived.load(Ordering::SeqCst), 40);
    let (_, view) = app.get(&path).await;
    assert_eq!(view["circuit"]["state"], "closed");
}

/// Starts `herald serve` in a mount namespace of its own, on a 1 MiB tmpfs
/// mounted at `dir`, so that the test can fill its disk (through
/// `/proc/PID/root`) without touching the machine's. `None` where this
/// machine does not let a test mount (not root, no `unshare`).
async fn spawn_herald_on_a_small_disk(dir: &std::path::Path) -> Option<(tokio::process::Child, String)> {
    use tokio::io::AsyncBufReadExt;
    let script = format!(
        "mount -t tmpfs -o size=1m,mode=0700 herald-test {dir} || exit 77; exec \"$0\" serve --listen 127.0.0.1:0 \
         --allow-private-targets --database sqlite://{dir}/herald.db",
        dir = dir.display()
    );
    let mut child = tokio::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script, env!("CARGO_BIN_EXE_herald")])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HERALD_ADMIN_TOKEN", crate::support::OPERATOR_TOKEN)
        .env("HERALD_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let base = tokio::time::timeout(PATIENCE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some((_, url)) = line.split_once("listening on ") {
                return Some(url.trim().to_owned());
            }
        }
        None
    })
    .await
    .expect("herald did not start in time")?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some((child, base))
}

/// Defect 7, the disk: after a disk-full episode, events that had a 202
/// were never delivered and deliveries stayed pending until a restart.
#[tokio::test]
async fn attempts_made_while_the_disk_is_full_are_recorded_once_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let Some((child, base)) = spawn_herald_on_a_small_disk(dir.path()).await else {
        // CI runs as root, where this must run: a skip there would prove nothing.
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI could not mount the small filesystem");
        eprintln!("skipped: this machine does not let a test mount a small filesystem (needs root and unshare)");
        return;
    };
    let inside = std::path::PathBuf::from(format!("/proc/{}/root{}", child.id().unwrap(), dir.path().display()));
    let http = crate::support::http_client();
    let call = |method: Method, path: &str, token: &str, body: Option<Value>| {
        let mut request = http.request(method, format!("{base}{path}")).bearer_auth(token);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            (status, serde_json::from_str::<Value>(&text).unwrap_or(Value::Null))
        }
    };
    let (_, account) =
        call(Method::POST, "/v1/accounts", crate::support::OPERATOR_TOKEN, Some(json!({"name": "disk"}))).await;
    let token = account["token"].as_str().unwrap().to_owned();
    let receiver = GatedReceiver::start().await;
    let (status, _) = call(Method::POST, "/v1/webhooks", &token, Some(json!({"url": receiver.url}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let events: Vec<Value> = (0..5).map(|i| json!({"type": "t", "id": format!("d{i}"), "payload": {"i": i}})).collect();
    assert_eq!(call(Method::POST, "/v1/events", &token, Some(Value::Array(events))).await.0, StatusCode::ACCEPTED);
    receiver.wait_for(5).await;

    // Fill the disk, then let the five attempts finish.
    let filler = inside.join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let _ = file.write_all(&[0u8; 1]);
        let _ = file.sync_all();
    }
    receiver.open.add_permits(5);
    tokio::time::timeout(PATIENCE, async {
        while call(Method::GET, "/healthz", &token, None).await.1["status"] != "degraded" {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("healthz never said that attempts cannot be recorded");
    let (status, refused) = call(Method::POST, "/v1/events", &token, Some(json!({"type": "t", "payload": {}}))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert_eq!(refused["code"], "unavailable");
    assert!(refused["message"].as_str().unwrap().contains("full"), "{refused}");

    // Room again: the recorder's next try commits, with no restart.
    std::fs::remove_file(&filler).unwrap();
    tokio::time::timeout(PATIENCE, async {
        loop {
            let (_, page) = call(Method::GET, "/v1/deliveries?status=success", &token, None).await;
            if page["data"].as_array().is_some_and(|d| d.len() == 5) {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the attempts were not recorded once the disk had room");
    assert_eq!(call(Method::GET, "/healthz", &token, None).await.1["status"], "ok");
    let (status, _) = call(Method::POST, "/v1/events", &token, Some(json!({"type": "t", "payload": {}}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    receiver.open.add_permits(1);
    receiver.wait_for(6).await;
    crate::support::stop_gracefully(child).await;
}

/// The review of the fix for defect 3: a breaker's probe that cannot be
/// rendered reached no receiver, and left the breaker waiting for it for
/// ever (`probing`), so nothing more went to that webhook until a restart.
#[tokio::test]
async fn a_probe_that_cannot_be_rendered_lets_another_delivery_probe() {
    let mut app = TestApp::spawn().await;
    let mut receiver = Receiver::start_with(vec![Reply::status(500); 5]).await;
    let body = format!("[{}0]", "\"@{{payload.b}}\",".repeat(300));
    let webhook =
        app.create_webhook(json!({"url": receiver.url, "profile": "compose", "template": {"body": body}})).await;
    let path = format!("/v1/webhooks/{}", webhook["id"].as_str().unwrap());
    for i in 0..5 {
        app.send_event(json!({"type": "t", "id": format!("fail{i}"), "payload": {"b": "y"}})).await;
        assert_eq!(app.next_attempt().await.attempt.status_code, Some(500));
        receiver.next().await;
    }
    assert_eq!(app.get(&path).await.1["circuit"]["state"], "open");
    // Due now, while the breaker is open: the next probe, once it may go.
    app.send_event(json!({"type": "t", "id": "huge", "payload": {"b": "x".repeat(400 * 1024)}})).await;
    app.clock.advance(Duration::from_secs(1));
    let attempt = app.next_attempt().await;
    assert_eq!(attempt.attempt.error_class, Some(herald::model::ErrorClass::Render));
    // The breaker can probe again, with the next delivery due.
    app.send_event(json!({"type": "t", "id": "after", "payload": {"b": "z"}})).await;
    let request = receiver.next().await;
    assert_eq!(request.json()[0], "z");
    assert_eq!(app.next_attempt().await.next, herald::model::NextStep::Success);
    assert_eq!(app.get(&path).await.1["circuit"]["state"], "closed");
}
