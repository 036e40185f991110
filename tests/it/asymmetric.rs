//! Standard Webhooks' asymmetric signatures (`v1a`, ed25519; #13 item 9):
//! `"signing": "ed25519"` or a given `whsk_` key, the `whpk_` public key in
//! the view and the secret answers, rotation, validation, `herald listen
//! --public-key` and `herald webhooks create --signing ed25519`. Signatures
//! are checked with Python's `cryptography` package
//! (`tests/verifiers/v1a_verify.py`), not Herald's code.

use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::support::{
    PATIENCE, Received, Receiver, TestApp, check_error, clean_command, run_herald, run_herald_in, run_verifier,
    spawn_herald,
};

// RFC 8032's first test key as a `whsk_` keypair (seed, then public key)
// and its `whpk_`, both encoded with Python, not with Herald.
const RFC8032_SECRET: &str =
    "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2DXWpgBgrEKt9VL/tPJZAc6DuFy89qmIyWvAhpo9wdRGg==";
const RFC8032_SEED_ONLY: &str = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const RFC8032_PUBLIC: &str = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

/// What Python's `cryptography` says of each signature in the request's
/// `webhook-signature` header, checked with `public_key`: `valid`,
/// `invalid` (a `v1a` signature of another key or content) or `other`.
async fn cryptography_verdicts(public_key: &str, request: &Received) -> Vec<String> {
    let header = |name| request.header(name).unwrap_or_else(|| panic!("no {name} header"));
    let args = [public_key, header("webhook-id"), header("webhook-timestamp"), header("webhook-signature")];
    let out = run_verifier("python3", "v1a_verify.py", &args, &request.body).await;
    out.lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn an_ed25519_webhook_signs_v1a_that_python_cryptography_verifies() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    let created = app.create_webhook(json!({"url": receiver.url, "signing": "ed25519"})).await;
    let id = created["id"].as_str().unwrap();
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsk_"), "{created}");
    let public_key = created["public_key"].as_str().unwrap().to_owned();
    assert!(public_key.starts_with("whpk_"), "{created}");
    let (_, view) = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(view["public_key"], public_key);
    let (_, secrets) = app.get(&format!("/v1/webhooks/{id}/secret")).await;
    assert_eq!(secrets["secret"], secret);
    assert_eq!(secrets["public_key"], public_key);

    app.send_event(json!({"type": "t", "payload": {"signed": "ed25519"}})).await;
    let request = receiver.next().await;
    assert!(request.header("webhook-signature").unwrap().starts_with("v1a,"));
    assert_eq!(cryptography_verdicts(&public_key, &request).await, ["valid"]);

    // An HMAC webhook has no public key to show.
    let hmac = app.create_webhook(json!({"url": receiver.url})).await;
    assert_eq!(hmac.get("public_key"), None, "{hmac}");
    let (_, secrets) = app.get(&format!("/v1/webhooks/{}/secret", hmac["id"].as_str().unwrap())).await;
    assert_eq!(secrets.get("public_key"), None, "{secrets}");
}

#[tokio::test]
async fn a_given_whsk_key_signs_with_its_own_public_key() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    // Without `"signing"`: the key's prefix says which scheme.
    let created = app.create_webhook(json!({"url": receiver.url, "secret": RFC8032_SECRET})).await;
    assert_eq!(created["public_key"], RFC8032_PUBLIC);
    // The 32-byte seed alone is the same key.
    let seed_only =
        app.create_webhook(json!({"url": receiver.url, "signing": "ed25519", "secret": RFC8032_SEED_ONLY})).await;
    assert_eq!(seed_only["public_key"], RFC8032_PUBLIC);

    app.send_event(json!({"type": "t", "payload": {"n": 1}})).await;
    for _ in 0..2 {
        let request = receiver.next().await;
        assert_eq!(cryptography_verdicts(RFC8032_PUBLIC, &request).await, ["valid"]);
    }
}

