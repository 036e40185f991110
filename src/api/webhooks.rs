//! `/v1/webhooks`: create, list, read, update, delete, read and rotate the
//! secret, and send a test event.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::extract::OptionalJson;
use super::{AccountCaller, AppState, JsonBody};
use crate::delivery::Circuit;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::model::{IngestOutcome, RateLimit, RetiringSecret, TargetPolicy, Timestamp, Webhook};
use crate::profile::{ComposeSpec, Profile, ProfileOptions, RESERVED_HEADERS, check_compose};
use crate::retry::RetryPolicy;
use crate::{filter, http_client, signing};

pub const MAX_URL_LEN: usize = 2048;
pub const MAX_HEADERS: usize = 50;
pub const TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 100..=120_000;
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where to send (a URL template for the `compose` profile).
    url: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    retry: Option<RetryPolicy>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    rate_limit: Option<RateLimit>,
    #[serde(default)]
    secret: Option<String>,
    /// `standard` only: `hmac-sha256` (`v1`, the default) or `ed25519` (`v1a`).
    #[serde(default)]
    signing: Option<String>,
    #[serde(default)]
    template: Option<ComposeSpec>,
    #[serde(default)]
    send_name: Option<bool>,
    #[serde(default)]
    send_photo: Option<bool>,
}

/// Absent fields stay as they are; `null` resets the nullable ones.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    url: Option<String>,
    description: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    event_types: Option<Option<Vec<String>>>,
    enabled: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
    profile: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RetryPolicy>)]
    retry: Option<Option<RetryPolicy>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>)]
    timeout_ms: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RateLimit>)]
    rate_limit: Option<Option<RateLimit>>,
    template: Option<ComposeSpec>,
    send_name: Option<bool>,
    send_photo: Option<bool>,
}

/// Tells a field that is present (even as `null`) from one that is absent.
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Serialize, ToSchema)]
pub struct WebhookView<'a> {
    id: &'a str,
    url: &'a str,
    description: &'a str,
    /// Event-type filters (`exact`, `prefix*`); `null` takes every event.
    #[schema(value_type = Option<Vec<String>>)]
    event_types: &'a Option<Vec<String>>,
    enabled: bool,
    #[schema(value_type = BTreeMap<String, String>)]
    headers: &'a BTreeMap<String, String>,
    profile: &'static str,
    /// The policy set on the webhook; `null` for its profile's default.
    #[schema(value_type = Option<RetryPolicy>)]
    retry: &'a Option<RetryPolicy>,
    timeout_ms: Option<u64>,
    effective_retry: RetryPolicy,
    effective_timeout_ms: u64,
    /// `compose`: the request template. (`ProfileOptions`' fields, each
    /// named here: that type refuses unknown fields, which its schema says,
    /// so it cannot be flattened into this one's.)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<ComposeSpec>)]
    template: Option<&'a ComposeSpec>,
    /// `viber-bot`: the user's name is kept in payloads.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    send_name: bool,
    /// `viber-bot`: the user's avatar is kept in payloads.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    send_photo: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
    /// Why Herald disabled it (its receiver answered 410 Gone); null when
    /// enabled, or disabled by the account.
    disabled_reason: Option<&'a str>,
    disabled_at: Option<Timestamp>,
    rate_limit: Option<RateLimit>,
    /// The `whpk_` key receivers verify `v1a` signatures with: only for a
    /// `standard` webhook that signs with ed25519.
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
}

impl<'a> From<&'a Webhook> for WebhookView<'a> {
    fn from(w: &'a Webhook) -> Self {
        WebhookView {
            id: &w.id,
            url: &w.url,
            description: &w.description,
            event_types: &w.event_types,
            enabled: w.enabled,
            headers: &w.headers,
            profile: w.profile.name(),
            retry: &w.retry,
            timeout_ms: w.timeout_ms,
            effective_retry: w.effective_retry().resolve(),
            effective_timeout_ms: w.effective_timeout_ms(),
            template: w.options.template.as_ref(),
            send_name: w.options.send_name,
            send_photo: w.options.send_photo,
            created_at: w.created_at,
            updated_at: w.updated_at,
            disabled_reason: w.disabled.as_ref().map(|d| d.reason.as_str()),
            disabled_at: w.disabled.as_ref().map(|d| d.at),
            rate_limit: w.rate_limit,
            public_key: public_key(w.profile, &w.secret),
        }
    }
}

