//! The event catalogue: the event types the seed systems send, per channel,
//! each with a one-line description and an example body taken from the
//! seeds (`examples.json`). It informs (`GET /v1/event-types`) and, for an
//! account in strict mode, gates ingest; tests replay every example
//! through its profile.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The type of the events `POST /v1/webhooks/{id}/test` sends: Herald's
/// own, in the catalogue beside the seeds' so strict accounts take it.
pub const TEST_EVENT_TYPE: &str = "webhook.test";

/// One seed example: what a receiver of `profile` gets for an event of `type`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Example {
    pub channel: String,
    pub profile: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// Tells apart several examples of one type (text, media …).
    pub name: String,
    pub description: String,
    /// Which seed document it comes from.
    pub source: String,
    /// The body exactly as the seed shows it.
    pub body: String,
}

impl Example {
    pub fn body_json(&self) -> Value {
        serde_json::from_str(&self.body).expect("catalogue examples are valid JSON")
    }

    /// What to ingest so that this profile sends `body`: the event type,
    /// the payload and, where the body carries one, the timestamp.
    pub fn as_event(&self) -> (String, Value, Option<String>) {
        let body = self.body_json();
        match self.profile.as_str() {
            "business" if body.get("payload").is_some() => (self.event_type.clone(), body["payload"].clone(), None),
            "wwebjs" | "standard" => {
                (self.event_type.clone(), body["data"].clone(), body["timestamp"].as_str().map(str::to_owned))
            }
            _ => (self.event_type.clone(), body, None),
        }
    }
}

pub static EXAMPLES: LazyLock<Vec<Example>> =
    LazyLock::new(|| serde_json::from_str(include_str!("examples.json")).expect("the catalogue parses"));

/// Whether the catalogue lists `event_type` (herald's own test event included).
pub fn is_known(event_type: &str) -> bool {
    event_type == TEST_EVENT_TYPE || EXAMPLES.iter().any(|e| e.event_type == event_type)
}

/// One channel's event types, as the catalogue lists them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Channel {
    pub channel: String,
    pub events: Vec<EventType>,
}

/// One event type with its first example.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventType {
    #[serde(rename = "type")]
    pub event_type: String,
    pub description: String,
    /// The profile whose receivers get `example`.
    pub profile: String,
    /// Which seed document it comes from.
    pub source: String,
    /// The body a receiver gets, as the seed shows it.
    #[schema(value_type = serde_json::Value)]
    pub example: Value,
}

/// The catalogue grouped by channel, one entry per type with its first example.
pub fn by_channel() -> Vec<Channel> {
    let mut channels: Vec<(String, Vec<EventType>)> = Vec::new();
    for example in EXAMPLES.iter() {
        let index = match channels.iter().position(|(c, _)| *c == example.channel) {
            Some(i) => i,
            None => {
                channels.push((example.channel.clone(), Vec::new()));
                channels.len() - 1
            }
        };
        let events = &mut channels[index].1;
        if !events.iter().any(|e| e.event_type == example.event_type) {
            events.push(EventType {
                event_type: example.event_type.clone(),
                description: example.description.clone(),
                profile: example.profile.clone(),
                source: example.source.clone(),
                example: example.body_json(),
            });
        }
    }
    channels.into_iter().map(|(channel, events)| Channel { channel, events }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_covers_every_seed_system() {
        let count = |channel: &str| EXAMPLES.iter().filter(|e| e.channel == channel).count();
        assert_eq!(count("wwebjs"), 13);
        assert_eq!(count("viber"), 4);
        assert_eq!(count("whatsapp"), 3);
        assert_eq!(count("routee"), 1);
        assert_eq!(count("viber-bot"), 7);
        for example in EXAMPLES.iter() {
            assert!(crate::profile::Profile::parse(&example.profile).is_ok(), "{}", example.profile);
            example.body_json();
        }
        assert!(is_known("message_reaction") && is_known("number:unsubscribe") && !is_known("made:up"));
    }
}
