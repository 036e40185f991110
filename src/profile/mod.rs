//! Profiles: how a webhook's requests look. A profile decides the body
//! (envelope), the headers and signature, and the default retry policy and
//! timeout. The engine calls `render` and knows nothing of any profile's
//! shape; adding a profile means adding a file here and a variant below.

mod standard;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};

use crate::model::{DueDelivery, Timestamp};
use crate::retry::RetryPolicy;

/// The user agent Herald sends unless a profile says otherwise.
pub const USER_AGENT: &str = concat!("Herald-Webhooks/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Standard Webhooks: `{"type","timestamp","data"}`, `webhook-*` headers.
    #[default]
    Standard,
}

pub const PROFILE_NAMES: &[&str] = &["standard"];

impl Profile {
    pub fn parse(name: &str) -> Result<Profile, String> {
        match name {
            "standard" => Ok(Profile::Standard),
            other => Err(format!(
                "profile: unknown profile `{other}` (available: {})",
                PROFILE_NAMES.join(", ")
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::Standard => "standard",
        }
    }

    pub fn default_retry(self) -> RetryPolicy {
        match self {
            Profile::Standard => RetryPolicy::preset("standard"),
        }
    }

    pub fn default_timeout_ms(self) -> u64 {
        match self {
            Profile::Standard => 15_000,
        }
    }

    /// The request for one attempt of `due`, signed as of `now`. The
    /// webhook's custom headers come first; the profile's own headers
    /// (content type, signature) are added after and cannot be overridden,
    /// since `api::webhooks` refuses custom headers with those names.
    pub fn render(self, due: &DueDelivery, now: Timestamp) -> OutgoingRequest {
        let mut request = OutgoingRequest {
            method: Method::POST,
            url: due.webhook.url.clone(),
            headers: Vec::with_capacity(due.webhook.headers.len() + 5),
            body: Bytes::new(),
        };
        for (name, value) in &due.webhook.headers {
            // Validated when saved; a header that no longer parses is skipped
            // rather than failing every attempt.
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                request.headers.push((name, value));
            }
        }
        match self {
            Profile::Standard => standard::render(due, now, &mut request),
        }
        request
    }
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
        self.headers
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .and_then(|(_, v)| v.to_str().ok())
    }
}

/// A JSON string literal for `text`.
pub(crate) fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("strings always serialise")
}