/// The `whpk_` public key of a secret, for a `standard` webhook that signs
/// with ed25519 (the seed profiles use any string, `whsk_…` included, as a
/// plain HMAC key).
fn public_key(profile: Profile, secret: &str) -> Option<String> {
    (profile == Profile::Standard).then(|| signing::public_key(secret)).flatten()
}

/// What `"signing"` asks for: `Some(true)` for ed25519, `Some(false)` for
/// HMAC-SHA256, `None` when absent. Only the `standard` profile has a choice.
fn parse_signing(signing: Option<&str>, profile: Profile) -> Result<Option<bool>, ApiError> {
    let ed25519 = match signing {
        None => return Ok(None),
        Some("hmac-sha256") => false,
        Some("ed25519") => true,
        Some(other) => {
            return Err(ApiError::invalid_field(format!(
                "signing: unknown scheme `{other}` (available: hmac-sha256, ed25519)"
            )));
        }
    };
    if profile != Profile::Standard {
        return Err(ApiError::invalid_field(format!(
            "signing: only the standard profile has a choice of scheme, not `{}`",
            profile.name()
        )));
    }
    Ok(Some(ed25519))
}

/// Checks a target URL; IP literals and `localhost` that are not public
/// are refused early here, and every address again at connect time.
pub fn validate_url(raw: &str, policy: TargetPolicy) -> Result<(), ApiError> {
    if raw.len() > MAX_URL_LEN {
        return Err(ApiError::invalid_field(format!("url: at most {MAX_URL_LEN} characters")));
    }
    let url = url::Url::parse(raw).map_err(|e| ApiError::invalid_field(format!("url: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ApiError::invalid_field(format!("url: scheme must be http or https, not `{}`", url.scheme())));
    }
    if policy.require_https && url.scheme() != "https" {
        return Err(ApiError::invalid_field(
            "url: this herald sends only to https receivers (--require-https); use an https url",
        ));
    }
    let Some(host) = url.host() else {
        return Err(ApiError::invalid_field("url: must name a host"));
    };
    if policy.allow_private {
        return Ok(());
    }
    let refused = match host {
        url::Host::Ipv4(ip) => !http_client::is_public(ip.into()),
        url::Host::Ipv6(ip) => !http_client::is_public(ip.into()),
        url::Host::Domain(name) => name == "localhost" || name.ends_with(".localhost"),
    };
    if refused {
        return Err(ApiError::invalid_field(format!(
            "url: `{host}` is not a public address; start herald with --allow-private-targets to allow it"
        )));
    }
    Ok(())
}

fn validate_headers(headers: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ApiError> {
    if headers.len() > MAX_HEADERS {
        return Err(ApiError::invalid_field(format!("headers: at most {MAX_HEADERS}")));
    }
    let mut normalised = BTreeMap::new();
    for (name, value) in headers {
        let parsed = HeaderName::try_from(name.as_str())
            .map_err(|_| ApiError::invalid_field(format!("headers.{name}: not a valid header name")))?;
        if RESERVED_HEADERS.contains(&parsed.as_str()) {
            return Err(ApiError::invalid_field(format!(
                "headers.{name}: set by herald itself and cannot be overridden"
            )));
        }
        // `HeaderValue` also takes bytes past ASCII (obsolete `obs-text`),
        // which would go out as raw UTF-8 that receivers read differently.
        if value.len() > 4096 || !value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
            return Err(ApiError::invalid_field(format!(
                "headers.{name}: value must be at most 4096 visible ASCII characters (and spaces), without line breaks"
            )));
        }
        normalised.insert(parsed.as_str().to_owned(), value.clone());
    }
    Ok(normalised)
}

fn validate_retry(retry: &Option<RetryPolicy>) -> Result<(), ApiError> {
    match retry {
        Some(policy) => policy.validate().map_err(ApiError::invalid_field),
        None => Ok(()),
    }
}

fn validate_timeout(timeout_ms: Option<u64>) -> Result<(), ApiError> {
    match timeout_ms {
        Some(t) if !TIMEOUT_RANGE_MS.contains(&t) => Err(ApiError::invalid_field(format!(
            "timeout_ms: must be between {} and {}",
            TIMEOUT_RANGE_MS.start(),
            TIMEOUT_RANGE_MS.end()
        ))),
        _ => Ok(()),
    }
}

fn validate_description(description: &str) -> Result<(), ApiError> {
    if description.len() > 1000 {
        return Err(ApiError::invalid_field("description: at most 1000 characters"));
    }
    Ok(())
}

fn validate_event_types(event_types: &Option<Vec<String>>) -> Result<(), ApiError> {
    match event_types {
        Some(patterns) => filter::validate(patterns).map_err(ApiError::invalid_field),
        None => Ok(()),
    }
}

async fn load(state: &AppState, account_id: &str, id: &str) -> Result<Webhook, ApiError> {
    state.store.get_webhook(account_id, id).await?.ok_or_else(|| ApiError::not_found("webhook"))
}

/// Checks a whole webhook, as create and update both make it, and
/// normalises its header names: one validation, so an update can never
/// store what a create refuses. Returns the template's warnings.
fn validate_webhook(webhook: &mut Webhook, policy: TargetPolicy) -> Result<Vec<String>, ApiError> {
    validate_description(&webhook.description)?;
    validate_event_types(&webhook.event_types)?;
    webhook.headers = validate_headers(&webhook.headers)?;
    validate_retry(&webhook.retry)?;
    validate_timeout(webhook.timeout_ms)?;
    if let Some(limit) = &webhook.rate_limit {
        limit.validate().map_err(ApiError::invalid_field)?;
    }
    check_profile_fields(webhook, policy)
}

/// Checks what depends on the profile: the URL (a template for
/// `compose`), the template itself and the profile-only options. Returns
/// the template's warnings.
fn check_profile_fields(webhook: &Webhook, policy: TargetPolicy) -> Result<Vec<String>, ApiError> {
    // A compose URL is a template: its own length is bounded too, not
    // only the sample's (placeholders shrink to one character there).
    if webhook.url.len() > MAX_URL_LEN {
        return Err(ApiError::invalid_field(format!("url: at most {MAX_URL_LEN} characters")));
    }
    let mut warnings = Vec::new();
    match (webhook.profile, &webhook.options.template) {
        (Profile::Compose, Some(spec)) => {
            warnings = check_compose(&webhook.url, spec).map_err(ApiError::invalid_field)?;
            let sample = crate::profile::sample_url(&webhook.url).map_err(ApiError::invalid_field)?;
            validate_url(&sample, policy)?;
        }
        (Profile::Compose, None) => {
            return Err(ApiError::invalid_field("template: the compose profile needs a template"));
        }
        (_, Some(_)) => {
            return Err(ApiError::invalid_field("template: only the compose profile takes a template"));
        }
        (_, None) => validate_url(&webhook.url, policy)?,
    }
    let options = &webhook.options;
    if webhook.profile != Profile::ViberBot && (options.send_name || options.send_photo) {
        return Err(ApiError::invalid_field("send_name, send_photo: only the viber-bot profile takes these"));
    }
    Ok(warnings)
}

/// A webhook's view with what one answer adds to it: the template's
/// warnings (create, update), the secret (create), the circuit (read).
#[derive(Serialize, ToSchema)]
pub struct WebhookAnswer<'a> {
    #[serde(flatten)]
    view: WebhookView<'a>,
    /// The template's warnings (create, update).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    /// The signing secret (create only).
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
    /// Its circuit breaker (read only).
    #[serde(skip_serializing_if = "Option::is_none")]
    circuit: Option<Circuit>,
}

/// Every webhook of the account.
#[derive(Serialize, ToSchema)]
pub struct WebhookList<'a> {
    data: Vec<WebhookView<'a>>,
}

