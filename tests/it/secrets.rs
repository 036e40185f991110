//! Secrets at rest (issue 13, item 8): with a secret key, no webhook signing
//! secret (nor a Viber bot token, which signs its bot's webhook) is found in
//! the database files, deliveries still sign with them, a database written
//! without the key is sealed at the next start with it, and a database
//! sealed with a key refuses to start without it or with another.

use std::path::Path;

use axum::http::StatusCode;
use herald::sealing::SecretKey;
use serde_json::{Value, json};

use crate::support::{
    PATIENCE, Received, Receiver, TestApp, hex_hmac, http_client, run_herald_in, spawn_herald, spawn_herald_with_env,
    stop_gracefully,
};

/// The bytes 0 to 31, in base64.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Thirty-two 0x11 bytes, in base64.
const OTHER_KEY: &str = "ERERERERERERERERERERERERERERERERERERERERERE=";

/// What must not be found of a secret: its text and, for a `whsec_`
/// secret, its base64 part and the bytes that encodes.
fn forms(secret: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let mut forms = vec![secret.as_bytes().to_vec()];
    if let Some(b64) = secret.strip_prefix("whsec_") {
        forms.push(b64.as_bytes().to_vec());
        forms.push(base64::engine::general_purpose::STANDARD.decode(b64).unwrap());
    }
    forms
}

/// The database's files as they are on disk now: the main file, its WAL
/// and its shared memory, where present.
fn database_files(db: &Path) -> Vec<(String, Vec<u8>)> {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| {
            let path = format!("{}{suffix}", db.display());
            std::fs::read(&path).ok().map(|bytes| (path, bytes))
        })
        .collect()
}

fn found_in(db: &Path, secret: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (path, bytes) in database_files(db) {
        for form in forms(secret) {
            if bytes.windows(form.len()).any(|w| w == form.as_slice()) {
                found.push(format!("{path}: {}", String::from_utf8_lossy(&form)));
            }
        }
    }
    found
}

#[track_caller]
fn assert_nowhere(db: &Path, secrets: &[&str]) {
    for secret in secrets {
        let found = found_in(db, secret);
        assert!(found.is_empty(), "secret {secret:?} found in {found:?}");
    }
}

/// Moves what the WAL holds into the main file, as SQLite does on its own
/// from time to time, so the main file is checked too.
fn checkpoint(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).unwrap();
}

/// Every non-empty stored secret, as stored.
fn stored_secrets(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT secret, previous_secret FROM webhooks").unwrap();
    let rows = stmt.query_map([], |r| Ok([r.get::<_, Option<String>>(0)?, r.get::<_, Option<String>>(1)?])).unwrap();
    rows.flat_map(|r| r.unwrap()).flatten().filter(|s| !s.is_empty()).collect()
}

fn key(base64: &str) -> SecretKey {
    SecretKey::from_base64(base64).unwrap()
}

#[track_caller]
fn assert_standard_signature(secret: &str, request: &Received) {
    standardwebhooks::Webhook::new(secret).unwrap().verify(&request.body, &request.headers).unwrap();
}

#[track_caller]
fn assert_hex_signature(header: &str, secret: &str, request: &Received) {
    assert_eq!(request.header(header), Some(hex_hmac(secret.as_bytes(), &request.body).as_str()), "{header}");
}

async fn set_viber_webhook(base: &str, bot_token: &str, url: &str) {
    let response = http_client()
        .post(format!("{base}/pa/set_webhook"))
        .header("X-Viber-Auth-Token", bot_token)
        .body(json!({"url": url}).to_string())
        .send()
        .await
        .unwrap();
    let reply: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(reply["status"], 0, "{reply}");
}

fn viber_event() -> Value {
    json!({"type": "delivered", "payload": {"event": "delivered", "timestamp": 1457764197627u64,
        "message_token": 4912661846655238145u64, "user_id": "01234567890A="}})
}

