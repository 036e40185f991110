//! The OpenAPI 3.1 document, generated from the code: the routes and their
//! `#[utoipa::path]`s (listed once, in `routes`), the request and answer
//! types (`ToSchema`), the `{code, message}` error with every code of the
//! error table, and the two ways to authenticate. `GET /openapi.json`
//! serves it, without a token.

use std::sync::Arc;

use axum::Extension;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document around the routes: what Herald is, the error schema, the
/// security schemes, the tags.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "A self-hosted webhook delivery gateway: durable ingest, fan-out, signed delivery, \
                       retries and an attempt log. Errors are `{code, message}` with a stable `code`."
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorCode)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "accounts", description = "Accounts and their tokens (creating one takes the operator token)"),
        (name = "webhooks", description = "Where events go, and how they are signed and retried"),
        (name = "events", description = "Ingest, and the event catalogue"),
        (name = "deliveries", description = "The delivery log, manual retries and statistics"),
        (name = "viber", description = "The Viber Bot API's set_webhook and its bot tokens"),
        (name = "operations", description = "Health, metrics, egress addresses and this document"),
    )
)]
struct Base;

/// `bearer`: an account's API token (or the operator's); `viber_auth_token`:
/// a Viber bot token, for `/pa/set_webhook` only.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("an account's API token, or the operator token where the operation says so"))
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        let viber = ApiKey::Header(ApiKeyValue::with_description(
            "X-Viber-Auth-Token",
            "a viber bot auth token (POST /v1/viber/auth-tokens)",
        ));
        components.add_security_scheme("viber_auth_token", SecurityScheme::ApiKey(viber));
    }
}

/// The document's frame, which `api::routes` fills with every route.
pub fn base() -> utoipa::openapi::OpenApi {
    Base::openapi()
}

/// The whole document, as `/openapi.json` serves it.
pub fn document() -> utoipa::openapi::OpenApi {
    super::routes().split_for_parts().1
}

/// The document as served: JSON text made once, when the router is built.
pub fn finish(document: utoipa::openapi::OpenApi) -> String {
    // Only a map with non-string keys fails to serialise; the document has none.
    document.to_json().unwrap_or_else(|err| {
        tracing::error!(error = %err, "the OpenAPI document does not serialise");
        "{}".to_owned()
    })
}

/// `GET /openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "the OpenAPI 3.1 document", body = serde_json::Value))
)]
pub async fn serve(Extension(document): Extension<Arc<String>>) -> Response {
    ([(CONTENT_TYPE, "application/json")], document.as_str().to_owned()).into_response()
}
