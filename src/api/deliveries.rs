//! `/v1/deliveries`: the delivery log with filters and cursor pagination,
//! one delivery with its attempts, and a manual retry.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::extract::QueryParams;
use super::{AccountCaller, AppState};
use crate::error::{ApiError, ErrorBody};
use crate::model::{Attempt, Delivery, DeliveryFilter, DeliveryStatus, Timestamp};
use crate::stats::{WebhookSample, summarize};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 250;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `pending`, `retrying`, `success` or `failed`.
    status: Option<String>,
    webhook_id: Option<String>,
    /// The event type.
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// RFC 3339: deliveries created at or after.
    since: Option<String>,
    /// RFC 3339: deliveries created before.
    until: Option<String>,
    /// 1 to 250 (default 50).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
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

/// A page of the delivery log, newest first.
#[derive(Serialize, ToSchema)]
pub struct Page<'a> {
    data: Vec<DeliveryView<'a>>,
    /// Pass as `cursor` for the next page; `null` on the last.
    next_cursor: Option<String>,
}

/// `GET /v1/deliveries`: the delivery log, filtered, newest first.
#[utoipa::path(
    get,
    path = "/deliveries",
    tag = "deliveries",
    security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = Page), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn list(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Response, ApiError> {
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
    // Serialised as typed views: a failure would be a 500, never a panic.
    Ok(Json(Page { data: page.iter().map(DeliveryView::of).collect(), next_cursor }).into_response())
}

/// `dlv_` and a ULID in upper case, as `model::new_id_at` writes them (a
/// lower-case spelling parses too, but sorts elsewhere as text).
fn is_delivery_id(text: &str) -> bool {
    text.strip_prefix("dlv_")
        .is_some_and(|ulid| !ulid.bytes().any(|b| b.is_ascii_lowercase()) && ulid::Ulid::from_string(ulid).is_ok())
}

/// `GET /v1/deliveries/{id}`: one delivery with every attempt.
#[utoipa::path(
    get,
    path = "/deliveries/{id}",
    tag = "deliveries",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "a delivery id")),
    responses((status = 200, body = DeliveryView), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn get(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (delivery, attempts) =
        state.store.get_delivery(&account_id, &id).await?.ok_or_else(|| ApiError::not_found("delivery"))?;
    Ok(Json(DeliveryView { attempts: Some(&attempts), ..DeliveryView::of(&delivery) }).into_response())
}

/// `POST /v1/deliveries/{id}/retry`: one more attempt of a finished
/// delivery, now.
#[utoipa::path(
    post,
    path = "/deliveries/{id}/retry",
    tag = "deliveries",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "a delivery id")),
    responses((status = 202, description = "scheduled", body = DeliveryView), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn retry(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let delivery = state.engine.retry(&account_id, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryView::of(&delivery))).into_response())
}

/// A delivery as the API shows it: Herald's fields, and the words the
/// WhatsApp Web API's log uses (seed 004) beside them.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView<'a> {
    #[serde(flatten)]
    delivery: &'a Delivery,
    event: &'a str,
    /// The event's payload as stored (`null` for a text no JSON reader
    /// takes, which ingest no longer stores).
    #[schema(value_type = Option<serde_json::Value>)]
    payload: Option<&'a RawValue>,
    #[serde(rename = "webhookUrl")]
    webhook_url: &'a str,
    #[serde(rename = "statusCode")]
    status_code: Option<u16>,
    #[serde(rename = "retryCount")]
    retry_count: u32,
    #[serde(rename = "errorMessage")]
    error_message: Option<&'a str>,
    #[serde(rename = "createdAt")]
    created_at: Timestamp,
    /// Every attempt, oldest first: only when one delivery is read.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Attempt>>)]
    attempts: Option<&'a [Attempt]>,
}

impl<'a> DeliveryView<'a> {
    fn of(delivery: &'a Delivery) -> DeliveryView<'a> {
        DeliveryView {
            delivery,
            event: &delivery.event_type,
            payload: serde_json::from_str(&delivery.payload).ok(),
            webhook_url: &delivery.webhook_url,
            status_code: delivery.last_status_code,
            retry_count: delivery.n_attempts.saturating_sub(1),
            error_message: delivery.last_error.as_deref(),
            created_at: delivery.created_at,
            attempts: None,
        }
    }
}

/// One webhook's summary in the stats.
#[derive(Serialize, ToSchema)]
pub struct WebhookSummary<'a> {
    #[serde(flatten)]
    summary: crate::stats::Summary,
    webhook_id: &'a str,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// RFC 3339 (default: a day before `until`).
    since: Option<String>,
    /// RFC 3339 (default: now).
    until: Option<String>,
    webhook_id: Option<String>,
}

/// Counts, success rate and latency over a window.
#[derive(Serialize, ToSchema)]
pub struct Stats<'a> {
    since: Timestamp,
    until: Timestamp,
    overall: crate::stats::Summary,
    webhooks: Vec<WebhookSummary<'a>>,
}

/// The default window of `GET /v1/stats`.
pub const DEFAULT_STATS_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// `GET /v1/stats`: counts by status, the success rate and attempt latency
/// percentiles over a window (default: the last 24 hours), overall and per
/// webhook.
#[utoipa::path(
    get,
    path = "/stats",
    tag = "deliveries",
    security(("bearer" = [])),
    params(StatsQuery),
    responses((status = 200, body = Stats), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn stats(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    QueryParams(query): QueryParams<StatsQuery>,
) -> Result<Response, ApiError> {
    let until = parse_time("until", query.until)?.unwrap_or_else(|| Timestamp(state.clock.now().0 + 1));
    let since = parse_time("since", query.since)?.unwrap_or(Timestamp(until.0 - DEFAULT_STATS_WINDOW_MS));
    if since >= until {
        return Err(ApiError::invalid_field("since: must be before until"));
    }
    let samples = state.store.delivery_stats(&account_id, since, until, query.webhook_id).await?;
    let all: Vec<&WebhookSample> = samples.iter().collect();
    let per_webhook: Vec<WebhookSummary> = samples
        .iter()
        .map(|sample| WebhookSummary { summary: summarize(&[sample]), webhook_id: &sample.webhook_id })
        .collect();
    Ok(Json(Stats { since, until, overall: summarize(&all), webhooks: per_webhook }).into_response())
}
