//! `/v1/events`: ingest one event or a batch, and read one back. Ingest
//! answers only after the events and their deliveries are committed.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::extract::{parse_json, read_body};
use super::{AccountCaller, AppState, Caller};
use crate::catalogue::Channel;
use crate::error::{ApiError, ErrorBody};
use crate::filter;
use crate::model::{Event, IngestOutcome, NewEvent, Timestamp};

pub const MAX_BATCH: usize = 1000;
pub const MAX_ID_LEN: usize = 256;

/// One event to ingest.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    /// The event type (`herald.*` types are Herald's own).
    #[serde(rename = "type")]
    event_type: String,
    /// Any JSON value.
    #[schema(value_type = serde_json::Value)]
    payload: Box<RawValue>,
    /// The event's id, for deduplication: 1 to 256 visible ASCII
    /// characters. Generated when absent.
    #[serde(default)]
    id: Option<String>,
    /// Send to this webhook alone.
    #[serde(default)]
    webhook_id: Option<String>,
    /// RFC 3339 (default: now).
    #[serde(default)]
    timestamp: Option<String>,
}

/// One event, or a batch of 1 to 1000: the body as documented. `ingest`
/// tells the two apart by the first byte, to name a batch's bad event by
/// its place, so this type is never read into.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum IngestBody {
    One(EventIn),
    Batch(Vec<EventIn>),
}

/// The answer to a batch: each event's outcome, in order.
#[derive(Serialize, ToSchema)]
pub struct IngestBatch {
    events: Vec<IngestOutcome>,
}

/// One event's outcome, or a batch's.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum IngestAnswer {
    One(IngestOutcome),
    Batch(IngestBatch),
}

impl EventIn {
    /// Checks the fields serde cannot; messages name the event's place in
    /// a batch (built only for a message: most events pass).
    fn into_new_event(self, place: Option<usize>) -> Result<NewEvent, ApiError> {
        let at = || place.map(|i| format!("[{i}].")).unwrap_or_default();
        filter::validate_event_type(&self.event_type)
            .map_err(|e| ApiError::invalid_field(format!("{}type: {e}", at())))?;
        if self.event_type.starts_with(filter::OPERATIONAL_PREFIX) {
            return Err(ApiError::invalid_field(format!(
                "{}type: `{}` event types are herald's own operational events",
                at(),
                filter::OPERATIONAL_PREFIX
            )));
        }
        if let Some(id) = &self.id
            && (id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(ApiError::invalid_field(format!(
                "{}id: must be 1 to {MAX_ID_LEN} visible ASCII characters without spaces",
                at()
            )));
        }
        check_payload(self.payload.get()).map_err(|problem| {
            let event = self.id.as_deref().map(|id| format!(" (event `{id}`)")).unwrap_or_default();
            ApiError::invalid_field(format!(
                "{}payload{event}: cannot be stored and delivered exactly: {problem}",
                at()
            ))
        })?;
        let timestamp = match &self.timestamp {
            Some(text) => Some(Timestamp::parse_rfc3339(text).ok_or_else(|| {
                ApiError::invalid_field(format!("{}timestamp: `{text}` is not an RFC 3339 date-time", at()))
            })?),
            None => None,
        };
        Ok(NewEvent {
            id: self.id,
            event_type: self.event_type,
            payload: self.payload.get().to_owned(),
            webhook_id: self.webhook_id,
            timestamp,
        })
    }
}

/// Checks that a payload reads back as the JSON value it claims to be:
/// `RawValue` keeps any well-formed text, but the profiles that rebuild a
/// body (`wwebjs`, `compose`, `viber-bot`) and the delivery log parse it
/// into a `serde_json::Value`, which refuses a number beyond `f64` (`1e400`),
/// a lone surrogate escape (`"\ud800"`), nesting deeper than 128 and (so
/// that every reader agrees) a key repeated in one object. Such a
/// payload, once accepted, would be delivered as `null` or as nothing, so
/// it is refused here. The walk builds nothing; it only visits.
fn check_payload(text: &str) -> Result<(), serde_json::Error> {
    use std::borrow::Cow;

    use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

    struct Walk;
    impl<'de> Deserialize<'de> for Walk {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Walk, D::Error> {
            d.deserialize_any(Walk)
        }
    }
    impl<'de> Visitor<'de> for Walk {
        type Value = Walk;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_str<E>(self, _: &str) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_unit<E>(self) -> Result<Walk, E> {
            Ok(Walk)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Walk, A::Error> {
            while seq.next_element::<Walk>()?.is_some() {}
            Ok(Walk)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Walk, A::Error> {
            // A repeated key reads back as one of its values or the other,
            // depending on the reader: the raw text and a rebuilt body
            // would disagree. A set only for large objects: most are small.
            let mut keys: Vec<Cow<'de, str>> = Vec::new();
            let mut many: Option<std::collections::HashSet<Cow<'de, str>>> = None;
            while let Some(Key(key)) = map.next_key::<Key>()? {
                let repeated = match &mut many {
                    Some(set) => !set.insert(key.clone()),
                    None if keys.contains(&key) => true,
                    None => {
                        keys.push(key.clone());
                        if keys.len() > 16 {
                            many = Some(keys.drain(..).collect());
                        }
                        false
                    }
                };
                if repeated {
                    return Err(serde::de::Error::custom(format_args!("key `{key}` appears twice in one object")));
                }
                map.next_value::<Walk>()?;
            }
            Ok(Walk)
        }
    }

    /// An object key, borrowed from the text where it has no escapes.
    struct Key<'de>(Cow<'de, str>);
    impl<'de> Deserialize<'de> for Key<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key<'de>, D::Error> {
            struct KeyText;
            impl<'de> Visitor<'de> for KeyText {
                type Value = Key<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object key")
                }
                fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Borrowed(key)))
                }
                fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(key.to_owned())))
                }
            }
            d.deserialize_str(KeyText)
        }
    }
    serde_json::from_str::<Walk>(text).map(|_| ())
}

