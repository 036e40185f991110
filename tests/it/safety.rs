//! Target safety: without --allow-private-targets, non-public addresses are
//! refused when a webhook is saved and again when a connection is made.

use serde_json::json;

use crate::support::TestApp;

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
