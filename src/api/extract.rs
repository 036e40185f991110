//! Extractors: bearer-token callers, and JSON bodies and query strings that
//! fail with `{code, message}` naming the field at fault.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::error::{ApiError, ErrorCode};
use crate::model::Principal;
use crate::signing;

/// Whoever the bearer token names: the operator or an account. A Viber bot
/// token is refused here, so no `/v1` endpoint ever takes one: it is held
/// in clear by the bot (it keys the callbacks' signatures) and must open
/// nothing but `/pa/set_webhook`.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim).filter(|t| !t.is_empty())
        else {
            return Err(ApiError::new(ErrorCode::Unauthorized, "missing `Authorization: Bearer <token>` header"));
        };
        match state.store.authenticate(&signing::token_hash(token)).await? {
            Some(Principal::ViberBot(_)) => Err(viber_bot_token_refused()),
            Some(principal) => Ok(Caller(principal)),
            None => Err(ApiError::new(ErrorCode::Unauthorized, "unknown token")),
        }
    }
}

/// A caller acting for one account: the account's own token.
pub struct AccountCaller(pub String);

impl FromRequestParts<AppState> for AccountCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, state).await?.0 {
            Principal::Account(id) => Ok(AccountCaller(id)),
            Principal::Operator => Err(ApiError::new(
                ErrorCode::Forbidden,
                "the operator token manages accounts; use an account token for this endpoint",
            )),
            // `Caller` has refused it already; said again so no change there can let it through.
            Principal::ViberBot(_) => Err(viber_bot_token_refused()),
        }
    }
}

fn viber_bot_token_refused() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "a viber bot auth token works only on /pa/set_webhook; use the account's api token for /v1",
    )
}

/// A JSON body parsed into `T`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Like `JsonBody`, but an empty body is `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorCode::PayloadTooLarge, "request body is larger than the limit (see --max-body-bytes)")
        } else if crate::listener::is_body_timeout(&rejection) {
            ApiError::new(
                ErrorCode::RequestTimeout,
                "the request body did not arrive within the body timeout (see --body-timeout-seconds)",
            )
        } else {
            ApiError::new(ErrorCode::InvalidJson, format!("could not read the request body: {}", rejection.body_text()))
        }
    })
}

/// Parses JSON, naming the path of a field that has the wrong shape.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Tracking the path costs on every field; most bodies are well formed,
    // so the path is traced only to explain a failure.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(json_error)?;
    deserializer.end().map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("invalid JSON: {e}")))?;
    Ok(value)
}

fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data if path != "." => {
            ApiError::new(ErrorCode::InvalidField, format!("{path}: {inner}"))
        }
        serde_json::error::Category::Data => ApiError::new(ErrorCode::InvalidField, inner.to_string()),
        _ => ApiError::new(ErrorCode::InvalidJson, format!("invalid JSON: {inner}")),
    }
}

/// A query string parsed into `T`.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|q| QueryParams(q.0))
            .map_err(|e| ApiError::new(ErrorCode::InvalidField, format!("query string: {}", e.body_text())))
    }
}
