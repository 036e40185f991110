//! The HTTP API under `/v1`, plus `/healthz`, `/metrics` and
//! `/openapi.json`. One file per resource; this one holds the router and
//! the shared state. Every route is added with `routes!`, which puts it in
//! the router and its `#[utoipa::path]` in the OpenAPI document at once
//! (`openapi.rs`): the one list of routes.

mod accounts;
mod deliveries;
mod egress;
mod events;
mod extract;
mod metrics;
mod openapi;
mod viber;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock::SharedClock;
use crate::error::{ApiError, ErrorCode};
use crate::model::TargetPolicy;
use crate::store::Store;

pub use extract::{AccountCaller, Caller, JsonBody};
pub use metrics::open_router as metrics_router;
pub use openapi::document;
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

/// Every route of the API with its documentation: the router and the
/// OpenAPI document are both made from this list.
pub fn routes() -> OpenApiRouter<AppState> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(accounts::create))
        .routes(routes!(accounts::get_own, accounts::update_own))
        .routes(routes!(events::catalogue))
        .routes(routes!(deliveries::stats))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::secret))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::send_test))
        .routes(routes!(viber::create_auth_token))
        .routes(routes!(events::ingest))
        .routes(routes!(events::get))
        .routes(routes!(egress::get))
        .routes(routes!(deliveries::list))
        .routes(routes!(deliveries::get))
        .routes(routes!(deliveries::retry));
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(healthz))
        .routes(routes!(metrics::operator))
        .routes(routes!(openapi::serve))
        .routes(routes!(viber::set_webhook))
        .nest("/v1", v1)
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let (router, document) = routes().split_for_parts();
    let document = std::sync::Arc::new(openapi::finish(document));
    router
        .layer(axum::Extension(document))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count_in_flight))
        .with_state(state)
}

/// `GET /healthz`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Health {
    /// `ok`, or `degraded` while finished attempts cannot be recorded.
    status: &'static str,
    version: &'static str,
    recorder: &'static str,
}

/// Liveness, and whether finished attempts can be recorded: `degraded`
/// while the store refuses the recorder's commits (a lock another process
/// holds, a full disk), when no new attempt starts.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
async fn healthz(axum::extract::State(state): axum::extract::State<AppState>) -> axum::Json<Health> {
    let stalled = state.engine.recording_stalled();
    axum::Json(Health {
        status: if stalled { "degraded" } else { "ok" },
        version: env!("CARGO_PKG_VERSION"),
        recorder: if stalled { "retrying: the database cannot be written" } else { "ok" },
    })
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
