//! The `business` profile (seeds 000 and 001): the Viber and WhatsApp
//! business-messaging callbacks. Body `{"event","payload"}`, except the
//! number-unsubscribe notification, which the seed shows bare. Header
//! `Signature`: lowercase hex HMAC-SHA256 of the body, keyed by the
//! webhook's secret or, when none is set, its id.

use super::{
    OutgoingRequest, ProfileSpec, SecretKind, hmac_key, json_string, push_default_user_agent, push_header,
    push_json_body,
};
use crate::model::DueDelivery;
use crate::signing;

pub(super) const SPEC: ProfileSpec = ProfileSpec {
    name: "business",
    retry_preset: "business",
    timeout_ms: 3_000,
    secret: SecretKind::OptionalOrWebhookId,
};

/// Event types whose payload is the whole body, as the seed shows them.
pub const BARE_EVENT_TYPES: &[&str] = &["number:unsubscribe"];

pub(super) fn render(due: &DueDelivery, request: &mut OutgoingRequest) {
    let body = if BARE_EVENT_TYPES.contains(&due.event_type.as_str()) {
        due.payload.to_string()
    } else {
        // The payload's own text, so the receiver gets it byte for byte.
        format!(r#"{{"event":{},"payload":{}}}"#, json_string(&due.event_type), due.payload)
    };
    sign_and_attach(due, request, body);
}

/// Attaches a JSON body and its `Signature` header (shared with `compose`).
pub(super) fn sign_and_attach(due: &DueDelivery, request: &mut OutgoingRequest, body: String) {
    push_header(request, "signature", signing::hex_hmac(hmac_key(&due.webhook), body.as_bytes()));
    push_default_user_agent(request, super::USER_AGENT);
    push_json_body(request, body);
}
