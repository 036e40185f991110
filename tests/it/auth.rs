//! Tokens and account isolation: missing or wrong tokens are 401, another
//! account's ids are 404 exactly like ids that do not exist.

use axum::http::Method;
use serde_json::{Value, json};

use crate::support::{OPERATOR_TOKEN, Receiver, TestApp, check_error};

#[tokio::test]
async fn every_v1_call_needs_a_known_token() {
    let app = TestApp::spawn().await;
    for (method, path) in [
        (Method::GET, "/v1/webhooks"),
        (Method::POST, "/v1/webhooks"),
        (Method::POST, "/v1/events"),
        (Method::GET, "/v1/deliveries"),
        (Method::POST, "/v1/accounts"),
        (Method::POST, "/v1/viber/auth-tokens"),
    ] {
        let (status, body) = app.call_raw(method.clone(), path, None, "{}").await;
        assert_eq!(status, 401, "{method} {path}");
        assert_eq!(body["code"], "unauthorized");
        check_error(app.call_raw(method.clone(), path, Some("hrld_wrong"), "{}").await, 401, "unauthorized", "token");
    }
    let (status, body) = app.call_raw(Method::GET, "/healthz", None, "").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn only_the_operator_creates_accounts_and_only_accounts_use_the_rest() {
    let app = TestApp::spawn().await;
    check_error(
        app.call(Method::POST, "/v1/accounts", &app.token, Some(json!({"name": "x"}))).await,
        403,
        "forbidden",
        "operator",
    );
    check_error(app.call(Method::GET, "/v1/webhooks", OPERATOR_TOKEN, None).await, 403, "forbidden", "account");
    check_error(
        app.call(Method::POST, "/v1/viber/auth-tokens", OPERATOR_TOKEN, None).await,
        403,
        "forbidden",
        "account",
    );

    let account = app.new_account().await;
    assert!(account.id.starts_with("acc_"));
    let (status, list) = app.call(Method::GET, "/v1/webhooks", &account.token, None).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"], json!([]));
}

#[tokio::test]
async fn another_accounts_ids_are_not_found() {
    let mut app = TestApp::spawn().await;
    let mut receiver = Receiver::start_with(vec![crate::support::Reply::status(500)]).await;
    let webhook = app.create_webhook(json!({"url": receiver.url, "retry": {"schedule": []}})).await;
    let wh = webhook["id"].as_str().unwrap();
    let sent = app.send_event(json!({"id": "mine", "type": "t", "payload": {}})).await;
    receiver.next().await;
    app.next_attempt().await;
    let delivery = app.delivery_of(sent["id"].as_str().unwrap()).await;
    let dlv = delivery["id"].as_str().unwrap();

    let intruder = app.new_account().await;
    let token = intruder.token.as_str();
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/v1/webhooks/{wh}"), None),
        (Method::PATCH, format!("/v1/webhooks/{wh}"), Some(json!({"enabled": false}))),
        (Method::DELETE, format!("/v1/webhooks/{wh}"), None),
        (Method::GET, format!("/v1/webhooks/{wh}/secret"), None),
        (Method::POST, format!("/v1/webhooks/{wh}/rotate-secret"), None),
        (Method::POST, format!("/v1/webhooks/{wh}/test"), None),
        (Method::GET, format!("/v1/deliveries/{dlv}"), None),
        (Method::POST, format!("/v1/deliveries/{dlv}/retry"), None),
        (Method::GET, "/v1/events/mine".to_owned(), None),
        (Method::POST, "/v1/events".to_owned(), Some(json!({"type": "t", "payload": {}, "webhook_id": wh}))),
    ];
    for (method, path, body) in cases {
        let (status, theirs) = app.call(method.clone(), &path, token, body.clone()).await;
        assert_eq!(status, 404, "{method} {path}: {theirs}");
        assert_eq!(theirs["code"], "not_found");
        // Indistinguishable from an id that does not exist at all.
        let missing = path.replace(wh, "wh_01ZZZZZZZZZZZZZZZZZZZZZZZZ").replace(dlv, "dlv_01ZZZZZZZZZZZZZZZZZZZZZZZZ");
        let missing = missing.replace("mine", "nobody");
        let body = body.map(|b| {
            let text = b.to_string().replace(wh, "wh_01ZZZZZZZZZZZZZZZZZZZZZZZZ");
            serde_json::from_str::<Value>(&text).unwrap()
        });
        let (status, nothing) = app.call(method.clone(), &missing, &app.token, body).await;
        assert_eq!(status, 404, "{method} {missing}");
        assert_eq!(nothing["code"], "not_found", "{method} {missing}");
        assert_eq!(
            theirs["message"].as_str().unwrap().split('`').next(),
            nothing["message"].as_str().unwrap().split('`').next()
        );
    }
    let (_, listed) = app.call(Method::GET, "/v1/deliveries", token, None).await;
    assert_eq!(listed["data"], json!([]));
    // Nothing of the owner's changed: the webhook is there and enabled, its
    // secret is the one it had (the rotate did nothing), the failed delivery
    // was not tried again (the retry did nothing), and the receiver got
    // neither a test event nor a retry.
    let (status, still) = app.get(&format!("/v1/webhooks/{wh}")).await;
    assert_eq!(status, 200);
    assert_eq!(still["enabled"], true);
    let (_, secret) = app.get(&format!("/v1/webhooks/{wh}/secret")).await;
    assert_eq!(secret["secret"], webhook["secret"]);
    assert_eq!(secret["previous_secret"], Value::Null);
    let after = app.delivery(dlv).await;
    assert_eq!((&after["status"], &after["n_attempts"]), (&json!("failed"), &json!(1)), "{after}");
    app.nothing_more(&mut receiver, wh).await;
    let (_, log) = app.get("/v1/deliveries?limit=250").await;
    assert_eq!(log["data"].as_array().unwrap().len(), 2, "the owner's delivery and the marker: {log}");
}

