//! Pure: where an ingested batch goes. The checks every backend makes
//! before it writes anything (a strict account's types are in the
//! catalogue, a targeted webhook is the account's) and the fan-out of each
//! event to the enabled webhooks that want it. The stores call this, so
//! SQLite and PostgreSQL accept and fan out exactly alike.

use std::sync::Arc;

use crate::model::{NewEvent, Webhook};
use crate::{catalogue, filter};

/// Why a batch is refused whole.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A type outside the catalogue, in a strict account.
    UnknownType(String),
    /// A `webhook_id` that is not one of the account's webhooks.
    NoSuchWebhook(String),
}

/// For each event, in order, the webhooks it goes to: its target alone
/// when it names one (if enabled), else every enabled webhook whose filter
/// takes its type. `webhooks` are the account's (not deleted).
pub fn fan_out<'w>(
    strict: bool,
    webhooks: &'w [Arc<Webhook>],
    events: &[NewEvent],
) -> Result<Vec<Vec<&'w Arc<Webhook>>>, Refusal> {
    if strict && let Some((i, event)) = events.iter().enumerate().find(|(_, e)| !catalogue::is_known(&e.event_type)) {
        return Err(Refusal::UnknownType(format!(
            "events[{i}].type: `{}` is not in the event catalogue (this account is in strict mode)",
            event.event_type
        )));
    }
    // A targeted webhook must exist in this account, or the whole request
    // fails before anything is written.
    for (i, event) in events.iter().enumerate() {
        if let Some(target) = &event.webhook_id
            && !webhooks.iter().any(|w| &w.id == target)
        {
            return Err(Refusal::NoSuchWebhook(format!("webhook `{target}` (events[{i}].webhook_id)")));
        }
    }
    Ok(events
        .iter()
        .map(|event| match &event.webhook_id {
            Some(target) => webhooks.iter().filter(|w| &w.id == target && w.enabled).collect(),
            None => webhooks
                .iter()
                .filter(|w| w.enabled && filter::matches(w.event_types.as_deref(), &event.event_type))
                .collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;
    use crate::profile::Profile;

    fn event(event_type: &str, target: Option<&str>) -> NewEvent {
        NewEvent {
            id: None,
            event_type: event_type.into(),
            payload: "{}".into(),
            webhook_id: target.map(Into::into),
            timestamp: None,
        }
    }

    fn webhook(types: Option<&[&str]>, enabled: bool) -> Arc<Webhook> {
        Arc::new(Webhook {
            event_types: types.map(|t| t.iter().map(|s| s.to_string()).collect()),
            enabled,
            ..Webhook::new("acc_1", "http://127.0.0.1/", Profile::default(), String::new(), Timestamp(0))
        })
    }

    #[test]
    fn events_go_to_enabled_webhooks_that_want_them() {
        let hooks = [webhook(None, true), webhook(Some(&["a.*"]), true), webhook(None, false)];
        let ids = |targets: &Vec<&Arc<Webhook>>| targets.iter().map(|w| w.id.clone()).collect::<Vec<_>>();
        let out = fan_out(false, &hooks, &[event("a.b", None), event("c", None)]).unwrap();
        assert_eq!(ids(&out[0]), vec![hooks[0].id.clone(), hooks[1].id.clone()]);
        assert_eq!(ids(&out[1]), vec![hooks[0].id.clone()]);
        let targeted = fan_out(false, &hooks, &[event("c", Some(&hooks[1].id)), event("c", Some(&hooks[2].id))]);
        let targeted = targeted.unwrap();
        assert_eq!(ids(&targeted[0]), vec![hooks[1].id.clone()], "a target takes the event whatever its filter");
        assert!(targeted[1].is_empty(), "a disabled target gets nothing");
    }

    #[test]
    fn a_batch_is_refused_whole() {
        let hooks = [webhook(None, true)];
        assert_eq!(
            fan_out(false, &hooks, &[event("a", None), event("a", Some("wh_nope"))]),
            Err(Refusal::NoSuchWebhook("webhook `wh_nope` (events[1].webhook_id)".into()))
        );
        let Err(Refusal::UnknownType(message)) = fan_out(true, &hooks, &[event("no.such.type", None)]) else {
            panic!("a strict account refuses an unknown type");
        };
        assert!(message.starts_with("events[0].type: `no.such.type`"), "{message}");
    }
}
