//! The `wwebjs` profile (seed 004): a self-hosted WhatsApp Web API. Body
//! `{"event","data","timestamp"}` in exactly the form `JSON.stringify`
//! gives it, because the seed's verifier computes its HMAC over
//! `JSON.stringify(req.body)`; `User-Agent: WhatsApp-Web-API/2.0`;
//! `X-Webhook-Signature` when the webhook has a secret.

use serde_json::{Map, Value};

use super::{
    OutgoingRequest, ProfileSpec, SecretKind, payload_value, push_default_user_agent, push_header, push_json_body,
};
use crate::model::{DueDelivery, Timestamp};
use crate::{js_json, signing};

pub(super) const SPEC: ProfileSpec =
    ProfileSpec { name: "wwebjs", retry_preset: "wwebjs", timeout_ms: 30_000, secret: SecretKind::Optional };

pub const USER_AGENT: &str = "WhatsApp-Web-API/2.0";

pub(super) fn render(due: &DueDelivery, request: &mut OutgoingRequest) {
    let mut envelope = Map::new();
    envelope.insert("event".into(), Value::String(due.event_type.clone()));
    envelope.insert("data".into(), payload_value(due));
    envelope.insert("timestamp".into(), Value::String(iso_millis(due.event_timestamp)));
    let body = js_json::to_string(&Value::Object(envelope));
    if !due.webhook.secret.is_empty() {
        push_header(request, "x-webhook-signature", signing::hex_hmac(due.webhook.secret.as_bytes(), body.as_bytes()));
    }
    push_default_user_agent(request, USER_AGENT);
    push_json_body(request, body);
}

/// JavaScript's `Date.prototype.toISOString()`: always three fraction digits.
pub fn iso_millis(t: Timestamp) -> String {
    let text = Timestamp(t.0.div_euclid(1000) * 1000).to_rfc3339();
    format!("{}.{:03}Z", text.trim_end_matches('Z'), t.0.rem_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_millis_matches_to_iso_string() {
        assert_eq!(iso_millis(Timestamp(1_727_784_000_000)), "2024-10-01T12:00:00.000Z");
        assert_eq!(iso_millis(Timestamp(1_727_784_001_042)), "2024-10-01T12:00:01.042Z");
    }
}