/// Token kinds (migration 6): a database from before them holds only API
/// tokens, which stay what they were; the store tells a Viber bot token
/// from an account's API token, from the database and from its cache.
#[tokio::test]
async fn tokens_from_before_token_kinds_stay_api_tokens() {
    use herald::model::Principal;
    use herald::signing::token_hash;
    use herald::store::{SqliteStore, Store};

    let now = crate::claims::NOW;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    let store = SqliteStore::open(&path).unwrap();
    store.bootstrap(Some("hrld_op".into()), now).await.unwrap();
    let account = store.create_account("a", &token_hash("hrld_account"), now).await.unwrap();
    drop(store);
    crate::attempt_log::rewrite_at_schema_version(&path, 5);

    let store = SqliteStore::open(&path).unwrap();
    let id = account.id;
    store.create_viber_bot_token(&id, &token_hash("hrld_bot"), now).await.unwrap();
    for _ in 0..2 {
        assert_eq!(store.authenticate(&token_hash("hrld_op")).await.unwrap(), Some(Principal::Operator));
        assert_eq!(
            store.authenticate(&token_hash("hrld_account")).await.unwrap(),
            Some(Principal::Account(id.clone()))
        );
        assert_eq!(store.authenticate(&token_hash("hrld_bot")).await.unwrap(), Some(Principal::ViberBot(id.clone())));
    }
    assert!(store.create_viber_bot_token("acc_nobody", &token_hash("hrld_x"), now).await.is_err());
}

/// `GET /v1/account` shows the caller's own account, with its settings at
/// their defaults: not strict, disabling after 432 000 s (five days).
#[tokio::test]
async fn get_account_shows_the_callers_own_account() {
    let app = TestApp::spawn().await;
    let other = app.new_account().await;
    let (status, theirs) = app.call(Method::GET, "/v1/account", &other.token, None).await;
    assert_eq!(status, 200, "{theirs}");
    assert_eq!(theirs["id"], other.id.as_str());
    assert_eq!(theirs["name"], "other");
    assert_eq!(theirs["strict_event_types"], false, "{theirs}");
    assert_eq!(theirs["disable_after_seconds"], 432_000, "{theirs}");
    let (_, mine) = app.get("/v1/account").await;
    assert_ne!(mine["id"], theirs["id"]);
    assert_eq!(mine["name"], "default", "{mine}");
    check_error(app.call(Method::GET, "/v1/account", OPERATOR_TOKEN, None).await, 403, "forbidden", "account");
}