#[tokio::test]
async fn with_a_key_no_secret_is_in_the_database_files_and_deliveries_still_sign() {
    if crate::support::skip_on_postgres(
        "reads the SQLite file's bytes for plain secrets; store_story checks that PostgreSQL holds them sealed",
    ) {
        return;
    }
    let app = TestApp::spawn_with(|config| config.secret_key = Some(key(KEY))).await;
    let db = app.database_path();
    let (mut standard, mut business, mut bot) =
        (Receiver::start().await, Receiver::start().await, Receiver::start().await);

    let created = app.create_webhook(json!({"url": standard.url})).await;
    let standard_id = created["id"].as_str().unwrap().to_owned();
    let first = created["secret"].as_str().unwrap().to_owned();
    let business_secret = "business-secret-4c1f9e27b05d";
    app.create_webhook(json!({"url": business.url, "profile": "business", "secret": business_secret})).await;
    let bot_token = app.viber_token().await;
    set_viber_webhook(&app.base, &bot_token, &bot.url).await;
    let check = bot.next().await;
    assert_eq!(check.json()["event"], "webhook");
    assert_hex_signature("x-viber-content-signature", &bot_token, &check);

    let (status, rotated) =
        app.post(&format!("/v1/webhooks/{standard_id}/rotate-secret"), json!({"grace_seconds": 3600})).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let second = rotated["secret"].as_str().unwrap().to_owned();

    // Reads open the secrets: the API shows them as they were given.
    let (_, secrets) = app.get(&format!("/v1/webhooks/{standard_id}/secret")).await;
    assert_eq!(
        (secrets["secret"].as_str(), secrets["previous_secret"]["secret"].as_str()),
        (Some(&*second), Some(&*first))
    );

    app.send_event(viber_event()).await;
    let request = standard.next().await;
    assert_standard_signature(&first, &request);
    assert_standard_signature(&second, &request);
    assert_hex_signature("signature", business_secret, &business.next().await);
    assert_hex_signature("x-viber-content-signature", &bot_token, &bot.next().await);

    let stored = stored_secrets(&db);
    assert_eq!(stored.len(), 4, "{stored:?}");
    assert!(stored.iter().all(|s| s.starts_with("enc1:")), "{stored:?}");
    let secrets = [first.as_str(), &second, business_secret, &bot_token];
    assert_nowhere(&db, &secrets);
    checkpoint(&db);
    assert_nowhere(&db, &secrets);
}

