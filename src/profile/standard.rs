//! The `standard` profile: Standard Webhooks, byte-compatible with the spec
//! and its official libraries. Body `{"type","timestamp","data"}`, headers
//! `webhook-id` (the event id, stable across retries and webhooks),
//! `webhook-timestamp` (seconds, per attempt) and `webhook-signature`.

use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderName, HeaderValue};

use super::{OutgoingRequest, ProfileSpec, SecretKind, json_string};
use crate::model::{DueDelivery, Timestamp};
use crate::signing;

static WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
static WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
static WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

pub(super) const SPEC: ProfileSpec =
    ProfileSpec { name: "standard", retry_preset: "standard", timeout_ms: 15_000, secret: SecretKind::Standard };

pub(super) fn render(due: &DueDelivery, now: Timestamp, request: &mut OutgoingRequest) {
    // The payload is stored as the caller sent it, so the envelope is built
    // around its text rather than re-serialised.
    let mut body = String::with_capacity(48 + due.event_type.len() + due.payload.len());
    body.push_str(r#"{"type":"#);
    body.push_str(&json_string(&due.event_type));
    body.push_str(r#","timestamp":""#);
    due.event_timestamp.write_rfc3339(&mut body);
    body.push_str(r#"","data":"#);
    body.push_str(&due.payload);
    body.push('}');
    let timestamp = now.unix_seconds();
    let signature = signing::standard_signature_header(
        &due.webhook.signing_secrets(now),
        &due.event_id,
        timestamp,
        body.as_bytes(),
    );
    let headers = &mut request.headers;
    headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
    if !headers.iter().any(|(n, _)| n == USER_AGENT) {
        headers.push((USER_AGENT, HeaderValue::from_static(super::USER_AGENT)));
    }
    // Event ids are checked to be visible ASCII at ingest, so these parse.
    if let Ok(id) = HeaderValue::try_from(due.event_id.as_str()) {
        headers.push((WEBHOOK_ID.clone(), id));
    }
    headers.push((WEBHOOK_TIMESTAMP.clone(), HeaderValue::from(timestamp)));
    if let Ok(sig) = HeaderValue::try_from(signature) {
        headers.push((WEBHOOK_SIGNATURE.clone(), sig));
    }
    request.body = body.into();
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::model::{DueDelivery, RetiringSecret, Timestamp, Webhook};
    use crate::profile::Profile;
    use crate::signing;

    fn due(secret: &str, previous: Option<RetiringSecret>) -> DueDelivery {
        DueDelivery {
            delivery_id: "dlv_1".into(),
            n_attempts: 0,
            final_attempt: false,
            event_id: "msg_p5jXN8AQM9LWM0D4loKWxJek".into(),
            event_type: "whatsapp:message:status".into(),
            event_timestamp: Timestamp(1_614_265_330_000),
            payload: r#"{"id":"a418d672","status":"read"}"#.into(),
            webhook: Webhook {
                id: "wh_1".into(),
                headers: BTreeMap::from([("authorization".into(), "Bearer abc".into())]),
                previous_secret: previous,
                ..Webhook::new("acc_1", "http://127.0.0.1:9/hook", Profile::Standard, secret.into(), Timestamp(0))
            }
            .into(),
        }
    }

    #[test]
    fn envelope_headers_and_signature() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let request = Profile::Standard.render(&due(secret, None), Timestamp(1_614_265_330_999), usize::MAX).unwrap();
        let body = std::str::from_utf8(&request.body).unwrap();
        assert_eq!(
            body,
            r#"{"type":"whatsapp:message:status","timestamp":"2021-02-25T15:02:10Z","data":{"id":"a418d672","status":"read"}}"#
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("authorization"), Some("Bearer abc"));
        assert_eq!(request.header("webhook-id"), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"));
        assert_eq!(request.header("webhook-timestamp"), Some("1614265330"));
        let sig = request.header("webhook-signature").unwrap();
        assert!(signing::verify_standard(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body.as_bytes(), sig));
        assert!(request.header("user-agent").unwrap().starts_with("Herald-Webhooks/"));
    }

    #[test]
    fn a_retiring_secret_signs_until_it_expires() {
        let (old, new) = (signing::generate_secret(), signing::generate_secret());
        let previous = Some(RetiringSecret { secret: old.clone(), expires_at: Timestamp(2_000) });
        let d = due(&new, previous);
        // Whether `secret` verifies what was rendered at `now_ms`.
        let verifies = |secret: &str, now_ms: i64| {
            let request = Profile::Standard.render(&d, Timestamp(now_ms), usize::MAX).unwrap();
            let signature = request.header("webhook-signature").unwrap();
            let at = now_ms / 1000;
            signing::verify_standard(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", at, &request.body, signature)
        };
        assert!(verifies(&new, 1_000) && verifies(&old, 1_000), "both verify during the grace");
        assert!(verifies(&new, 2_000), "the new secret verifies after it");
        assert!(!verifies(&old, 2_000), "the old secret no longer verifies after it");
    }
}
