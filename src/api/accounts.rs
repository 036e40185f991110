//! `POST /v1/accounts`: the operator creates an account and gets its token.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::OptionalJson;
use super::{AccountCaller, AppState, Caller, JsonBody};
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::model::{Account, Principal};
use crate::signing;

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// At most 200 characters.
    #[serde(default)]
    name: Option<String>,
}

/// A new account, with its token: shown this once.
#[derive(Serialize, ToSchema)]
pub struct AccountCreated {
    id: String,
    name: String,
    token: String,
    created_at: crate::model::Timestamp,
}

/// `POST /v1/accounts` (operator token): a new account and its API token.
#[utoipa::path(
    post,
    path = "/accounts",
    tag = "accounts",
    security(("bearer" = [])),
    request_body(content = CreateAccount, description = "optional: an empty body makes an unnamed account"),
    responses(
        (status = 201, description = "the account and its token, shown once", body = AccountCreated),
        (status = "default", description = "an error", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    OptionalJson(body): OptionalJson<CreateAccount>,
) -> Result<(StatusCode, Json<AccountCreated>), ApiError> {
    if caller != Principal::Operator {
        return Err(ApiError::new(ErrorCode::Forbidden, "only the operator token can create accounts"));
    }
    let name = body.name.unwrap_or_default();
    if name.len() > 200 {
        return Err(ApiError::invalid_field("name: at most 200 characters"));
    }
    let token = signing::generate_token();
    let account = state.store.create_account(&name, &signing::token_hash(&token), state.clock.now()).await?;
    let body = AccountCreated { id: account.id, name: account.name, token, created_at: account.created_at };
    Ok((StatusCode::CREATED, Json(body)))
}

/// `GET /v1/account`: the caller's own account and its settings.
#[utoipa::path(
    get,
    path = "/account",
    tag = "accounts",
    security(("bearer" = [])),
    responses((status = 200, body = Account), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn get_own(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
) -> Result<Json<Account>, ApiError> {
    let account = state.store.get_account(&account_id).await?.ok_or_else(|| ApiError::not_found("account"))?;
    Ok(Json(account))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    /// Refuse event types the catalogue (`GET /v1/event-types`) does not list.
    strict_event_types: Option<bool>,
    /// Disable a webhook whose every attempt has failed for this long
    /// (60 to 31536000 seconds).
    #[schema(minimum = 60, maximum = 31536000)]
    disable_after_seconds: Option<u64>,
}

/// The longest failure window an account may set: a year.
pub const MAX_DISABLE_AFTER_SECONDS: u64 = 365 * 24 * 3600;

/// `PATCH /v1/account`: change the caller's account settings.
#[utoipa::path(
    patch,
    path = "/account",
    tag = "accounts",
    security(("bearer" = [])),
    request_body = UpdateAccount,
    responses((status = 200, body = Account), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn update_own(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    JsonBody(body): JsonBody<UpdateAccount>,
) -> Result<Json<Account>, ApiError> {
    if let Some(seconds) = body.disable_after_seconds
        && !(60..=MAX_DISABLE_AFTER_SECONDS).contains(&seconds)
    {
        return Err(ApiError::invalid_field(format!(
            "disable_after_seconds: must be between 60 and {MAX_DISABLE_AFTER_SECONDS} (a year)"
        )));
    }
    if let Some(strict) = body.strict_event_types {
        state.store.set_strict_event_types(&account_id, strict).await?;
    }
    if let Some(seconds) = body.disable_after_seconds {
        state.store.set_disable_after(&account_id, seconds).await?;
    }
    get_own(State(state), AccountCaller(account_id)).await
}
