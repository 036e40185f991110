//! `POST /pa/set_webhook`: the Viber Bot API's webhook registration (seed
//! 002), so a bot written for Viber can point at Herald unchanged, and
//! `POST /v1/viber/auth-tokens`, which makes the tokens it takes. Auth is
//! `X-Viber-Auth-Token`: a bot auth token, never an API token, because the
//! bot's side holds it in clear (the `viberbot` SDK verifies callbacks with
//! it) and Herald keeps it in clear to sign with; so it opens nothing but
//! this endpoint. Each bot token has its own webhook. Replies are always
//! HTTP 200 with Viber's `status` codes.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::extract::{parse_json, read_body};
use super::webhooks::validate_url;
use super::{AccountCaller, AppState};
use crate::error::{ApiError, ErrorBody};
use crate::model::{Principal, Timestamp, Webhook};
use crate::profile::{
    OutgoingRequest, Profile, ProfileOptions, VIBER_EVENT_TYPES, VIBER_MANDATORY_EVENTS, viber_event_types_reply,
};
use crate::signing;

/// Viber's status codes for the failures `set_webhook` can have.
#[derive(Debug, Clone, Copy)]
enum ViberStatus {
    Ok = 0,
    InvalidUrl = 1,
    InvalidAuthToken = 2,
    BadData = 3,
    MissingData = 4,
    GeneralError = 99,
}

impl ViberStatus {
    fn message(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::InvalidUrl => "invalidUrl",
            Self::InvalidAuthToken => "invalidAuthToken",
            Self::BadData => "badData",
            Self::MissingData => "missingData",
            Self::GeneralError => "generalError",
        }
    }
}

/// Viber's answer to `set_webhook`: always HTTP 200.
#[derive(Serialize, ToSchema)]
pub struct ViberReply {
    /// 0 ok, 1 invalidUrl, 2 invalidAuthToken, 3 badData, 4 missingData, 99 generalError.
    status: i32,
    status_message: &'static str,
    /// What went wrong, when something did.
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<String>,
    /// The event types the webhook gets (a webhook set, not removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    event_types: Option<Vec<String>>,
}

fn reply(status: ViberStatus, details: Option<String>) -> Json<ViberReply> {
    Json(ViberReply { status: status as i32, status_message: status.message(), details, event_types: None })
}

/// The Viber Bot API's `set_webhook` body.
#[derive(Deserialize, ToSchema)]
pub struct SetWebhook {
    /// The bot's webhook; empty removes it.
    url: Option<String>,
    event_types: Option<Vec<String>>,
    #[serde(default)]
    send_name: bool,
    #[serde(default)]
    send_photo: bool,
}

/// `POST /v1/viber/auth-tokens`: a new bot auth token for the caller's
/// account, shown this once (Herald keeps its hash, and the token itself
/// only as the signing key of the webhook it registers).
/// A new Viber bot auth token, shown this once.
#[derive(Serialize, ToSchema)]
pub struct ViberToken {
    token: String,
    created_at: Timestamp,
}

#[utoipa::path(
    post,
    path = "/viber/auth-tokens",
    tag = "viber",
    security(("bearer" = [])),
    responses((status = 201, body = ViberToken), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn create_auth_token(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
) -> Result<(StatusCode, Json<ViberToken>), ApiError> {
    let token = signing::generate_token();
    let now = state.clock.now();
    state.store.create_viber_bot_token(&account_id, &signing::token_hash(&token), now).await?;
    Ok((StatusCode::CREATED, Json(ViberToken { token, created_at: now })))
}

/// `POST /pa/set_webhook`: the Viber Bot API's webhook registration.
#[utoipa::path(
    post,
    path = "/pa/set_webhook",
    tag = "viber",
    security(("viber_auth_token" = [])),
    request_body = SetWebhook,
    responses((status = 200, description = "Viber's status, whatever happened", body = ViberReply))
)]
pub async fn set_webhook(State(state): State<AppState>, headers: HeaderMap, request: Request) -> Json<ViberReply> {
    match handle(&state, &headers, request).await {
        Ok(event_types) => {
            let Json(body) = reply(ViberStatus::Ok, None);
            Json(ViberReply { event_types, ..body })
        }
        Err((status, detail)) => reply(status, Some(detail)),
    }
}

type Failure = (ViberStatus, String);

