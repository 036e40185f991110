//! Every JSON example in the seed documents, ingested and delivered through
//! its profile to a loopback receiver: the body the receiver gets equals
//! (as JSON) what the seed shows, and the headers and signatures are the
//! seed system's, checked by code Herald did not write where there is some.

use herald::catalogue::{EXAMPLES, Example};
use serde_json::{Value, json};

use crate::support::{Receiver, TestApp, hex_hmac, seed_js_verifier_accepts, viberbot_accepts};

const WWEBJS_SECRET: &str = "my-webhook-secret";
const VIBER_TOKEN: &str = "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9";

async fn deliver(
    app: &TestApp,
    receiver: &mut Receiver,
    webhook: &Value,
    example: &Example,
) -> crate::support::Received {
    let (event_type, payload, timestamp) = example.as_event();
    let mut event = json!({"type": event_type, "payload": payload, "webhook_id": webhook["id"]});
    if let Some(timestamp) = timestamp {
        event["timestamp"] = Value::String(timestamp);
    }
    let sent = app.send_event(event).await;
    assert_eq!(sent["deliveries"], 1, "{}", example.name);
    receiver.next().await
}

fn examples(profile: &str) -> impl Iterator<Item = &'static Example> {
    EXAMPLES.iter().filter(move |e| e.profile == profile)
}

#[tokio::test]
async fn business_examples_arrive_as_the_seeds_show_them_signed_with_the_webhook_id() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    let webhook = app.create_webhook(json!({"url": receiver.url, "profile": "business"})).await;
    assert_eq!(webhook["secret"], "", "business webhooks sign with their id unless given a secret");
    let id = webhook["id"].as_str().unwrap();
    let mut n = 0;
    for example in examples("business") {
        let request = deliver(&app, &mut receiver, &webhook, example).await;
        assert_eq!(request.json(), example.body_json(), "{} {}", example.event_type, example.name);
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("signature"), Some(hex_hmac(id.as_bytes(), &request.body).as_str()));
        n += 1;
    }
    assert_eq!(n, 7);

    // With a secret set, the secret keys the signature instead.
    let mut keyed = Receiver::start().await;
    let webhook = app.create_webhook(json!({"url": keyed.url, "profile": "business", "secret": "s3cret"})).await;
    let request = deliver(&app, &mut keyed, &webhook, examples("business").next().unwrap()).await;
    assert_eq!(request.header("signature"), Some(hex_hmac(b"s3cret", &request.body).as_str()));
}

#[tokio::test]
async fn wwebjs_examples_pass_the_seeds_own_javascript_verifier() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    let webhook = app.create_webhook(json!({"url": receiver.url, "profile": "wwebjs", "secret": WWEBJS_SECRET})).await;
    let mut n = 0;
    for example in examples("wwebjs") {
        let request = deliver(&app, &mut receiver, &webhook, example).await;
        assert_eq!(request.json(), example.body_json(), "{}", example.event_type);
        assert_eq!(request.header("user-agent"), Some("WhatsApp-Web-API/2.0"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        seed_js_verifier_accepts(WWEBJS_SECRET, &request).await;
        n += 1;
    }
    assert_eq!(n, 13);

    // Numbers and keys JavaScript would print differently are sent the way
    // JSON.stringify prints them, so the verifier still agrees.
    let odd =
        json!({"2": "b", "1": "a", "big": 12345678901234567890u64, "float": 1.0, "tiny": 0.0000001, "s": "é\u{2028}"});
    app.send_event(json!({"type": "message_create", "payload": odd, "webhook_id": webhook["id"]})).await;
    let request = receiver.next().await;
    seed_js_verifier_accepts(WWEBJS_SECRET, &request).await;
    assert!(
        std::str::from_utf8(&request.body)
            .unwrap()
            .contains(r#""data":{"1":"a","2":"b","big":12345678901234567000,"float":1,"tiny":1e-7"#)
    );
}

#[tokio::test]
async fn routee_examples_arrive_as_they_are_and_unsigned() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    let webhook = app.create_webhook(json!({"url": receiver.url, "profile": "routee"})).await;
    assert_eq!(webhook["effective_timeout_ms"], 2000);
    let mut n = 0;
    for example in examples("routee") {
        let request = deliver(&app, &mut receiver, &webhook, example).await;
        assert_eq!(request.json(), example.body_json());
        for header in ["signature", "webhook-signature", "x-webhook-signature", "x-viber-content-signature"] {
            assert_eq!(request.header(header), None, "{header}");
        }
        n += 1;
    }
    assert_eq!(n, 1, "seed 003's one status callback");
}

#[tokio::test]
async fn viber_bot_callbacks_pass_the_official_sdk() {
    let app = TestApp::spawn().await;
    let mut receiver = Receiver::start().await;
    let keep_all = json!({"url": receiver.url, "profile": "viber-bot", "secret": VIBER_TOKEN, "send_name": true, "send_photo": true});
    let webhook = app.create_webhook(keep_all).await;
    let mut n = 0;
    for example in examples("viber-bot") {
        let request = deliver(&app, &mut receiver, &webhook, example).await;
        assert_eq!(request.json(), example.body_json(), "{}", example.event_type);
        // The SDK parses each callback as the request class of its event.
        let expected = match example.name.as_str() {
            "message" => "ViberMessageRequest",
            "subscribed" => "ViberSubscribedRequest",
            "unsubscribed" => "ViberUnsubscribedRequest",
            "conversation_started" => "ViberConversationStartedRequest",
            "delivered" => "ViberDeliveredRequest",
            "seen" => "ViberSeenRequest",
            "failed" => "ViberFailedRequest",
            other => panic!("no viber-bot example named {other}"),
        };
        let parsed_as = viberbot_accepts(VIBER_TOKEN, &request).await;
        assert_eq!(parsed_as.trim(), expected, "{}", example.name);
        n += 1;
    }
    assert_eq!(n, 7);
}
