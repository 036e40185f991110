//! The HTTP API under `/v1`, plus `/healthz`. One file per resource; this
//! one holds the router, the shared state and the extractors that turn
//! requests into typed values or clear `{code, message}` errors.

mod accounts;
mod deliveries;
mod egress;
mod events;
mod extract;
mod metrics;
mod viber;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::clock::SharedClock;
use crate::error::{ApiError, ErrorCode};
use crate::model::TargetPolicy;
use crate::store::Store;

pub use extract::{AccountCaller, Caller, JsonBody};
pub use metrics::open_router as metrics_router;
pub use webhooks::validate_url;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    /// Told of new work once it is committed.
    pub engine: Arc<crate::delivery::Engine>,
    /// Which webhook URLs are allowed.
    pub targets: TargetPolicy,
    /// For calls Herald makes while answering a request (Viber's
    /// verification callback).
    pub outbound: crate::http_client::Outbound,
    /// The local address deliveries leave from, when one is configured.
    pub bind_address: Option<std::net::IpAddr>,
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let v1 = Router::new()
        .route("/accounts", post(accounts::create))
        .route("/account", get(accounts::get_own).patch(accounts::update_own))
        .route("/event-types", get(events::catalogue))
        .route("/stats", get(deliveries::stats))
        .route("/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/webhooks/{id}", get(webhooks::get).patch(webhooks::update).delete(webhooks::delete))
        .route("/webhooks/{id}/secret", get(webhooks::secret))
        .route("/webhooks/{id}/rotate-secret", post(webhooks::rotate_secret))
        .route("/webhooks/{id}/test", post(webhooks::send_test))
        .route("/viber/auth-tokens", post(viber::create_auth_token))
        .route("/events", post(events::ingest))
        .route("/events/{id}", get(events::get))
        .route("/egress", get(egress::get))
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/{id}", get(deliveries::get))
        .route("/deliveries/{id}/retry", post(deliveries::retry));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::operator))
        .route("/pa/set_webhook", post(viber::set_webhook))
        .nest("/v1", v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_in_flight))
        .with_state(state)
}

/// Liveness, and whether finished attempts can be recorded: `degraded`
/// while the store refuses the recorder's commits (a lock another process
/// holds, a full disk), when no new attempt starts.
async fn healthz(axum::extract::State(state): axum::extract::State<AppState>) -> axum::Json<serde_json::Value> {
    let stalled = state.engine.recording_stalled();
    axum::Json(serde_json::json!({
        "status": if stalled { "degraded" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "recorder": if stalled { "retrying: the database cannot be written" } else { "ok" },
    }))
}

/// Counts the request in `/metrics` while it is being answered.
async fn count_in_flight(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let _in_flight = state.engine.metrics().request_started();
    next.run(request).await
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "this endpoint does not take that method")
}
