//! Profiles: how a webhook's requests look. A profile decides the body
//! (envelope), the headers and signature, and the default retry policy and
//! timeout. The engine calls `render` and knows nothing of any profile's
//! shape; adding a profile means adding a file here and a variant below.

mod business;
mod compose;
mod routee;
mod standard;
mod viber_bot;
mod wwebjs;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Serialize};

pub use compose::{BodyFormat, ComposeMethod, ComposeSpec, check_compose, sample_url};
pub use viber_bot::{VIBER_EVENT_TYPES, VIBER_MANDATORY_EVENTS, viber_event_types_reply};

use crate::model::{DueDelivery, Timestamp, Webhook};
use crate::retry::RetryPolicy;
use crate::signing;

/// The longest URL a `compose` template may render to: receivers' servers
/// commonly refuse longer ones.
pub const MAX_RENDERED_URL: usize = 8 * 1024;
/// The most a `compose` template's headers may render to, all together.
pub const MAX_RENDERED_HEADERS: usize = 16 * 1024;

/// The user agent Herald sends unless a profile or webhook says otherwise.
pub const USER_AGENT: &str = concat!("Herald-Webhooks/", env!("CARGO_PKG_VERSION"));

/// How a webhook's requests look. One variant per seed system, plus
/// Standard Webhooks; each lives in its own file with the same shape: a
/// `SPEC` and a `render` function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Standard Webhooks: `{"type","timestamp","data"}`, `webhook-*` headers.
    #[default]
    Standard,
    /// Seeds 000/001: `{"event","payload"}`, hex `Signature`.
    Business,
    /// Seeds 000/001: a template of method, URL, headers and body.
    Compose,
    /// Seed 002: Viber Bot callbacks, `X-Viber-Content-Signature`.
    ViberBot,
    /// Seed 003: Routee campaign status callbacks, unsigned.
    Routee,
    /// Seed 004: WhatsApp Web API `{"event","data","timestamp"}`, `X-Webhook-Signature`.
    Wwebjs,
}

/// What a profile is, as data.
pub struct ProfileSpec {
    pub name: &'static str,
    pub retry_preset: &'static str,
    pub timeout_ms: u64,
    pub secret: SecretKind,
}

/// What a profile signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// A `whsec_` secret (or a `whsk_` ed25519 key, which signs `v1a`),
    /// always present, generated when not given.
    Standard,
    /// Any string; when absent the profile signs with the webhook id.
    OptionalOrWebhookId,
    /// Any string; when absent requests are unsigned.
    Optional,
    /// Any string (the Viber bot's auth token); generated when not given.
    Token,
    /// Nothing is signed.
    Unsigned,
}

pub const PROFILES: &[Profile] =
    &[Profile::Standard, Profile::Business, Profile::Compose, Profile::ViberBot, Profile::Routee, Profile::Wwebjs];