/// `herald serve` on `db` until it exits by itself; its stderr.
async fn refused_start(db: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let db_arg = format!("sqlite://{}", db.display());
    let mut all = vec!["serve", "--listen", "127.0.0.1:0", "--database", &db_arg];
    all.extend_from_slice(args);
    let output = tokio::time::timeout(PATIENCE, run_herald_in(db.parent().unwrap(), &all, env))
        .await
        .expect("herald started, or hung, instead of refusing");
    assert!(!output.status.success(), "herald started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_written_without_a_key_is_sealed_at_the_next_start_and_needs_that_key_after() {
    if crate::support::skip_on_postgres("copies the SQLite file to start a second herald on it") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let (mut standard, mut business) = (Receiver::start().await, Receiver::start().await);
    let (child, base) = spawn_herald(&db, &[]).await;
    let credentials: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("herald.credentials.json")).unwrap()).unwrap();
    let token = credentials["token"].as_str().unwrap().to_owned();
    let http = http_client();
    let post = |path: String, body: Value| {
        let request = http.post(format!("{base}{path}")).bearer_auth(&token).header("content-type", "application/json");
        async move {
            let response = request.body(body.to_string()).send().await.unwrap();
            let status = response.status();
            let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
            assert!(status.is_success(), "{status} {body}");
            body
        }
    };
    let created = post("/v1/webhooks".into(), json!({"url": standard.url})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let retired = created["secret"].as_str().unwrap().to_owned();
    let business_secret = "business-secret-9d02b6e1f38a";
    post("/v1/webhooks".into(), json!({"url": business.url, "profile": "business", "secret": business_secret})).await;
    // Rotated twice: the first secret is in no row, only in the free space
    // of a page, if anywhere.
    let rotate = || post(format!("/v1/webhooks/{id}/rotate-secret"), json!({"grace_seconds": 0}));
    let previous = rotate().await["secret"].as_str().unwrap().to_owned();
    let current = rotate().await["secret"].as_str().unwrap().to_owned();
    // Killed, so the WAL certainly keeps what it was given (a clean stop
    // may or may not leave it behind).
    let mut child = child;
    child.kill().await.unwrap();
    let key_file = dir.path().join("herald.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let all = [retired.as_str(), &previous, &current, business_secret];

    // A copy checkpointed, as a long-lived database is: the plain secrets
    // in its main file, the retired one in a page's free space.
    let copy = tempfile::tempdir().unwrap();
    let copied = copy.path().join("herald.db");
    for suffix in ["", "-wal"] {
        std::fs::copy(format!("{}{suffix}", db.display()), format!("{}{suffix}", copied.display())).unwrap();
    }
    checkpoint(&copied);
    assert!(!std::fs::exists(format!("{}-wal", copied.display())).unwrap(), "checkpointed when it closed");
    for secret in all {
        assert!(!found_in(&copied, secret).is_empty(), "the control: {secret} is in the file without a key");
    }
    let (child, _) = spawn_herald(&copied, &["--secret-key-file", key_file.to_str().unwrap()]).await;
    assert_nowhere(&copied, &all);
    stop_gracefully(child).await;
    assert_nowhere(&copied, &all);

    // The original: the plain secrets are in its WAL.
    for secret in all {
        assert!(!found_in(&db, secret).is_empty(), "the control: {secret} is in the WAL without a key");
    }
    let (child, base) = spawn_herald(&db, &["--secret-key-file", key_file.to_str().unwrap()]).await;
    // The start sealed them all and left no copy in the main file or the WAL.
    let stored = stored_secrets(&db);
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert!(stored.iter().all(|s| s.starts_with("enc1:")), "{stored:?}");
    assert_nowhere(&db, &all);
    let sent = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(json!({"type": "t", "payload": {"after": "sealing"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    assert_standard_signature(&current, &standard.next().await);
    assert_hex_signature("signature", business_secret, &business.next().await);
    stop_gracefully(child).await;
    assert_nowhere(&db, &all);

    // Sealed, the database does not start without its key, nor with another.
    let err = refused_start(&db, &[], &[]).await;
    assert!(err.contains("encrypted webhook secrets") && err.contains("no secret key is set"), "{err}");
    let err = refused_start(&db, &[], &[("HERALD_SECRET_KEY", OTHER_KEY)]).await;
    let (right, wrong) = (key(KEY).id().to_owned(), key(OTHER_KEY).id().to_owned());
    assert!(err.contains(&format!("the secret key set (key {wrong}) is not the one")), "{err}");
    assert!(err.contains(&format!("encrypted with (key {right})")), "{err}");
    let err = refused_start(&db, &[], &[("HERALD_SECRET_KEY", "not-a-key")]).await;
    assert!(err.contains("HERALD_SECRET_KEY: not base64"), "{err}");
    assert!(!err.contains("not-a-key"), "the error repeats the key: {err}");

    // The variable works as the file did.
    let (child, base) = spawn_herald_with_env(&db, &[], &[("HERALD_SECRET_KEY", KEY)]).await;
    let sent = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(json!({"type": "t", "payload": {"after": "restart"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    assert_standard_signature(&current, &standard.next().await);
    stop_gracefully(child).await;

    // A sealed secret copied onto another webhook does not open there.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let n = conn
            .execute("UPDATE webhooks SET secret = (SELECT secret FROM webhooks WHERE id = ?1) WHERE id <> ?1", [&id])
            .unwrap();
        assert_eq!(n, 1);
    }
    let err = refused_start(&db, &[], &[("HERALD_SECRET_KEY", KEY)]).await;
    assert!(err.contains("secret does not decrypt with the secret key"), "{err}");
}