#[tokio::test]
async fn rotation_makes_a_new_keypair_and_signs_with_both_during_the_grace() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    let created = app.create_webhook(json!({"url": receiver.url, "signing": "ed25519"})).await;
    let id = created["id"].as_str().unwrap();
    let old_key = created["public_key"].as_str().unwrap().to_owned();

    let (status, rotated) = app.post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({"grace_seconds": 3600})).await;
    assert_eq!(status, 200, "{rotated}");
    assert!(rotated["secret"].as_str().unwrap().starts_with("whsk_"), "{rotated}");
    assert_ne!(rotated["secret"], created["secret"]);
    assert_eq!(rotated["previous_secret"]["secret"], created["secret"]);
    assert_eq!(rotated["previous_secret"]["public_key"], old_key);
    let new_key = rotated["public_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, old_key);
    let (_, view) = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(view["public_key"], new_key);
    let (_, secrets) = app.get(&format!("/v1/webhooks/{id}/secret")).await;
    assert_eq!((&secrets["public_key"], &secrets["previous_secret"]["public_key"]), (&json!(new_key), &json!(old_key)));

    // During the grace: the new key's signature first, then the old one's.
    app.send_event(json!({"type": "t", "payload": {"rotated": true}})).await;
    let request = receiver.next().await;
    assert_eq!(cryptography_verdicts(&new_key, &request).await, ["valid", "invalid"]);
    assert_eq!(cryptography_verdicts(&old_key, &request).await, ["invalid", "valid"]);

    // After it: the new key's alone.
    app.clock.advance(Duration::from_secs(3601));
    app.send_event(json!({"type": "t", "payload": {}})).await;
    let request = receiver.next().await;
    assert_eq!(cryptography_verdicts(&new_key, &request).await, ["valid"]);
    assert_eq!(cryptography_verdicts(&old_key, &request).await, ["invalid"]);
    let (_, secrets) = app.get(&format!("/v1/webhooks/{id}/secret")).await;
    assert_eq!(secrets["previous_secret"], Value::Null);
}

#[tokio::test]
async fn signing_and_whsk_keys_are_validated() {
    let app = TestApp::spawn().await;
    let url = "http://127.0.0.1:1/";
    let create = |body: Value| app.post("/v1/webhooks", body);
    check_error(
        create(json!({"url": url, "profile": "business", "signing": "ed25519"})).await,
        400,
        "invalid_field",
        "signing: only the standard profile has a choice of scheme, not `business`",
    );
    check_error(
        create(json!({"url": url, "signing": "rsa"})).await,
        400,
        "invalid_field",
        "signing: unknown scheme `rsa` (available: hmac-sha256, ed25519)",
    );
    check_error(
        create(json!({"url": url, "signing": "ed25519", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})).await,
        400,
        "invalid_field",
        "secret: ed25519 signing takes a `whsk_` key",
    );
    check_error(
        create(json!({"url": url, "signing": "hmac-sha256", "secret": RFC8032_SECRET})).await,
        400,
        "invalid_field",
        "secret: a `whsk_` key signs with ed25519, not hmac-sha256",
    );
    // RFC 8032's seed with a public half that is not its own.
    let mismatched = RFC8032_SECRET.replace("ZAc6", "ZAc7");
    check_error(
        create(json!({"url": url, "secret": mismatched})).await,
        400,
        "invalid_field",
        "secret: the `whsk_` key's public half does not match its private half",
    );
    check_error(
        create(json!({"url": url, "secret": "whsk_AAAA"})).await,
        400,
        "invalid_field",
        "secret: a `whsk_` key must decode to 64 bytes (ed25519 seed and public key) or a 32-byte seed",
    );
    let created = app.create_webhook(json!({"url": url, "signing": "ed25519"})).await;
    let id = created["id"].as_str().unwrap();
    check_error(
        app.post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({"secret": "whsk_not base64"})).await,
        400,
        "invalid_field",
        "secret: must be `whsk_` followed by base64",
    );
    // Nothing was changed by the refusals.
    let (_, list) = app.call(Method::GET, "/v1/webhooks", &app.token, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    let (_, secrets) = app.get(&format!("/v1/webhooks/{id}/secret")).await;
    assert_eq!(secrets["secret"], created["secret"]);
}

