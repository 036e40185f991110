//! `POST /pa/set_webhook` (seed 002): every rule of the Viber Bot API's
//! webhook registration, and the bot auth tokens it takes (issue
//! "Hardening", item 5): made by `POST /v1/viber/auth-tokens`, good for
//! `/pa/set_webhook` and nothing in `/v1`, never shown again.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{OPERATOR_TOKEN, Receiver, Reply, TestApp, viberbot_accepts};

async fn set_webhook(app: &TestApp, token: Option<&str>, body: Value) -> Value {
    let mut request = app.http.post(format!("{}/pa/set_webhook", app.base)).body(body.to_string());
    if let Some(token) = token {
        request = request.header("X-Viber-Auth-Token", token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200, "set_webhook always answers 200");
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

async fn viber_event(app: &TestApp, event_type: &str) -> u64 {
    let mut payload = json!({"event": event_type, "timestamp": 1457764197627u64, "message_token": 4912661846655238145u64,
        "user_id": "01234567890A=", "sender": {"id": "01234567890A=", "name": "John McClane", "avatar": "http://avatar.example.com"}});
    if event_type == "message" {
        // The SDK's parser wants the message itself.
        payload["message"] = json!({"type": "text", "text": "hi"});
    }
    app.send_event(json!({"type": event_type, "payload": payload})).await["deliveries"].as_u64().unwrap()
}

#[tokio::test]
async fn registering_verifies_the_url_and_filters_events() {
    let app = TestApp::spawn().await;
    let mut bot = Receiver::start().await;
    let token = app.viber_token().await;
    let asked = json!(["delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started"]);
    let reply = set_webhook(
        &app,
        Some(&token),
        json!({"url": bot.url, "event_types": asked, "send_name": true, "send_photo": true}),
    )
    .await;
    assert_eq!(reply, json!({"status": 0, "status_message": "ok", "event_types": asked}));

    // Before accepting, Herald sent the verification callback, signed.
    let check = bot.next().await;
    assert_eq!(check.json()["event"], "webhook");
    assert_eq!(check.json()["timestamp"], app.now().0, "the callback's time in ms, on the manual clock");
    viberbot_accepts(&token, &check).await;

    assert_eq!(viber_event(&app, "delivered").await, 1);
    let request = bot.next().await;
    viberbot_accepts(&token, &request).await;
    assert_eq!(request.json()["sender"]["name"], "John McClane", "send_name keeps names");

    // Narrow it to the mandatory events only.
    let reply = set_webhook(&app, Some(&token), json!({"url": bot.url, "event_types": []})).await;
    assert_eq!(reply, json!({"status": 0, "status_message": "ok", "event_types": ["subscribed", "unsubscribed"]}));
    let check = bot.next().await;
    assert_eq!(check.json()["event"], "webhook", "a new verification callback");
    viberbot_accepts(&token, &check).await;
    assert_eq!(viber_event(&app, "delivered").await, 0);
    assert_eq!(viber_event(&app, "message").await, 1, "message is mandatory");
    let request = bot.next().await;
    assert_eq!(request.json()["sender"].get("name"), None, "send_name defaults to false");
    assert_eq!(request.json()["sender"].get("avatar"), None, "send_photo defaults to false");
    assert_eq!(viber_event(&app, "subscribed").await, 1);
    let subscribed = bot.next().await;
    assert_eq!(subscribed.json()["event"], "subscribed");
    // (This test's payloads are too thin for the SDK's parser, so the
    // signature is checked here by hand.)
    let signature = crate::support::hex_hmac(token.as_bytes(), &subscribed.body);
    assert_eq!(subscribed.header("x-viber-content-signature"), Some(signature.as_str()));

    // Absent event_types: everything.
    let reply = set_webhook(&app, Some(&token), json!({"url": bot.url})).await;
    assert_eq!(reply["event_types"], asked);
    let check = bot.next().await;
    assert_eq!(check.json()["event"], "webhook", "a new verification callback");
    viberbot_accepts(&token, &check).await;
    assert_eq!(viber_event(&app, "seen").await, 1);
    let seen = bot.next().await;
    assert_eq!(seen.json()["event"], "seen");
    let signature = crate::support::hex_hmac(token.as_bytes(), &seen.body);
    assert_eq!(seen.header("x-viber-content-signature"), Some(signature.as_str()));
    let (_, list) = app.get("/v1/webhooks").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "one webhook per bot token, updated in place");
    app.nothing_more(&mut bot, list["data"][0]["id"].as_str().unwrap()).await;

    // An empty url removes it.
    let reply = set_webhook(&app, Some(&token), json!({"url": ""})).await;
    assert_eq!(reply, json!({"status": 0, "status_message": "ok"}));
    assert_eq!(viber_event(&app, "message").await, 0);
    let (_, list) = app.get("/v1/webhooks").await;
    assert_eq!(list["data"], json!([]));
    assert!(bot.drain().is_empty());
}

#[tokio::test]
async fn failures_answer_with_vibers_status_codes() {
    let app = TestApp::spawn().await;
    let refusing = Receiver::start_with(vec![Reply::status(500)]).await;
    let token = app.viber_token().await;
    let cases = [
        (None, json!({"url": refusing.url}), 2, "invalidAuthToken"),
        (Some("not-a-token"), json!({"url": refusing.url}), 2, "invalidAuthToken"),
        (Some(OPERATOR_TOKEN), json!({"url": refusing.url}), 2, "invalidAuthToken"),
        (Some(token.as_str()), json!({"event_types": []}), 4, "missingData"),
        (Some(token.as_str()), json!({"url": refusing.url, "event_types": ["delivered", "teleported"]}), 3, "badData"),
        (Some(token.as_str()), json!({"url": 7}), 3, "badData"),
        (Some(token.as_str()), json!({"url": "ftp://example.com"}), 1, "invalidUrl"),
        (Some(token.as_str()), json!({"url": refusing.url}), 1, "invalidUrl"),
    ];
    for (token, body, status, message) in cases {
        let reply = set_webhook(&app, token, body.clone()).await;
        assert_eq!(reply["status"], status, "{body}: {reply}");
        assert_eq!(reply["status_message"], message, "{body}: {reply}");
    }
    let (_, list) = app.call(Method::GET, "/v1/webhooks", &app.token, None).await;
    assert_eq!(list["data"], json!([]), "a URL that failed verification is not registered");
}

/// The account's viber-bot webhooks as `(id, url)`.
async fn bot_webhooks(app: &TestApp, account_token: &str) -> Vec<(String, String)> {
    let (status, list) = app.call(Method::GET, "/v1/webhooks", account_token, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let webhooks = list["data"].as_array().unwrap().iter().filter(|w| w["profile"] == "viber-bot");
    webhooks.map(|w| (w["id"].as_str().unwrap().to_owned(), w["url"].as_str().unwrap().to_owned())).collect()
}

/// Every `table.column` of the SQLite file where `needle` is stored in
/// clear, and whether the raw bytes of the file and its WAL hold it.
fn places_holding(path: &std::path::Path, needle: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut found = Vec::new();
    for (table, columns) in crate::support::tables_and_columns(&conn) {
        for column in columns {
            let sql = format!("SELECT COUNT(*) FROM \"{table}\" WHERE instr(CAST(\"{column}\" AS TEXT), ?1) > 0");
            let n: i64 = conn.query_row(&sql, [needle], |r| r.get(0)).unwrap();
            if n > 0 {
                found.push(format!("{table}.{column}"));
            }
        }
    }
    for file in [path.to_path_buf(), path.with_extension("db-wal")] {
        let bytes = std::fs::read(&file).unwrap_or_default();
        if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            found.push(format!("raw bytes of {}", file.display()));
        }
    }
    found
}

#[tokio::test]
async fn hardening_5_the_account_api_token_is_refused_at_set_webhook() {
    let app = TestApp::spawn().await;
    let mut bot = Receiver::start().await;
    let reply = set_webhook(&app, Some(&app.token), json!({"url": bot.url})).await;
    assert_eq!(reply["status"], 2, "{reply}");
    assert_eq!(reply["status_message"], "invalidAuthToken", "{reply}");
    assert!(reply["details"].as_str().unwrap().contains("/v1/viber/auth-tokens"), "{reply}");
    assert_eq!(bot_webhooks(&app, &app.token).await, []);
    assert!(bot.drain().is_empty(), "no verification callback was signed with the api token");
}

#[tokio::test]
async fn hardening_5_a_bot_token_opens_nothing_in_v1() {
    let app = TestApp::spawn().await;
    let mut bot = Receiver::start().await;
    let token = app.viber_token().await;
    assert_eq!(set_webhook(&app, Some(&token), json!({"url": bot.url})).await["status"], 0);
    viberbot_accepts(&token, &bot.next().await).await;
    let (id, _) = bot_webhooks(&app, &app.token).await.remove(0);
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/webhooks".into(), None),
        (Method::POST, "/v1/webhooks".into(), Some(json!({"url": bot.url}))),
        (Method::GET, format!("/v1/webhooks/{id}"), None),
        (Method::DELETE, format!("/v1/webhooks/{id}"), None),
        (Method::GET, format!("/v1/webhooks/{id}/secret"), None),
        (Method::POST, format!("/v1/webhooks/{id}/rotate-secret"), None),
        (Method::POST, "/v1/events".into(), Some(json!({"type": "message", "payload": {}}))),
        (Method::GET, "/v1/deliveries".into(), None),
        (Method::GET, "/v1/stats".into(), None),
        (Method::GET, "/v1/account".into(), None),
        (Method::GET, "/v1/event-types".into(), None),
        (Method::GET, "/v1/egress".into(), None),
        (Method::POST, "/v1/accounts".into(), Some(json!({"name": "x"}))),
        (Method::POST, "/v1/viber/auth-tokens".into(), None),
    ];
    for (method, path, body) in cases {
        let (status, answer) = app.call(method.clone(), &path, &token, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {answer}");
        assert_eq!(answer["code"], "unauthorized", "{method} {path}");
        assert!(answer["message"].as_str().unwrap().contains("/pa/set_webhook"), "{method} {path}: {answer}");
    }
    assert_eq!(bot_webhooks(&app, &app.token).await.len(), 1, "the webhook is still there");
}

#[tokio::test]
async fn hardening_5_the_secret_endpoint_never_shows_a_bot_token() {
    let app = TestApp::spawn().await;
    let mut bot = Receiver::start().await;
    let token = app.viber_token().await;
    assert_eq!(set_webhook(&app, Some(&token), json!({"url": bot.url})).await["status"], 0);
    bot.next().await;
    let (id, _) = bot_webhooks(&app, &app.token).await.remove(0);

    let (status, body) = app.get(&format!("/v1/webhooks/{id}/secret")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "conflict");
    assert!(!body.to_string().contains(&token), "{body}");
    assert!(!body.to_string().contains(&app.token), "{body}");

    // A random secret would break the bot's checks: refused, with the way to
    // change the token instead.
    let (status, body) = app.post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().unwrap().contains("/v1/viber/auth-tokens"), "{body}");
    assert!(!body.to_string().contains(&token), "{body}");
    let (status, body) = app.post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({"secret": "chosen"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // It still signs with the bot token.
    assert_eq!(viber_event(&app, "message").await, 1);
    viberbot_accepts(&token, &bot.next().await).await;

    // Creating a token shows it once, and nothing else of it comes back.
    let (status, created) = app.call(Method::POST, "/v1/viber/auth-tokens", &app.token, None).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["token"].as_str().unwrap().len() >= 32);
    assert!(created["created_at"].is_string(), "{created}");
    let (status, body) = app.call(Method::POST, "/v1/viber/auth-tokens", OPERATOR_TOKEN, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn hardening_5_two_bot_tokens_manage_two_webhooks() {
    let app = TestApp::spawn().await;
    let (mut first, mut second) = (Receiver::start().await, Receiver::start().await);
    let (one, two) = (app.viber_token().await, app.viber_token().await);
    assert_ne!(one, two);
    assert_eq!(set_webhook(&app, Some(&one), json!({"url": first.url})).await["status"], 0);
    viberbot_accepts(&one, &first.next().await).await;
    assert_eq!(set_webhook(&app, Some(&two), json!({"url": second.url})).await["status"], 0);
    viberbot_accepts(&two, &second.next().await).await;
    let mut urls: Vec<String> = bot_webhooks(&app, &app.token).await.into_iter().map(|(_, url)| url).collect();
    urls.sort();
    let mut expected = vec![first.url.clone(), second.url.clone()];
    expected.sort();
    assert_eq!(urls, expected);

    // Each bot gets the account's events, signed with its own token.
    assert_eq!(viber_event(&app, "message").await, 2);
    viberbot_accepts(&one, &first.next().await).await;
    viberbot_accepts(&two, &second.next().await).await;

    // Updating one leaves the other alone.
    assert_eq!(set_webhook(&app, Some(&one), json!({"url": first.url, "event_types": []})).await["status"], 0);
    first.next().await;
    assert_eq!(viber_event(&app, "delivered").await, 1, "only the second bot still wants delivered");
    viberbot_accepts(&two, &second.next().await).await;

    // An empty url removes only that token's webhook.
    assert_eq!(set_webhook(&app, Some(&one), json!({"url": ""})).await["status"], 0);
    let left = bot_webhooks(&app, &app.token).await;
    assert_eq!(left.iter().map(|(_, url)| url.as_str()).collect::<Vec<_>>(), [second.url.as_str()]);
    assert_eq!(viber_event(&app, "message").await, 1);
    viberbot_accepts(&two, &second.next().await).await;
    assert!(first.drain().is_empty());
}

#[tokio::test]
async fn hardening_5_another_accounts_bot_token_cannot_touch_this_accounts_webhook() {
    let app = TestApp::spawn().await;
    let (mut bot, mut theirs) = (Receiver::start().await, Receiver::start().await);
    let token = app.viber_token().await;
    assert_eq!(set_webhook(&app, Some(&token), json!({"url": bot.url})).await["status"], 0);
    bot.next().await;
    let mine = bot_webhooks(&app, &app.token).await;

    let other = app.new_account().await;
    let intruder = app.viber_token_of(&other.token).await;
    assert_eq!(
        set_webhook(&app, Some(&intruder), json!({"url": ""})).await["status"],
        0,
        "nothing of theirs to remove"
    );
    assert_eq!(set_webhook(&app, Some(&intruder), json!({"url": theirs.url})).await["status"], 0);
    viberbot_accepts(&intruder, &theirs.next().await).await;

    assert_eq!(bot_webhooks(&app, &app.token).await, mine, "this account's webhook is untouched");
    assert_eq!(bot_webhooks(&app, &other.token).await.len(), 1, "theirs went to their account");
    assert_eq!(viber_event(&app, "message").await, 1);
    viberbot_accepts(&token, &bot.next().await).await;
    assert!(theirs.drain().is_empty(), "this account's events never reach the other account's bot");
}

#[tokio::test]
async fn hardening_5_the_database_never_holds_the_account_api_token_in_clear() {
    if crate::support::skip_on_postgres("reads the SQLite file's bytes for the token") {
        return;
    }
    let app = TestApp::spawn().await;
    let mut bot = Receiver::start().await;
    // What the old code did: register with the account's API token.
    set_webhook(&app, Some(&app.token), json!({"url": bot.url})).await;
    assert_eq!(places_holding(&app.database_path(), &app.token), Vec::<String>::new());

    let token = app.viber_token().await;
    assert_eq!(set_webhook(&app, Some(&token), json!({"url": bot.url})).await["status"], 0);
    bot.drain();
    assert_eq!(viber_event(&app, "message").await, 1);
    viberbot_accepts(&token, &bot.next().await).await;
    assert_eq!(places_holding(&app.database_path(), &app.token), Vec::<String>::new());
    // The bot token is kept in clear only where it must be: as the key its
    // webhook signs with (the tokens table has its hash).
    let clear = places_holding(&app.database_path(), &token);
    assert!(clear.contains(&"webhooks.secret".to_owned()), "{clear:?}");
    assert!(clear.iter().all(|place| place == "webhooks.secret" || place.starts_with("raw bytes")), "{clear:?}");
}

/// A database written before bot tokens: its viber-bot webhook signs with
/// the account's API token (as `/pa/set_webhook` stored it). It keeps
/// signing with those bytes, so the bot still verifies, but the token is
/// never shown again, and `/pa/set_webhook` no longer takes it.
#[tokio::test]
async fn hardening_5_an_old_webhook_keyed_by_the_api_token_keeps_signing_but_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let url = format!("sqlite://{}", db.display());
    let app = TestApp::spawn_with(|config| config.database = url).await;
    let mut bot = Receiver::start().await;
    // The API no longer takes a token as a secret; an older Herald's
    // `/pa/set_webhook` stored one, as this does by hand.
    let (status, _) =
        app.post("/v1/webhooks", json!({"url": bot.url, "profile": "viber-bot", "secret": app.token})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let old = app.create_webhook(json!({"url": bot.url, "profile": "viber-bot", "secret": "placeholder"})).await;
    let id = old["id"].as_str().unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE webhooks SET secret = ?1 WHERE id = ?2", [app.token.as_str(), id]).unwrap();
    assert_eq!(viber_event(&app, "message").await, 1);
    viberbot_accepts(&app.token, &bot.next().await).await;

    let (status, body) = app.get(&format!("/v1/webhooks/{id}/secret")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(!body.to_string().contains(&app.token), "{body}");
    assert_eq!(set_webhook(&app, Some(&app.token), json!({"url": ""})).await["status"], 2);
    assert_eq!(bot_webhooks(&app, &app.token).await.len(), 1, "the api token no longer manages it");
    // Nor once it has moved to a profile whose secrets are shown.
    let (status, body) =
        app.call(Method::PATCH, &format!("/v1/webhooks/{id}"), &app.token, Some(json!({"profile": "business"}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.get(&format!("/v1/webhooks/{id}/secret")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(!body.to_string().contains(&app.token), "{body}");
}

/// Each start names the webhooks that still sign with an API token (from
/// before bot tokens), so the operator is told to move them; a bot token's
/// webhook is not among them.
#[tokio::test]
async fn hardening_5_a_start_names_the_webhooks_that_sign_with_an_api_token() {
    use herald::model::Webhook;
    use herald::profile::Profile;
    use herald::signing::token_hash;
    use herald::store::{SqliteStore, Store};

    let now = crate::claims::NOW;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("herald.db")).unwrap();
    let (account, api_token) = store.bootstrap(None, now).await.unwrap().default_account.unwrap();
    store.create_viber_bot_token(&account.id, &token_hash("hrld_bot"), now).await.unwrap();
    let webhook = |id: &str, profile: Profile, secret: &str| Webhook {
        id: id.into(),
        ..Webhook::new(&account.id, "http://127.0.0.1:9/hook", profile, secret.into(), now)
    };
    store.create_webhook(webhook("wh_old", Profile::ViberBot, &api_token)).await.unwrap();
    store.create_webhook(webhook("wh_moved", Profile::Business, &api_token)).await.unwrap();
    store.create_webhook(webhook("wh_bot", Profile::ViberBot, "hrld_bot")).await.unwrap();
    store.create_webhook(webhook("wh_plain", Profile::Business, "s3cret")).await.unwrap();
    store.create_webhook(webhook("wh_unsigned", Profile::Business, "")).await.unwrap();

    let mut named = store.bootstrap(None, now).await.unwrap().webhooks_keyed_by_api_tokens;
    named.sort();
    let expected = vec![(account.id.clone(), "wh_moved".to_owned()), (account.id.clone(), "wh_old".to_owned())];
    assert_eq!(named, expected);
}

/// A bot registered without `event_types` gets every Viber callback, but
/// none of the account's other channels: its token is held in clear by the
/// bot, and before this it could pull the account's every event.
#[tokio::test]
async fn a_bot_without_a_filter_gets_every_viber_callback_and_nothing_else() {
    let app = TestApp::spawn().await;
    let mut bot = Receiver::start().await;
    let token = app.viber_token().await;
    let reply = set_webhook(&app, Some(&token), json!({"url": bot.url})).await;
    assert_eq!(reply["status"], 0, "{reply}");
    bot.next().await;
    for event_type in ["delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started", "message"] {
        assert_eq!(viber_event(&app, event_type).await, 1, "{event_type}");
        assert_eq!(bot.next().await.json()["event"], event_type);
    }
    for other in ["whatsapp:message:status", "viber:message:status", "number:unsubscribe"] {
        let outcome = app.send_event(json!({"type": other, "payload": {"id": "x"}})).await;
        assert_eq!(outcome["deliveries"], 0, "{other} reached the bot");
    }
}

/// The Viber Bot API takes only HTTP 200 as an answer to the verification
/// callback: a 204 (a success to most servers) leaves the bot unregistered.
#[tokio::test]
async fn a_204_to_the_verification_callback_is_refused() {
    let app = TestApp::spawn().await;
    let mut bot = Receiver::start_with(vec![Reply::status(204)]).await;
    let token = app.viber_token().await;
    let reply = set_webhook(&app, Some(&token), json!({"url": bot.url})).await;
    assert_eq!((&reply["status"], &reply["status_message"]), (&json!(1), &json!("invalidUrl")), "{reply}");
    assert_eq!(bot.next().await.json()["event"], "webhook", "the callback was sent and answered 204");
    let (_, list) = app.call(Method::GET, "/v1/webhooks", &app.token, None).await;
    assert_eq!(list["data"], json!([]), "{list}");
}

/// viber-bot's defaults, from the profile table: a 10 s timeout and 10
/// attempts, the waits 5 s and then three times the one before, at most
/// 1 h, each spread by up to ±20 % (as the source's preset says; the
/// README's table gives the nominal waits).
#[tokio::test]
async fn a_viber_bot_webhook_times_out_after_10_s_and_waits_5_s_tripling_to_an_hour() {
    let app = TestApp::spawn_driven().await;
    let mut bot = Receiver::start().await;
    let token = app.viber_token().await;
    assert_eq!(set_webhook(&app, Some(&token), json!({"url": bot.url})).await["status"], 0);
    bot.next().await;
    let (_, list) = app.call(Method::GET, "/v1/webhooks", &app.token, None).await;
    let webhook = &list["data"][0];
    assert_eq!((&webhook["profile"], &webhook["effective_timeout_ms"]), (&json!("viber-bot"), &json!(10_000)));

    // Every attempt fails; each wait is read from the log and walked.
    for _ in 0..10 {
        bot.then(Reply::status(500));
    }
    assert_eq!(viber_event(&app, "delivered").await, 1);
    assert_eq!(app.run_until_idle().await, 1);
    let (_, log) = app.get("/v1/deliveries").await;
    let id = log["data"][0]["id"].as_str().unwrap().to_owned();
    for wait_s in [5, 15, 45, 135, 405, 1215, 3600, 3600, 3600] {
        let delivery = app.delivery(&id).await;
        let at = crate::support::unix_ms(delivery["next_attempt_at"].as_str().unwrap());
        let wait_ms = at - app.now().0;
        let nominal = wait_s * 1000;
        assert!((nominal * 8 / 10..=nominal * 12 / 10).contains(&wait_ms), "{wait_ms} ms for a {wait_s} s wait");
        app.clock.set(herald::model::Timestamp(at - 1));
        assert_eq!(app.run_until_idle().await, 0, "1 ms before the {wait_s} s wait ends");
        app.clock.set(herald::model::Timestamp(at));
        assert_eq!(app.run_until_idle().await, 1, "when the {wait_s} s wait ends");
    }
    let delivery = app.delivery(&id).await;
    assert_eq!((&delivery["status"], &delivery["n_attempts"]), (&json!("failed"), &json!(10)), "{delivery}");
    assert_eq!(bot.drain().len(), 10);
}
