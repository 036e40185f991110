//! Domain types shared by the API, the store and the delivery engine: ids,
//! timestamps, webhooks, events, deliveries and attempts.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::profile::{Profile, ProfileOptions};
use crate::retry::RetryPolicy;

/// One running `herald serve`: what leases deliveries to it in a store
/// several nodes share. Made anew at each start.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeId(pub String);

impl NodeId {
    pub fn generate() -> NodeId {
        NodeId(new_id("node"))
    }
}

/// Milliseconds since the Unix epoch, as read from the one clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// UTC, to the millisecond, as the `time` crate's RFC 3339 formatter
    /// writes it (no fraction on a whole second, trailing zeros trimmed).
    pub fn to_rfc3339(self) -> String {
        let mut out = String::with_capacity(24);
        self.write_rfc3339(&mut out);
        out
    }

    /// `to_rfc3339` appended to `out`: every delivery's body carries one, so
    /// the digits are written straight in rather than through a formatter.
    pub fn write_rfc3339(self, out: &mut String) {
        let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000) else {
            out.push_str("1970-01-01T00:00:00Z");
            return;
        };
        if !(0..=9999).contains(&t.year()) {
            // RFC 3339 has four-digit years; the formatter refuses others.
            out.push_str("1970-01-01T00:00:00Z");
            return;
        }
        let digits = |out: &mut String, value: u32, width: u32| {
            for place in (0..width).rev() {
                out.push(char::from(b'0' + (value / 10u32.pow(place) % 10) as u8));
            }
        };
        digits(out, t.year() as u32, 4);
        out.push('-');
        digits(out, u32::from(u8::from(t.month())), 2);
        out.push('-');
        digits(out, u32::from(t.day()), 2);
        out.push('T');
        digits(out, u32::from(t.hour()), 2);
        out.push(':');
        digits(out, u32::from(t.minute()), 2);
        out.push(':');
        digits(out, u32::from(t.second()), 2);
        let mut ms = u32::from(t.millisecond());
        if ms != 0 {
            out.push('.');
            let mut width = 3;
            while ms % 10 == 0 {
                ms /= 10;
                width -= 1;
            }
            digits(out, ms, width);
        }
        out.push('Z');
    }

    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let t = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        Some(Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64))
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }
}

/// In the API document: an RFC 3339 date-time, as it is serialised.
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{KnownFormat, ObjectBuilder, SchemaFormat, schema::Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

/// Makes a new id: a prefix naming what it identifies, then a ULID, so ids
/// sort by creation time (the delivery log's cursor relies on that).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ulid::Ulid::new())
}

/// `new_id` stamped with the clock's time rather than the wall's, for ids
/// whose order stands for time (deliveries: the log's time filters are id
/// ranges). Ids made in one millisecond count up from a random start
/// (ULID's monotonic mode), so they sort in the order they were made and
/// a table keyed by them is only ever appended to: random order within a
/// millisecond split b-tree pages, left them part empty, and wrote more
/// of them per commit.
pub fn new_id_at(prefix: &str, at: Timestamp) -> String {
    static LAST: std::sync::Mutex<ulid::Ulid> = std::sync::Mutex::new(ulid::Ulid::nil());
    let ms = u64::try_from(at.0).unwrap_or(0);
    let id = {
        let mut last = LAST.lock().unwrap();
        let next = match last.timestamp_ms() == ms {
            true => last.increment(),
            false => None,
        };
        *last = next.unwrap_or_else(|| ulid::Ulid::from_parts(ms, rand::random::<u128>()));
        *last
    };
    let mut text = String::with_capacity(prefix.len() + 1 + ulid::ULID_LEN);
    text.push_str(prefix);
    text.push('_');
    text.push_str(id.array_to_str(&mut [0; ulid::ULID_LEN]));
    text
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Retrying,
    Success,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Retrying => "retrying",
            Self::Success => "success",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Self::Pending,
            "retrying" => Self::Retrying,
            "success" => Self::Success,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an attempt did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ErrorClass {
    /// No response within the webhook's timeout.
    Timeout,
    /// The TCP or TLS connection could not be made.
    Connect,
    /// The host name did not resolve.
    Dns,
    /// The target resolved to an address Herald may not send to.
    Blocked,
    /// The receiver answered with a non-2xx status (3xx included).
    Status,
    /// Anything else that broke the exchange (reset mid-body, bad URL …).
    Request,
    /// The request could not be built: a `compose` template rendered past
    /// its limits. Nothing was sent, and the receiver is not to blame.
    Render,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Dns => "dns",
            Self::Blocked => "blocked",
            Self::Status => "status",
            Self::Request => "request",
            Self::Render => "render",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "timeout" => Self::Timeout,
            "connect" => Self::Connect,
            "dns" => Self::Dns,
            "blocked" => Self::Blocked,
            "status" => Self::Status,
            "request" => Self::Request,
            "render" => Self::Render,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub created_at: Timestamp,
    /// Refuse event types the catalogue does not list.
    pub strict_event_types: bool,
    /// A webhook whose every attempt has failed for this long (on Herald's
    /// clock) is disabled.
    pub disable_after_seconds: u64,
}

/// The account's window of failure before a webhook is disabled, unless
/// the account sets its own: five days.
pub const DEFAULT_DISABLE_AFTER_SECONDS: u64 = 5 * 24 * 3600;

/// Who a token belongs to, and so what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Operator,
    /// An account's API token: all of `/v1` for that account.
    Account(String),
    /// A Viber bot auth token of an account: good only for
    /// `/pa/set_webhook`, and the key its bot's webhook signs with. The
    /// bot's side holds it in clear (the SDK verifies with it), so it must
    /// unlock nothing else.
    ViberBot(String),
}

