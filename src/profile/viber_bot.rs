//! The `viber-bot` profile (seed 002): Viber Bot API callbacks. The body is
//! the Viber callback object (`event` inside it, `timestamp` in ms), the
//! user's name and avatar removed unless `send_name` / `send_photo` are set,
//! and `X-Viber-Content-Signature` is the hex HMAC-SHA256 of the body keyed
//! by the bot's auth token, as the official SDKs verify it.

use serde_json::{Map, Value};

use super::{
    OutgoingRequest, ProfileSpec, SecretKind, payload_value, push_default_user_agent, push_header, push_json_body,
};
use crate::model::DueDelivery;
use crate::signing;

pub(super) const SPEC: ProfileSpec =
    ProfileSpec { name: "viber-bot", retry_preset: "viber-bot", timeout_ms: 10_000, secret: SecretKind::Token };

/// Callbacks a bot always gets, whatever its filter.
pub const VIBER_MANDATORY_EVENTS: &[&str] = &["message", "subscribed", "unsubscribed"];
/// Every callback a bot can ask for in `event_types`.
pub const VIBER_EVENT_TYPES: &[&str] =
    &["delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started", "message"];

/// The `event_types` a `set_webhook` reply lists: what was asked for, in
/// order, with the filterable mandatory events added; every filterable
/// event when nothing was asked for. `message` is implied, never listed.
pub fn viber_event_types_reply(requested: Option<&[String]>) -> Vec<String> {
    let mut listed: Vec<String> = match requested {
        None => VIBER_EVENT_TYPES.iter().map(|s| s.to_string()).collect(),
        Some(types) => types.to_vec(),
    };
    for mandatory in ["subscribed", "unsubscribed"] {
        if !listed.iter().any(|t| t == mandatory) {
            listed.push(mandatory.to_owned());
        }
    }
    let mut seen = std::collections::HashSet::new();
    listed.retain(|t| t != "message" && seen.insert(t.clone()));
    listed
}

pub(super) fn render(due: &DueDelivery, request: &mut OutgoingRequest) {
    let body = match payload_value(due) {
        Value::Object(payload) => {
            let mut callback = Map::new();
            if !payload.contains_key("event") {
                callback.insert("event".into(), Value::String(due.event_type.clone()));
            }
            if !payload.contains_key("timestamp") {
                callback.insert("timestamp".into(), Value::from(due.event_timestamp.0));
            }
            callback.extend(payload);
            let options = &due.webhook.options;
            for who in ["sender", "user"] {
                if let Some(Value::Object(person)) = callback.get_mut(who) {
                    if !options.send_name {
                        person.remove("name");
                    }
                    if !options.send_photo {
                        person.remove("avatar");
                    }
                }
            }
            Value::Object(callback).to_string()
        }
        _ => due.payload.to_string(),
    };
    push_header(
        request,
        "x-viber-content-signature",
        signing::hex_hmac(due.webhook.secret.as_bytes(), body.as_bytes()),
    );
    push_default_user_agent(request, super::USER_AGENT);
    push_json_body(request, body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_lists_what_was_asked_plus_the_filterable_mandatory_events() {
        let asked: Vec<String> = ["delivered", "seen", "failed", "subscribed", "unsubscribed", "conversation_started"]
            .map(String::from)
            .to_vec();
        assert_eq!(viber_event_types_reply(Some(&asked)), asked);
        assert_eq!(viber_event_types_reply(Some(&[])), ["subscribed", "unsubscribed"]);
        assert_eq!(
            viber_event_types_reply(Some(&["seen".into(), "message".into()])),
            ["seen", "subscribed", "unsubscribed"]
        );
        assert_eq!(viber_event_types_reply(None), asked);
    }
}