impl Profile {
    pub fn spec(self) -> &'static ProfileSpec {
        match self {
            Profile::Standard => &standard::SPEC,
            Profile::Business => &business::SPEC,
            Profile::Compose => &compose::SPEC,
            Profile::ViberBot => &viber_bot::SPEC,
            Profile::Routee => &routee::SPEC,
            Profile::Wwebjs => &wwebjs::SPEC,
        }
    }

    pub fn parse(name: &str) -> Result<Profile, String> {
        PROFILES.iter().copied().find(|p| p.name() == name).ok_or_else(|| {
            let names: Vec<&str> = PROFILES.iter().map(|p| p.name()).collect();
            format!("profile: unknown profile `{name}` (available: {})", names.join(", "))
        })
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn default_retry(self) -> RetryPolicy {
        RetryPolicy::preset(self.spec().retry_preset)
    }

    pub fn default_timeout_ms(self) -> u64 {
        self.spec().timeout_ms
    }

    /// Checks a caller-supplied secret for this profile.
    pub fn validate_secret(self, secret: &str) -> Result<(), String> {
        match self.spec().secret {
            SecretKind::Standard => signing::validate_secret(secret),
            SecretKind::Unsigned => Err(format!("secret: the `{}` profile sends unsigned requests", self.name())),
            _ if secret.is_empty() || secret.len() > 256 || !secret.bytes().all(|b| b.is_ascii_graphic()) => {
                Err("secret: must be 1 to 256 visible ASCII characters".to_owned())
            }
            _ => Ok(()),
        }
    }

    /// The secret a new webhook gets when none is given ("" for none).
    pub fn initial_secret(self) -> String {
        match self.spec().secret {
            SecretKind::Standard => signing::generate_secret(),
            SecretKind::Token => signing::generate_token(),
            _ => String::new(),
        }
    }

    /// The request for one attempt of `due`, signed as of `now`. The
    /// webhook's custom headers come first; the profile's own headers
    /// (content type, signature) are added after and cannot be overridden,
    /// since `api::webhooks` refuses custom headers with those names.
    /// Fails only for a `compose` template whose rendering passes its
    /// limits (`MAX_RENDERED_URL`, `MAX_RENDERED_HEADERS`, `max_body`);
    /// every other profile's request is the payload's size plus an envelope.
    pub fn render(self, due: &DueDelivery, now: Timestamp, max_body: usize) -> Result<OutgoingRequest, String> {
        let mut request = OutgoingRequest {
            method: Method::POST,
            url: due.webhook.url.clone(),
            headers: Vec::with_capacity(due.webhook.headers.len() + 5),
            body: Bytes::new(),
        };
        for (name, value) in &due.webhook.headers {
            // Validated when saved; a header that no longer parses is skipped
            // rather than failing every attempt.
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::try_from(value.as_str()))
            {
                request.headers.push((name, value));
            }
        }
        match self {
            Profile::Standard => standard::render(due, now, &mut request),
            Profile::Business => business::render(due, &mut request),
            Profile::Compose => compose::render(due, &mut request, max_body)?,
            Profile::ViberBot => viber_bot::render(due, &mut request),
            Profile::Routee => routee::render(due, &mut request),
            Profile::Wwebjs => wwebjs::render(due, &mut request),
        }
        Ok(request)
    }
}

/// Settings only some profiles use, stored with the webhook.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileOptions {
    /// `compose`: the request template (the URL template is the webhook's `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ComposeSpec>,
    /// `viber-bot`: keep the user's name in payloads (Viber's default: false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub send_name: bool,
    /// `viber-bot`: keep the user's avatar in payloads (Viber's default: false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub send_photo: bool,
}

/// The key of the seed systems' hex HMAC signatures: the webhook's secret
/// where one is set, else its id (seeds 000/001: "webhook id as secret").
fn hmac_key(webhook: &Webhook) -> &[u8] {
    if webhook.secret.is_empty() { webhook.id.as_bytes() } else { webhook.secret.as_bytes() }
}

fn push_header(request: &mut OutgoingRequest, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::try_from(value) {
        request.headers.push((HeaderName::from_static(name), value));
    }
}

fn push_default_user_agent(request: &mut OutgoingRequest, agent: &'static str) {
    if !request.headers.iter().any(|(n, _)| n == http::header::USER_AGENT) {
        request.headers.push((http::header::USER_AGENT, HeaderValue::from_static(agent)));
    }
}

fn push_json_body(request: &mut OutgoingRequest, body: String) {
    request.headers.push((http::header::CONTENT_TYPE, HeaderValue::from_static("application/json")));
    request.body = body.into();
}

/// The payload as a JSON value (it was validated at ingest).
fn payload_value(due: &DueDelivery) -> serde_json::Value {
    serde_json::from_str(&due.payload).unwrap_or(serde_json::Value::Null)
}

/// Header names a webhook's custom headers may not set: the transport's own
/// and every profile's signature headers.
pub const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-authorization",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "signature",
    "x-viber-content-signature",
    "x-webhook-signature",
];

/// One HTTP request, ready to send.
#[derive(Debug, Clone)]
pub struct OutgoingRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl OutgoingRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.as_str() == name).and_then(|(_, v)| v.to_str().ok())
    }
}

/// A JSON string literal for `text`.
pub(crate) fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("strings always serialise")
}