/// `POST /v1/events`: ingest one event or a batch; answered once they and
/// their deliveries are committed.
#[utoipa::path(
    post,
    path = "/events",
    tag = "events",
    security(("bearer" = [])),
    request_body = IngestBody,
    responses(
        (status = 202, description = "stored, with the deliveries it made", body = IngestAnswer),
        (status = 200, description = "an event with this id was stored before: its outcome", body = IngestOutcome),
        (status = "default", description = "an error", body = ErrorBody),
    )
)]
pub async fn ingest(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    request: Request,
) -> Result<Response, ApiError> {
    let body = read_body(request, &()).await?;
    let is_batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let events = if is_batch {
        let batch: Vec<EventIn> = parse_json(&body)?;
        if batch.is_empty() || batch.len() > MAX_BATCH {
            return Err(ApiError::invalid_field(format!("a batch holds 1 to {MAX_BATCH} events, not {}", batch.len())));
        }
        batch.into_iter().enumerate().map(|(i, e)| e.into_new_event(Some(i))).collect::<Result<Vec<_>, _>>()?
    } else {
        vec![parse_json::<EventIn>(&body)?.into_new_event(None)?]
    };
    let outcomes = state.engine.ingest(&account_id, events).await?;
    if is_batch {
        // Serialised straight from the outcomes, not through a `Value`.
        let answer = IngestAnswer::Batch(IngestBatch { events: outcomes });
        return Ok((StatusCode::ACCEPTED, Json(answer)).into_response());
    }
    let Some(outcome) = outcomes.into_iter().next() else {
        return Err(ApiError::from(crate::store::StoreError::Internal(anyhow::anyhow!(
            "an ingest of one event gave none"
        ))));
    };
    // A repeated id answers with the original event, as a read would.
    let status = if outcome.duplicate { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(IngestAnswer::One(outcome))).into_response())
}

/// `GET /v1/events/{id}`: one event, its payload as it came.
#[utoipa::path(
    get,
    path = "/events/{id}",
    tag = "events",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "an event id")),
    responses((status = 200, body = Event), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn get(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    Path(id): Path<String>,
) -> Result<Json<Event>, ApiError> {
    let event = state.store.get_event(&account_id, &id).await?.ok_or_else(|| ApiError::not_found("event"))?;
    // Serialised as stored: the payload's own text goes out as it came in.
    Ok(Json(event))
}

/// The event catalogue.
#[derive(Serialize, ToSchema)]
pub struct Catalogue {
    channels: Vec<Channel>,
}

/// `GET /v1/event-types`: the event catalogue, per channel.
#[utoipa::path(
    get,
    path = "/event-types",
    tag = "events",
    security(("bearer" = [])),
    responses((status = 200, body = Catalogue), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn catalogue(Caller(_): Caller) -> Json<Catalogue> {
    Json(Catalogue { channels: crate::catalogue::by_channel() })
}

#[cfg(test)]
mod tests {
    use super::check_payload;

    #[test]
    fn payloads_a_json_value_cannot_hold_are_refused() {
        let wide =
            format!("{{{}\"last\":0}}", (0..100).map(|i| format!("\"k{i}\":{{\"k{i}\":1}},")).collect::<String>());
        let wide_repeated = wide.replace("\"last\"", "\"k57\"");
        assert!(check_payload(&wide_repeated).unwrap_err().to_string().contains("key `k57` appears twice"));
        for good in [r#"{"a":[1,2.5,-3e10,"x\u00e9\ud83d\ude00",null,true]}"#, "1e308", "\"\"", &wide, &"[".repeat(127)]
        {
            let text = if good.starts_with('[') { format!("{good}{}", "]".repeat(127)) } else { good.to_string() };
            assert!(check_payload(&text).is_ok(), "{text}");
        }
        for (bad, problem) in [
            ("1e400", "number out of range"),
            ("-1e400", "number out of range"),
            (r#"{"a":"\ud800"}"#, "unexpected end of hex escape"),
            (r#"{"a":"\ud800\u0041"}"#, "lone leading surrogate"),
            (r#"["\udc00"]"#, "lone leading surrogate"),
            (r#"{"a":1,"b":{"c":2,"c":3}}"#, "key `c` appears twice"),
            (r#"{"a\u0062":1,"ab":2}"#, "key `ab` appears twice"),
        ] {
            let err = check_payload(bad).unwrap_err().to_string();
            assert!(err.contains(problem), "{bad}: {err}");
        }
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(check_payload(&deep).unwrap_err().to_string().contains("recursion limit exceeded"));
        // The edge: what `serde_json::Value` takes, the check takes.
        for depth in [127, 128, 129] {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert_eq!(
                check_payload(&text).is_ok(),
                serde_json::from_str::<serde_json::Value>(&text).is_ok(),
                "{depth}"
            );
        }
    }
}
