//! `GET /metrics`: the Prometheus text format. On the API listener it takes
//! the operator token (the counts are the whole node's, every account's);
//! `--metrics-listen` serves the same text without a token on an address of
//! its own, for a scraper on a private network.

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{AppState, Caller};
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::model::Principal;

/// The text format's content type, version 0.0.4.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics` on the API listener: the operator only.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the Prometheus text format (operator token)", content_type = "text/plain", body = String),
        (status = "default", description = "an error", body = ErrorBody),
    )
)]
pub async fn operator(State(state): State<AppState>, Caller(caller): Caller) -> Result<Response, ApiError> {
    if caller != Principal::Operator {
        return Err(ApiError::new(ErrorCode::Forbidden, "/metrics takes the operator token"));
    }
    render(&state)
}

/// `GET /metrics` on `--metrics-listen`: no token.
async fn open(State(state): State<AppState>) -> Result<Response, ApiError> {
    render(&state)
}

fn render(state: &AppState) -> Result<Response, ApiError> {
    let engine = &state.engine;
    match engine.metrics().render(engine.waiting()) {
        Some(text) => Ok(([(CONTENT_TYPE, TEXT_FORMAT)], text).into_response()),
        None => Err(ApiError::new(ErrorCode::NotFound, "metrics are turned off (--no-metrics)")),
    }
}

/// The router of `--metrics-listen`: `/metrics` and nothing else.
pub fn open_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(open))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "only /metrics is served here") })
        .with_state(state)
}