/// Which webhook URLs the operator allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Loopback, private and link-local targets too (`--allow-private-targets`).
    pub allow_private: bool,
    /// `https` only (`--require-https`; seed 002: Viber calls only HTTPS
    /// receivers with a certificate from a trusted CA).
    pub require_https: bool,
}

/// The most requests a webhook's receiver gets: `per_second` on average,
/// up to `burst` at once after a quiet spell (a token bucket).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    #[serde(default = "RateLimit::default_burst")]
    pub burst: u32,
}

/// The slowest rate a webhook may ask for: one request in about 17 minutes.
pub const MIN_RATE: f64 = 0.001;

impl RateLimit {
    fn default_burst() -> u32 {
        1
    }

    /// Checks the limit; the message names the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.per_second.is_finite() && (MIN_RATE..=100_000.0).contains(&self.per_second)) {
            return Err(format!("rate_limit.per_second: must be between {MIN_RATE} and 100000"));
        }
        if !(1..=100_000).contains(&self.burst) {
            return Err("rate_limit.burst: must be between 1 and 100000".to_owned());
        }
        Ok(())
    }
}

/// Why and when Herald itself disabled a webhook (its receiver said it is
/// gone); a webhook the account disabled has none.
#[derive(Debug, Clone, PartialEq)]
pub struct Disabled {
    pub reason: String,
    pub at: Timestamp,
}

/// A signing secret that keeps signing beside the current one until
/// `expires_at` (secret rotation).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RetiringSecret {
    pub secret: String,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub account_id: String,
    pub url: String,
    pub description: String,
    /// `None` means every event.
    pub event_types: Option<Vec<String>>,
    pub enabled: bool,
    pub headers: BTreeMap<String, String>,
    pub profile: Profile,
    pub options: ProfileOptions,
    /// `None` means the profile's default policy.
    pub retry: Option<RetryPolicy>,
    /// `None` means the profile's default timeout.
    pub timeout_ms: Option<u64>,
    pub secret: String,
    pub previous_secret: Option<RetiringSecret>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set, with `enabled` false, when Herald disabled the webhook.
    pub disabled: Option<Disabled>,
    /// Since when its every attempt has failed, as the store last noted it
    /// (read only: the engine notes it through its own verbs).
    pub failing_since: Option<Timestamp>,
    /// `None`: as fast as its lane allows.
    pub rate_limit: Option<RateLimit>,
}

impl Webhook {
    /// A new webhook of `account_id` with a fresh id and the defaults for
    /// the rest: every event, enabled, no custom headers, its profile's
    /// retry policy and timeout, no rate limit. Callers set what differs
    /// with `..Webhook::new(…)`.
    pub fn new(account_id: &str, url: &str, profile: Profile, secret: String, now: Timestamp) -> Webhook {
        Webhook {
            id: new_id("wh"),
            account_id: account_id.to_owned(),
            url: url.to_owned(),
            description: String::new(),
            event_types: None,
            enabled: true,
            headers: BTreeMap::new(),
            profile,
            options: ProfileOptions::default(),
            retry: None,
            timeout_ms: None,
            secret,
            previous_secret: None,
            created_at: now,
            updated_at: now,
            disabled: None,
            failing_since: None,
            rate_limit: None,
        }
    }

    pub fn effective_retry(&self) -> RetryPolicy {
        self.retry.clone().unwrap_or_else(|| self.profile.default_retry())
    }

    pub fn effective_timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or_else(|| self.profile.default_timeout_ms())
    }

    /// The secrets that sign a request sent at `now`: the current one
    /// first. ("" is no secret: see `profile::SecretKind`.)
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let Some(old) = &self.previous_secret
            && old.expires_at > now
        {
            secrets.push(old.secret.as_str());
        }
        secrets
    }
}

