//! Target safety: without --allow-private-targets, non-public addresses are
//! refused when a webhook is saved and again when a connection is made.

use serde_json::json;

use crate::support::{Receiver, TestApp};

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let app = TestApp::spawn_with(|config| config.allow_private_targets = false).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://169.254.169.254/latest",
        "http://localhost:8080/",
    ] {
        let (status, body) = app.post("/v1/webhooks", json!({"url": url})).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(body["message"].as_str().unwrap().contains("not a public address"), "{body}");
    }

    // The connect-time check (names resolving to loopback, rebinding) is
    // covered in http_client's own tests; here nothing was stored.
    let (_, list) = app.get("/v1/webhooks").await;
    assert_eq!(list["data"], json!([]));
}

/// A compose URL takes its host from the payload, so the save-time check
/// (placeholders filled with `x`) cannot see it: the connect-time guard
/// must refuse the rendered host, however the address is spelled, and
/// record the attempt as `blocked`.
#[tokio::test]
async fn a_compose_host_from_the_payload_is_blocked_at_connect_time() {
    let app = TestApp::spawn_driven_with(|config| config.allow_private_targets = false).await;
    // The receiver listens on loopback: a host that got past the guard
    // would reach it, on the port the template names.
    let mut receiver = Receiver::start().await;
    let port = receiver.url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().to_owned();
    let template = json!({"method": "POST", "body": "{}", "body_format": "json"});
    let created = app
        .create_webhook(json!({
            "url": format!("http://@{{{{payload.host}}}}:{port}/hook"),
            "profile": "compose",
            "template": template,
        }))
        .await;
    let webhook_id = created["id"].as_str().unwrap();
    let hosts = ["127.0.0.1", "0x7f000001", "2130706433", "0177.0.0.1", "10.0.0.1"];
    for host in hosts {
        let event = json!({"id": host, "type": "t", "payload": {"host": host}, "webhook_id": webhook_id});
        assert_eq!(app.send_event(event).await["deliveries"], 1, "{host}");
    }
    assert_eq!(app.run_until_idle().await, hosts.len());

    for host in hosts {
        let delivery = app.delivery_of(host).await;
        assert_eq!(delivery["n_attempts"], 1, "{host}: {delivery}");
        let attempt = &delivery["attempts"][0];
        assert_eq!(attempt["error_class"], "blocked", "{host}: {delivery}");
        assert_eq!(attempt["status_code"], json!(null), "{host}: {delivery}");
        let message = attempt["error_message"].as_str().unwrap();
        assert!(message.contains("is not a public address"), "{host}: {message}");
    }
    let reached: Vec<String> = receiver.drain().iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
    assert!(reached.is_empty(), "blocked hosts reached the loopback receiver: {reached:?}");
}

/// The environment-configured webhook is held to the same rule: a private
/// `WEBHOOK_URL` without `--allow-private-targets` stops Herald at start.
#[tokio::test]
async fn a_private_webhook_url_is_refused_at_start() {
    for url in ["http://127.0.0.1:9/hook", "http://10.0.0.1/hook", "http://localhost/hook", "http://[::1]/hook"] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = herald::config::ServeConfig::from_args(herald::config::ServeArgs {
            listen: Some("127.0.0.1:0".into()),
            database: Some(format!("sqlite://{}", dir.path().join("h.db").display())),
            webhook_url: Some(url.into()),
            ..Default::default()
        })
        .unwrap();
        config.admin_token = Some(crate::support::OPERATOR_TOKEN.into());
        let clock = std::sync::Arc::new(herald::clock::ManualClock::new(herald::model::Timestamp(1_800_000_000_000)));
        let err = herald::app::Application::build(config, clock).await.err().expect("a private WEBHOOK_URL is refused");
        let message = format!("{err:#}");
        assert!(message.contains("WEBHOOK_URL") && message.contains("not a public address"), "{url}: {message}");
    }
}

/// The other ways a URL is set are held to the same rule: a PATCH, and
/// `/pa/set_webhook` (before its verification callback could go out).
#[tokio::test]
async fn a_patch_or_set_webhook_to_a_private_address_is_refused() {
    let app = TestApp::spawn_driven_with(|config| config.allow_private_targets = false).await;
    // Saved, never contacted: the engine is not run and no event is sent.
    let created = app.create_webhook(json!({"url": "https://receiver.example.com/hook"})).await;
    let path = format!("/v1/webhooks/{}", created["id"].as_str().unwrap());
    for url in ["http://127.0.0.1:9/hook", "http://0x7f000001/hook", "http://10.0.0.1/hook", "http://[::1]/hook"] {
        let refused = app.call(axum::http::Method::PATCH, &path, &app.token, Some(json!({"url": url}))).await;
        crate::support::check_error(refused, 400, "invalid_field", "not a public address");
    }
    let (_, still) = app.get(&path).await;
    assert_eq!(still["url"], "https://receiver.example.com/hook");

    let mut bot = Receiver::start().await;
    let token = app.viber_token().await;
    let response = app
        .http
        .post(format!("{}/pa/set_webhook", app.base))
        .header("X-Viber-Auth-Token", &token)
        .body(json!({"url": bot.url}).to_string())
        .send()
        .await
        .unwrap();
    let reply: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!((&reply["status"], &reply["status_message"]), (&json!(1), &json!("invalidUrl")), "{reply}");
    assert!(bot.drain().is_empty(), "the verification callback reached a loopback receiver");
    let (_, list) = app.get("/v1/webhooks").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
}
