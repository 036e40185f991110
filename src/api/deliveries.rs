//! `/v1/deliveries`: the delivery log with filters and cursor pagination,
//! one delivery with its attempts, and a manual retry.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::QueryParams;
use super::{AccountCaller, AppState};
use crate::error::ApiError;
use crate::model::{Delivery, DeliveryFilter, DeliveryStatus, Timestamp};
use crate::stats::{WebhookSample, summarize};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 250;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    webhook_id: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

fn parse_time(name: &str, value: Option<String>) -> Result<Option<Timestamp>, ApiError> {
    value
        .map(|text| {
            Timestamp::parse_rfc3339(&text)
                .ok_or_else(|| ApiError::invalid_field(format!("{name}: `{text}` is not an RFC 3339 date-time")))
        })
        .transpose()
}

pub async fn list(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let status = match query.status.as_deref() {
        Some(text) => Some(DeliveryStatus::parse(text).ok_or_else(|| {
            ApiError::invalid_field(format!("status: `{text}` is not one of pending, retrying, success, failed"))
        })?),
        None => None,
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(format!("limit: must be between 1 and {MAX_LIMIT}")));
    }
    // The cursor is compared with ids as text: anything but a delivery id
    // would quietly page from somewhere arbitrary.
    if let Some(cursor) = &query.cursor
        && !is_delivery_id(cursor)
    {
        return Err(ApiError::invalid_field(format!(
            "cursor: `{cursor}` is not a cursor this API gave (pass `next_cursor` as it came)"
        )));
    }
    let filter = DeliveryFilter {
        status,
        webhook_id: query.webhook_id,
        event_type: query.event_type,
        since: parse_time("since", query.since)?,
        until: parse_time("until", query.until)?,
        before_id: query.cursor,
        limit: limit + 1,
    };
    let mut page = state.store.list_deliveries(&account_id, filter).await?;
    // One row past the limit tells whether another page exists.
    let next_cursor = if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last().map(|d| d.id.clone())
    } else {
        None
    };
    let data: Vec<Value> = page.iter().map(delivery_json).collect();
    Ok(Json(json!({ "data": data, "next_cursor": next_cursor })))
}

/// `dlv_` and a ULID in upper case, as `model::new_id_at` writes them (a
/// lower-case spelling parses too, but sorts elsewhere as text).
fn is_delivery_id(text: &str) -> bool {
    text.strip_prefix("dlv_")
        .is_some_and(|ulid| !ulid.bytes().any(|b| b.is_ascii_lowercase()) && ulid::Ulid::from_string(ulid).is_ok())
}

pub async fn get(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (delivery, attempts) =
        state.store.get_delivery(&account_id, &id).await?.ok_or_else(|| ApiError::not_found("delivery"))?;
    let mut body = delivery_json(&delivery);
    body["attempts"] = serde_json::to_value(attempts).expect("attempts serialise");
    Ok(Json(body))
}

pub async fn retry(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let delivery = state.engine.retry(&account_id, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery_json(&delivery))))
}

/// A delivery as the API shows it: Herald's fields, and the words the
/// WhatsApp Web API's log uses (seed 004) beside them.
fn delivery_json(delivery: &Delivery) -> Value {
    let mut body = serde_json::to_value(delivery).expect("deliveries serialise");
    let payload: Value = serde_json::from_str(&delivery.payload).unwrap_or(Value::Null);
    let seed_words = json!({
        "event": delivery.event_type,
        "payload": payload,
        "webhookUrl": delivery.webhook_url,
        "statusCode": delivery.last_status_code,
        "retryCount": delivery.n_attempts.saturating_sub(1),
        "errorMessage": delivery.last_error,
        "createdAt": delivery.created_at,
    });
    for (key, value) in seed_words.as_object().expect("an object") {
        body[key] = value.clone();
    }
    body
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    since: Option<String>,
    until: Option<String>,
    webhook_id: Option<String>,
}

/// The default window of `GET /v1/stats`.
pub const DEFAULT_STATS_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// `GET /v1/stats`: counts by status, the success rate and attempt latency
/// percentiles over a window (default: the last 24 hours), overall and per
/// webhook.
pub async fn stats(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    QueryParams(query): QueryParams<StatsQuery>,
) -> Result<Json<Value>, ApiError> {
    let until = parse_time("until", query.until)?.unwrap_or_else(|| Timestamp(state.clock.now().0 + 1));
    let since = parse_time("since", query.since)?.unwrap_or(Timestamp(until.0 - DEFAULT_STATS_WINDOW_MS));
    if since >= until {
        return Err(ApiError::invalid_field("since: must be before until"));
    }
    let samples = state.store.delivery_stats(&account_id, since, until, query.webhook_id).await?;
    let all: Vec<&WebhookSample> = samples.iter().collect();
    let per_webhook: Vec<Value> = samples
        .iter()
        .map(|sample| {
            let mut summary = serde_json::to_value(summarize(&[sample])).expect("summaries serialise");
            summary["webhook_id"] = Value::String(sample.webhook_id.clone());
            summary
        })
        .collect();
    Ok(Json(json!({
        "since": since,
        "until": until,
        "overall": summarize(&all),
        "webhooks": per_webhook,
    })))
}