/// Registers or removes the bot token's webhook. Returns the reply's
/// `event_types` (none when the webhook was removed).
async fn handle(state: &AppState, headers: &HeaderMap, request: Request) -> Result<Option<Vec<String>>, Failure> {
    let token = headers.get("x-viber-auth-token").and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or_default();
    let principal = match state.store.authenticate(&signing::token_hash(token)).await {
        Ok(principal) if !token.is_empty() => principal,
        Ok(_) => None,
        Err(err) => return Err((ViberStatus::GeneralError, err.to_string())),
    };
    let account_id = match principal {
        Some(Principal::ViberBot(id)) => id,
        // An API token here would become the key a bot holds in clear.
        Some(Principal::Account(_) | Principal::Operator) => {
            return Err((
                ViberStatus::InvalidAuthToken,
                "X-Viber-Auth-Token must be a viber bot auth token (POST /v1/viber/auth-tokens), not an api token"
                    .into(),
            ));
        }
        None => return Err((ViberStatus::InvalidAuthToken, "missing or unknown X-Viber-Auth-Token".into())),
    };
    let body = read_body(request, &()).await.map_err(|e| (ViberStatus::BadData, e.message))?;
    let body: SetWebhook = parse_json(&body).map_err(|e| (ViberStatus::BadData, e.message))?;
    let Some(url) = body.url else {
        return Err((ViberStatus::MissingData, "url is required (an empty url removes the webhook)".into()));
    };
    let existing = state
        .store
        .list_webhooks(&account_id)
        .await
        .map_err(|e| (ViberStatus::GeneralError, e.to_string()))?
        .into_iter()
        // The token's own webhook: the one that signs with it.
        .find(|w| w.profile == Profile::ViberBot && w.secret == token);
    let now = state.clock.now();
    if url.is_empty() {
        if let Some(webhook) = existing {
            state
                .store
                .delete_webhook(&account_id, &webhook.id, now)
                .await
                .map_err(|e| (ViberStatus::GeneralError, e.to_string()))?;
        }
        return Ok(None);
    }
    if let Some(types) = &body.event_types
        && let Some(unknown) = types.iter().find(|t| !VIBER_EVENT_TYPES.contains(&t.as_str()))
    {
        return Err((ViberStatus::BadData, format!("event_types: unknown event type `{unknown}`")));
    }
    validate_url(&url, state.targets).map_err(|e| (ViberStatus::InvalidUrl, e.message))?;
    verify_availability(state, &url, token, now).await?;

    // Mandatory events are always delivered, whatever the filter says. No
    // filter means every Viber callback, never every event of the account:
    // a bot token is held in clear by the bot, so what it registers must not
    // reach the account's other channels.
    let requested: Vec<String> = match &body.event_types {
        Some(types) => types.clone(),
        None => VIBER_EVENT_TYPES.iter().map(|s| s.to_string()).collect(),
    };
    let mut all: Vec<String> = VIBER_MANDATORY_EVENTS.iter().map(|s| s.to_string()).collect();
    for event_type in requested {
        if !all.contains(&event_type) {
            all.push(event_type);
        }
    }
    let filter = Some(all);
    let options = ProfileOptions { template: None, send_name: body.send_name, send_photo: body.send_photo };
    let result = match existing {
        Some(mut webhook) => {
            let read_at = webhook.updated_at;
            webhook.url = url;
            webhook.event_types = filter;
            webhook.options = options;
            webhook.secret = token.to_owned();
            webhook.previous_secret = None;
            webhook.enabled = true;
            webhook.updated_at = now;
            state.store.update_webhook(webhook, read_at).await
        }
        None => {
            let webhook = Webhook {
                description: "viber bot (set_webhook)".into(),
                event_types: filter,
                options,
                ..Webhook::new(&account_id, &url, Profile::ViberBot, token.to_owned(), now)
            };
            state.store.create_webhook(webhook).await
        }
    };
    result.map_err(|e| (ViberStatus::GeneralError, e.to_string()))?;
    Ok(Some(viber_event_types_reply(body.event_types.as_deref())))
}

/// Sends the `webhook` callback Viber sends before accepting a URL; only an
/// HTTP 200 passes.
async fn verify_availability(state: &AppState, url: &str, token: &str, now: Timestamp) -> Result<(), Failure> {
    let message_token: u64 = rand::random::<u64>() >> 1;
    let body = json!({
        "event": "webhook",
        "timestamp": now.0,
        "chat_hostname": "SN-HERALD_",
        "message_token": message_token,
    })
    .to_string();
    let signature = HeaderValue::try_from(signing::hex_hmac(token.as_bytes(), body.as_bytes()))
        .map_err(|_| (ViberStatus::GeneralError, "could not sign the verification callback".to_owned()))?;
    let request = OutgoingRequest {
        method: http::Method::POST,
        url: url.to_owned(),
        headers: vec![
            (http::header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (http::header::USER_AGENT, HeaderValue::from_static(crate::profile::USER_AGENT)),
            (HeaderName::from_static("x-viber-content-signature"), signature),
        ],
        body: body.into(),
    };
    let timeout = std::time::Duration::from_millis(Profile::ViberBot.default_timeout_ms());
    match state.outbound.send(request, timeout).await {
        Ok(response) if response.status == 200 => Ok(()),
        Ok(response) => Err((
            ViberStatus::InvalidUrl,
            format!("the webhook answered the verification callback with {}, not 200", response.status),
        )),
        Err(err) => Err((ViberStatus::InvalidUrl, format!("verification callback failed: {}", err.message))),
    }
}