/// Runs `herald listen` with `args` on a free port; returns the child, its
/// URL and its stdout's lines.
async fn spawn_listen(
    args: &[&str],
) -> (tokio::process::Child, String, tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>) {
    // A port the system just handed out and took back: nothing else here
    // asks for fixed ports, so it stays free until `listen` binds it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = clean_command(env!("CARGO_BIN_EXE_herald"))
        .args(["listen", "--port", &port.to_string()])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(PATIENCE, lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(first.starts_with("listening on"), "{first}");
    (child, format!("http://127.0.0.1:{port}/hook"), lines)
}

#[tokio::test]
async fn herald_listen_verifies_v1a_with_the_public_key_and_rejects_a_changed_body() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    let created = app.create_webhook(json!({"url": receiver.url, "signing": "ed25519"})).await;
    app.send_event(json!({"type": "t", "payload": {"amount": 10}})).await;
    let request = receiver.next().await;

    let (_child, url, mut lines) = spawn_listen(&["--public-key", created["public_key"].as_str().unwrap()]).await;
    let client = crate::support::http_client();
    // Herald's request as it was sent, then with its body changed.
    let tampered = String::from_utf8(request.body.to_vec()).unwrap().replace("10", "99");
    for (body, verdict) in [
        (request.body.to_vec(), "   signature: valid ✓ (Standard Webhooks v1a)"),
        (
            tampered.into_bytes(),
            "   signature: INVALID ✗ (Standard Webhooks v1a: wrong secret, or the body was changed)",
        ),
    ] {
        let mut post = client.post(&url).body(body);
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature", "content-type"] {
            post = post.header(name, request.header(name).unwrap());
        }
        assert_eq!(post.send().await.unwrap().status(), 200);
        let printed = tokio::time::timeout(PATIENCE, async {
            loop {
                let line = lines.next_line().await.unwrap().expect("listen exited");
                if line.contains("signature:") {
                    return line;
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(printed, verdict);
    }

    // A key that is not a `whpk_` one is refused before listening.
    let dir = tempfile::tempdir().unwrap();
    let output = run_herald_in(dir.path(), &["listen", "--public-key", created["secret"].as_str().unwrap()], &[]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("public key: must start with `whpk_`"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_an_ed25519_webhook_and_shows_its_public_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let database = format!("sqlite://{}", db.display());
    let (_child, _base) = spawn_herald(&db, &[]).await;
    let url = "http://127.0.0.1:9/hook";
    let created: Value = serde_json::from_str(
        &run_herald(&["webhooks", "create", "--url", url, "--signing", "ed25519", "--json", "--database", &database])
            .await,
    )
    .unwrap();
    let public_key = created["public_key"].as_str().unwrap();
    assert!(public_key.starts_with("whpk_"), "{created}");
    let id = created["id"].as_str().unwrap();
    // The value of a `key  value` row of a details table.
    let row = |table: &str, name: &str| {
        table.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned())).unwrap_or_default()
    };
    let shown = run_herald(&["webhooks", "show", id, "--database", &database]).await;
    assert_eq!(row(&shown, "public key "), public_key, "{shown}");

    let rotated = run_herald(&["webhooks", "rotate-secret", id, "--database", &database]).await;
    assert!(row(&rotated, "public key ").starts_with("whpk_"), "{rotated}");
    assert_ne!(row(&rotated, "public key "), public_key);
    assert_eq!(row(&rotated, "previous public key "), public_key, "{rotated}");
}
