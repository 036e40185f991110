//! API errors: one table of codes, each with its HTTP status. Bodies are
//! `{"code", "message"}` with a stable `code` callers can branch on and a
//! message that says what is wrong and where.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

/// Serialised (and documented in the OpenAPI document) as its `as_str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not JSON, or not the JSON the endpoint takes.
    InvalidJson,
    /// A field's value is out of range or malformed.
    InvalidField,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// The body did not arrive within the body timeout.
    RequestTimeout,
    /// No token, or a token Herald does not know.
    Unauthorized,
    /// An account token used on an operator-only endpoint.
    Forbidden,
    /// No such resource in the caller's account.
    NotFound,
    /// The resource is in a state that does not allow this.
    Conflict,
    /// Something failed inside Herald; details are in its log.
    Internal,
    /// Herald is shutting down or its store is unavailable.
    Unavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 10] = [
        Self::InvalidJson,
        Self::InvalidField,
        Self::PayloadTooLarge,
        Self::RequestTimeout,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::Conflict,
        Self::Internal,
        Self::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidField => "invalid_field",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidJson | Self::InvalidField => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

/// Every API error's body.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    pub code: ErrorCode,
    /// What is wrong and where, for a person.
    pub message: &'a str,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub fn invalid_field(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidField, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { code: self.code, message: &self.message };
        (self.code.status(), Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => ApiError::not_found(&what),
            StoreError::Conflict(message) => ApiError::new(ErrorCode::Conflict, message),
            StoreError::Invalid(message) => ApiError::invalid_field(message),
            StoreError::Closed => ApiError::new(ErrorCode::Unavailable, "herald is shutting down"),
            StoreError::Unavailable(why) => {
                tracing::warn!(error = %why, "store unavailable");
                ApiError::new(
                    ErrorCode::Unavailable,
                    format!("the database is unavailable ({why}); nothing was stored, try again"),
                )
            }
            StoreError::Internal(err) => {
                // Logged once here; the caller sees an opaque message.
                tracing::error!(error = %err, "store error");
                ApiError::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn codes_serialise_as_their_names() {
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str(), "{code:?}");
        }
    }
}