/// A webhook's signing secrets.
#[derive(Serialize, ToSchema)]
pub struct Secrets<'a> {
    secret: &'a str,
    /// The `whpk_` public key, for an ed25519 webhook.
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    /// The secret before the last rotation, while it still signs beside
    /// the new one.
    previous_secret: Option<PreviousSecret<'a>>,
}

#[derive(Serialize, ToSchema)]
pub struct PreviousSecret<'a> {
    secret: &'a str,
    expires_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
}

impl<'a> WebhookAnswer<'a> {
    fn of(webhook: &'a Webhook) -> WebhookAnswer<'a> {
        WebhookAnswer { view: WebhookView::from(webhook), warnings: Vec::new(), secret: None, circuit: None }
    }
}

/// `POST /v1/webhooks`: a new webhook; its secret is in the answer.
#[utoipa::path(
    post,
    path = "/webhooks",
    tag = "webhooks",
    security(("bearer" = [])),
    request_body = CreateWebhook,
    responses((status = 201, body = WebhookAnswer), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn create(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    JsonBody(body): JsonBody<CreateWebhook>,
) -> Result<Response, ApiError> {
    let profile = Profile::parse(body.profile.as_deref().unwrap_or("standard")).map_err(ApiError::invalid_field)?;
    let ed25519 = parse_signing(body.signing.as_deref(), profile)?;
    let secret = match body.secret {
        Some(secret) => {
            profile.validate_secret(&secret).map_err(ApiError::invalid_field)?;
            match ed25519 {
                Some(true) if !signing::is_ed25519_secret(&secret) => {
                    return Err(ApiError::invalid_field("secret: ed25519 signing takes a `whsk_` key"));
                }
                Some(false) if signing::is_ed25519_secret(&secret) => {
                    return Err(ApiError::invalid_field("secret: a `whsk_` key signs with ed25519, not hmac-sha256"));
                }
                _ => {}
            }
            // A token is a credential: as a secret it would be echoed back.
            if is_herald_token(&state, &secret).await? {
                return Err(ApiError::invalid_field("secret: a herald token cannot be a webhook secret"));
            }
            secret
        }
        None if ed25519 == Some(true) => signing::generate_ed25519_secret(),
        None => profile.initial_secret(),
    };
    let now = state.clock.now();
    let mut webhook = Webhook {
        description: body.description,
        event_types: body.event_types,
        enabled: body.enabled.unwrap_or(true),
        headers: body.headers,
        options: ProfileOptions {
            template: body.template,
            send_name: body.send_name.unwrap_or(false),
            send_photo: body.send_photo.unwrap_or(false),
        },
        retry: body.retry,
        timeout_ms: body.timeout_ms,
        rate_limit: body.rate_limit,
        ..Webhook::new(&account_id, &body.url, profile, secret, now)
    };
    let warnings = validate_webhook(&mut webhook, state.targets)?;
    state.store.create_webhook(webhook.clone()).await?;
    let answer = WebhookAnswer { warnings, secret: Some(&webhook.secret), ..WebhookAnswer::of(&webhook) };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `GET /v1/webhooks`: every webhook of the account.
#[utoipa::path(
    get,
    path = "/webhooks",
    tag = "webhooks",
    security(("bearer" = [])),
    responses((status = 200, body = WebhookList), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn list(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
) -> Result<Response, ApiError> {
    let webhooks = state.store.list_webhooks(&account_id).await?;
    Ok(Json(WebhookList { data: webhooks.iter().map(WebhookView::from).collect() }).into_response())
}

/// `GET /v1/webhooks/{id}`: one webhook and its circuit breaker.
#[utoipa::path(
    get,
    path = "/webhooks/{id}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "a webhook id")),
    responses((status = 200, body = WebhookAnswer), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn get(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let webhook = load(&state, &account_id, &id).await?;
    let circuit = Some(state.engine.circuit(&webhook.id));
    Ok(Json(WebhookAnswer { circuit, ..WebhookAnswer::of(&webhook) }).into_response())
}

/// `PATCH /v1/webhooks/{id}`: change some of a webhook's fields.
#[utoipa::path(
    patch,
    path = "/webhooks/{id}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "a webhook id")),
    request_body = UpdateWebhook,
    responses((status = 200, body = WebhookAnswer), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn update(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateWebhook>,
) -> Result<Response, ApiError> {
    let mut webhook = load(&state, &account_id, &id).await?;
    let (read_at, was_enabled) = (webhook.updated_at, webhook.enabled);
    if let Some(url) = body.url {
        webhook.url = url;
    }
    if let Some(description) = body.description {
        webhook.description = description;
    }
    if let Some(event_types) = body.event_types {
        webhook.event_types = event_types;
    }
    if let Some(enabled) = body.enabled {
        webhook.enabled = enabled;
        // Enabled again, or disabled by the account: no longer Herald's doing.
        webhook.disabled = None;
    }
    if let Some(headers) = body.headers {
        webhook.headers = headers;
    }
    if let Some(profile) = body.profile {
        webhook.profile = Profile::parse(&profile).map_err(ApiError::invalid_field)?;
        // A secret the new profile cannot sign with is replaced.
        if webhook.profile.validate_secret(&webhook.secret).is_err() {
            webhook.secret = webhook.profile.initial_secret();
            webhook.previous_secret = None;
        }
    }
    if let Some(template) = body.template {
        webhook.options.template = Some(template);
    }
    if webhook.profile != Profile::Compose {
        webhook.options.template = None;
    }
    if let Some(send_name) = body.send_name {
        webhook.options.send_name = send_name;
    }
    if let Some(send_photo) = body.send_photo {
        webhook.options.send_photo = send_photo;
    }
    if let Some(retry) = body.retry {
        webhook.retry = retry;
    }
    if let Some(timeout_ms) = body.timeout_ms {
        webhook.timeout_ms = timeout_ms;
    }
    if let Some(rate_limit) = body.rate_limit {
        webhook.rate_limit = rate_limit;
    }
    let warnings = validate_webhook(&mut webhook, state.targets)?;
    webhook.updated_at = state.clock.now();
    state.store.update_webhook(webhook.clone(), read_at).await?;
    if webhook.enabled && !was_enabled {
        // Enabled again: its failures so far no longer count.
        state.engine.forget_failures(&webhook).await?;
    }
    Ok(Json(WebhookAnswer { warnings, ..WebhookAnswer::of(&webhook) }).into_response())
}

/// `DELETE /v1/webhooks/{id}`.
#[utoipa::path(
    delete,
    path = "/webhooks/{id}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "a webhook id")),
    responses((status = 204, description = "deleted"), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn delete(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_webhook(&account_id, &id, state.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/webhooks/{id}/secret`. Never answers with a token: a viber-bot
/// webhook's secret is its bot's auth token, and a webhook may still sign
/// with a Herald token from before bot tokens (`/pa/set_webhook` stored the
/// account's API token). A token is a credential, shown once when made.
#[utoipa::path(
    get,
    path = "/webhooks/{id}/secret",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "a webhook id")),
    responses((status = 200, body = Secrets), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn secret(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let webhook = load(&state, &account_id, &id).await?;
    if webhook.profile == Profile::ViberBot {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "a viber-bot webhook signs with its bot's auth token, which herald shows only once, when it is made",
        ));
    }
    let now = state.clock.now();
    let previous = webhook.previous_secret.as_ref().filter(|p| p.expires_at > now);
    for shown in std::iter::once(&webhook.secret).chain(previous.map(|p| &p.secret)) {
        if is_herald_token(&state, shown).await? {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "this webhook signs with a herald token, which herald never shows again: rotate its secret",
            ));
        }
    }
    Ok(Json(secrets_view(&webhook, previous)).into_response())
}

/// The answer of `/secret` and `/rotate-secret`: the secrets, and for an
/// ed25519 webhook the `whpk_` public key of each, so a receiver can trust
/// both during a rotation.
fn secrets_view<'a>(webhook: &'a Webhook, previous: Option<&'a RetiringSecret>) -> Secrets<'a> {
    Secrets {
        secret: &webhook.secret,
        public_key: public_key(webhook.profile, &webhook.secret),
        previous_secret: previous.map(|p| PreviousSecret {
            secret: &p.secret,
            expires_at: p.expires_at,
            public_key: public_key(webhook.profile, &p.secret),
        }),
    }
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// The new secret; generated when absent.
    secret: Option<String>,
    /// How long the old secret keeps signing beside the new one (at most
    /// 604800; default a day).
    #[schema(maximum = 604800)]
    grace_seconds: Option<u64>,
}

/// Whether a secret is a token Herald accepts (of any kind).
async fn is_herald_token(state: &AppState, secret: &str) -> Result<bool, ApiError> {
    Ok(!secret.is_empty() && state.store.authenticate(&signing::token_hash(secret)).await?.is_some())
}

/// `POST /v1/webhooks/{id}/rotate-secret`. Refused for a viber-bot webhook:
/// its bot verifies with its own auth token, so any other secret would
/// break the bot; the way to change it is a new bot token.
#[utoipa::path(
    post,
    path = "/webhooks/{id}/rotate-secret",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "a webhook id")),
    request_body(content = RotateSecret, description = "optional"),
    responses((status = 200, body = Secrets), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<RotateSecret>,
) -> Result<Response, ApiError> {
    let mut webhook = load(&state, &account_id, &id).await?;
    let read_at = webhook.updated_at;
    if webhook.profile == Profile::ViberBot {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "a viber-bot webhook signs with its bot's auth token, so a new secret would break the bot's checks: \
             to change it, make a token with POST /v1/viber/auth-tokens, call /pa/set_webhook with it, and remove \
             the old webhook (an empty url with the old token)",
        ));
    }
    let grace = body.grace_seconds.map(Duration::from_secs).unwrap_or(DEFAULT_ROTATION_GRACE);
    if grace > Duration::from_secs(7 * 24 * 3600) {
        return Err(ApiError::invalid_field("grace_seconds: at most 604800 (7 days)"));
    }
    let new_secret = match body.secret {
        Some(secret) => secret,
        // An ed25519 webhook gets a new keypair, an HMAC one a new secret.
        None if webhook.profile == Profile::Standard && signing::is_ed25519_secret(&webhook.secret) => {
            signing::generate_ed25519_secret()
        }
        None if webhook.profile == Profile::Standard => signing::generate_secret(),
        // The seed systems' secrets are plain strings.
        None => signing::generate_token(),
    };
    webhook.profile.validate_secret(&new_secret).map_err(ApiError::invalid_field)?;
    // A token is a credential: as a secret it would be shown by this answer.
    if is_herald_token(&state, &new_secret).await? {
        return Err(ApiError::invalid_field("secret: a herald token cannot be a webhook secret"));
    }
    let now = state.clock.now();
    // Grace is real time, not scaled: it is about receivers redeploying.
    let expires_at = Timestamp(now.0.saturating_add(grace.as_millis() as i64));
    let old = std::mem::replace(&mut webhook.secret, new_secret);
    // Only Standard Webhooks can carry two signatures at once; the seed
    // profiles' single hex header switches to the new secret at once.
    webhook.previous_secret =
        (webhook.profile == Profile::Standard).then_some(RetiringSecret { secret: old, expires_at });
    webhook.updated_at = now;
    state.store.update_webhook(webhook.clone(), read_at).await?;
    Ok(Json(secrets_view(&webhook, webhook.previous_secret.as_ref())).into_response())
}

/// `POST /v1/webhooks/{id}/test`: a `webhook.test` event to this webhook alone.
#[utoipa::path(
    post,
    path = "/webhooks/{id}/test",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "a webhook id")),
    responses((status = 202, body = IngestOutcome), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn send_test(
    State(state): State<AppState>,
    AccountCaller(account_id): AccountCaller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<IngestOutcome>), ApiError> {
    let webhook = load(&state, &account_id, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(state.engine.send_test(&webhook).await?)))
}