/// An event as the ingest API accepted it, before it is stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: Option<String>,
    pub event_type: String,
    /// The payload's JSON text exactly as received.
    pub payload: String,
    pub webhook_id: Option<String>,
    pub timestamp: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload as it was sent: any JSON value.
    #[schema(value_type = serde_json::Value)]
    pub payload: Box<serde_json::value::RawValue>,
    pub webhook_id: Option<String>,
    pub timestamp: Timestamp,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IngestOutcome {
    pub id: String,
    pub deliveries: u32,
    /// True when the id was seen before: nothing new was created.
    pub duplicate: bool,
    /// The webhooks that got a new delivery left for the engine to claim
    /// (for its schedule); handed-over deliveries are not named here.
    #[serde(skip)]
    pub webhook_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: String,
    /// The event's payload text (for the seed 004 log words).
    #[serde(skip)]
    pub payload: String,
    #[serde(skip)]
    pub webhook_url: String,
    pub event_id: String,
    pub event_type: String,
    pub webhook_id: String,
    pub status: DeliveryStatus,
    pub n_attempts: u32,
    pub next_attempt_at: Option<Timestamp>,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    pub started_at: Timestamp,
    pub duration_ms: u64,
    pub status_code: Option<u16>,
    pub response_body: Option<String>,
    pub error_class: Option<ErrorClass>,
    pub error_message: Option<String>,
}

/// A delivery the engine has claimed and must now attempt.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery_id: String,
    pub n_attempts: u32,
    /// Set after a manual retry: this attempt is the last whatever happens.
    pub final_attempt: bool,
    pub event_id: String,
    pub event_type: String,
    pub event_timestamp: Timestamp,
    /// Shared by every delivery of one event.
    pub payload: std::sync::Arc<str>,
    /// Shared by every delivery of one claim.
    pub webhook: std::sync::Arc<Webhook>,
}

impl DueDelivery {
    /// A delivery ingest just made, handed to the engine before any attempt.
    pub fn fresh(
        delivery_id: String,
        event: (&str, &str, Timestamp),
        payload: std::sync::Arc<str>,
        webhook: std::sync::Arc<Webhook>,
    ) -> DueDelivery {
        let (event_id, event_type, event_timestamp) = event;
        DueDelivery {
            delivery_id,
            n_attempts: 0,
            final_attempt: false,
            event_id: event_id.to_owned(),
            event_type: event_type.to_owned(),
            event_timestamp,
            payload,
            webhook,
        }
    }
}

/// Where the store finds one delivery: deliveries are keyed by account,
/// then id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryKey {
    pub account_id: String,
    pub delivery_id: String,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Success,
    RetryAt(Timestamp),
    Failed,
}

/// One finished attempt and the delivery's next step, as the store records it.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: String,
    /// The delivery's account: the store finds deliveries by account and id.
    pub account_id: String,
    /// 1 for a delivery's first attempt: its claim's `n_attempts` + 1. The
    /// store keeps a first attempt in the delivery's own row, and checks
    /// the number against what it holds before it does.
    pub number: u32,
    pub attempt: Attempt,
    pub next: NextStep,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub webhook_id: Option<String>,
    pub event_type: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Only deliveries whose id sorts before this one (the next page).
    pub before_id: Option<String>,
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_rfc3339() {
        let t = Timestamp(1_614_265_330_123);
        assert_eq!(t.to_rfc3339(), "2021-02-25T15:02:10.123Z");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
        assert_eq!(Timestamp::parse_rfc3339("2021-06-18T14:48:06.886358Z"), Some(Timestamp(1_624_027_686_886)));
        assert_eq!(Timestamp::parse_rfc3339("yesterday"), None);
    }

    proptest::proptest! {
        #[test]
        fn rfc3339_is_written_as_the_time_crate_formats_it(ms in -62_167_219_200_000i64..253_402_300_800_000) {
            let expected = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
                .unwrap()
                .format(&Rfc3339)
                .unwrap();
            proptest::prop_assert_eq!(Timestamp(ms).to_rfc3339(), expected);
        }
    }

    #[test]
    fn rfc3339_trims_the_fraction_and_refuses_years_it_cannot_write() {
        assert_eq!(Timestamp(1_614_265_330_000).to_rfc3339(), "2021-02-25T15:02:10Z");
        assert_eq!(Timestamp(1_614_265_330_100).to_rfc3339(), "2021-02-25T15:02:10.1Z");
        assert_eq!(Timestamp(1_614_265_330_120).to_rfc3339(), "2021-02-25T15:02:10.12Z");
        assert_eq!(Timestamp(-1).to_rfc3339(), "1969-12-31T23:59:59.999Z");
        assert_eq!(Timestamp(253_402_300_800_000).to_rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(Timestamp(i64::MAX).to_rfc3339(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn ids_name_what_they_identify() {
        let a = new_id("dlv");
        assert!(a.starts_with("dlv_"));
        assert_eq!(a.len(), 4 + 26);
        assert_ne!(a, new_id("dlv"));
    }

    #[test]
    fn ids_made_in_one_millisecond_sort_in_the_order_they_were_made() {
        let at = Timestamp(1_800_000_000_000);
        let made: Vec<String> = (0..1000).map(|_| new_id_at("dlv", at)).collect();
        let mut sorted = made.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, made);
        // A later millisecond sorts after, an earlier one before.
        assert!(new_id_at("dlv", Timestamp(at.0 + 1)) > made[999]);
        assert!(new_id_at("dlv", Timestamp(at.0 - 1)) < made[0]);
    }
}
