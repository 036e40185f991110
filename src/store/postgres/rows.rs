//! Row mapping for the PostgreSQL store: columns in and out of domain
//! types, and the small statements several verbs share.

use std::collections::BTreeMap;

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::model::{Delivery, DeliveryStatus, Disabled, RetiringSecret, Timestamp, Webhook};
use crate::profile::Profile;
use crate::sealing::AtRest;
use crate::store::values::{options_json, to_json};
use crate::store::{StoreError, StoreResult};

/// How many columns `WEBHOOK_COLUMNS` names: a query that reads more after
/// them starts there.
pub(super) const N_WEBHOOK_COLUMNS: usize = 20;

pub(super) const WEBHOOK_COLUMNS: &str = "w.id, w.account_id, w.url, w.description, w.event_types, w.enabled, w.headers, \
     w.profile, w.retry, w.timeout_ms, w.secret, w.previous_secret, w.previous_expires_at, w.created_at, w.updated_at, w.options, \
     w.disabled_reason, w.disabled_at, w.failing_since, w.rate_limit";

/// A stored JSON column, parsed.
fn json_column<T: serde::de::DeserializeOwned>(row: &Row, idx: usize) -> StoreResult<Option<T>> {
    let text: Option<String> = row.try_get(idx)?;
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| StoreError::Internal(anyhow::anyhow!("column {idx} holds json herald cannot read: {e}")))
    })
    .transpose()
}

/// Reads a webhook from `WEBHOOK_COLUMNS` starting at column `at`,
/// opening its secrets.
pub(super) fn webhook_from_row(row: &Row, at: usize, at_rest: &AtRest) -> StoreResult<Webhook> {
    let id: String = row.try_get(at)?;
    let profile: String = row.try_get(at + 7)?;
    let secret = |column: &str, stored: String| {
        at_rest.load_webhook_secret(stored, &id, column).map_err(|e| StoreError::Internal(e.into()))
    };
    let previous_secret =
        row.try_get::<_, Option<String>>(at + 11)?.map(|s| secret("previous_secret", s)).transpose()?;
    let previous_expires_at: Option<i64> = row.try_get(at + 12)?;
    Ok(Webhook {
        secret: secret("secret", row.try_get(at + 10)?)?,
        account_id: row.try_get(at + 1)?,
        url: row.try_get(at + 2)?,
        description: row.try_get(at + 3)?,
        event_types: json_column(row, at + 4)?,
        enabled: row.try_get(at + 5)?,
        headers: json_column::<BTreeMap<String, String>>(row, at + 6)?.unwrap_or_default(),
        profile: Profile::parse(&profile).unwrap_or_default(),
        retry: json_column(row, at + 8)?,
        timeout_ms: row.try_get::<_, Option<i64>>(at + 9)?.map(|t| t as u64),
        previous_secret: previous_secret
            .zip(previous_expires_at)
            .map(|(secret, expires_at)| RetiringSecret { secret, expires_at: Timestamp(expires_at) }),
        created_at: Timestamp(row.try_get(at + 13)?),
        updated_at: Timestamp(row.try_get(at + 14)?),
        options: json_column(row, at + 15)?.unwrap_or_default(),
        disabled: row
            .try_get::<_, Option<String>>(at + 16)?
            .zip(row.try_get::<_, Option<i64>>(at + 17)?)
            .map(|(reason, at)| Disabled { reason, at: Timestamp(at) }),
        failing_since: row.try_get::<_, Option<i64>>(at + 18)?.map(Timestamp),
        rate_limit: json_column(row, at + 19)?,
        id,
    })
}

/// A webhook's columns in `INSERT` order (all but `failing_since`, which
/// only the engine's verbs write), its secrets sealed when there is a key.
pub(super) struct WebhookValues {
    id: String,
    account_id: String,
    url: String,
    description: String,
    event_types: Option<String>,
    enabled: bool,
    headers: String,
    profile: &'static str,
    retry: Option<String>,
    timeout_ms: Option<i64>,
    secret: String,
    previous_secret: Option<String>,
    previous_expires_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
    options: Option<String>,
    disabled_reason: Option<String>,
    disabled_at: Option<i64>,
    rate_limit: Option<String>,
}

impl WebhookValues {
    pub(super) fn new(w: &Webhook, at_rest: &AtRest) -> WebhookValues {
        WebhookValues {
            id: w.id.clone(),
            account_id: w.account_id.clone(),
            url: w.url.clone(),
            description: w.description.clone(),
            event_types: w.event_types.as_ref().map(to_json),
            enabled: w.enabled,
            headers: to_json(&w.headers),
            profile: w.profile.name(),
            retry: w.retry.as_ref().map(to_json),
            timeout_ms: w.timeout_ms.map(|t| t as i64),
            secret: at_rest.store_webhook_secret(&w.secret, &w.id, "secret"),
            previous_secret: w
                .previous_secret
                .as_ref()
                .map(|p| at_rest.store_webhook_secret(&p.secret, &w.id, "previous_secret")),
            previous_expires_at: w.previous_secret.as_ref().map(|p| p.expires_at.0),
            created_at: w.created_at.0,
            updated_at: w.updated_at.0,
            options: options_json(&w.options),
            disabled_reason: w.disabled.as_ref().map(|d| d.reason.clone()),
            disabled_at: w.disabled.as_ref().map(|d| d.at.0),
            rate_limit: w.rate_limit.as_ref().map(to_json),
        }
    }

    /// `$1` … `$19`, in `INSERT` order.
    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 19] {
        [
            &self.id,
            &self.account_id,
            &self.url,
            &self.description,
            &self.event_types,
            &self.enabled,
            &self.headers,
            &self.profile,
            &self.retry,
            &self.timeout_ms,
            &self.secret,
            &self.previous_secret,
            &self.previous_expires_at,
            &self.created_at,
            &self.updated_at,
            &self.options,
            &self.disabled_reason,
            &self.disabled_at,
            &self.rate_limit,
        ]
    }
}

/// Delivery columns, read from `DELIVERY_FROM`.
pub(super) const DELIVERY_COLUMNS: &str = "d.id, d.event_id, d.event_type, d.webhook_id, d.status, d.n_attempts, \
     d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.updated_at, d.lease_owner IS NOT NULL, \
     e.payload, w.url";
pub(super) const DELIVERY_FROM: &str =
    "deliveries d JOIN events e ON e.seq = d.event_seq JOIN webhooks w ON w.id = d.webhook_id";

pub(super) fn delivery_from_row(row: &Row) -> StoreResult<Delivery> {
    let status: String = row.try_get(4)?;
    let leased: bool = row.try_get(11)?;
    Ok(Delivery {
        id: row.try_get(0)?,
        event_id: row.try_get(1)?,
        event_type: row.try_get(2)?,
        webhook_id: row.try_get(3)?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
        n_attempts: row.try_get::<_, i64>(5)? as u32,
        // Being attempted right now: no schedule to show.
        next_attempt_at: if leased { None } else { row.try_get::<_, Option<i64>>(6)?.map(Timestamp) },
        last_status_code: row.try_get::<_, Option<i64>>(7)?.map(|c| c as u16),
        last_error: row.try_get(8)?,
        created_at: Timestamp(row.try_get(9)?),
        updated_at: Timestamp(row.try_get(10)?),
        payload: row.try_get(12)?,
        webhook_url: row.try_get(13)?,
    })
}

/// One of an account's deliveries, by id.
pub(super) async fn find_delivery(
    client: &impl deadpool_postgres::GenericClient,
    account_id: &str,
    id: &str,
) -> StoreResult<Option<Delivery>> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE d.account_id = $1 AND d.id = $2");
    client.query_opt(&sql, &[&account_id, &id]).await?.as_ref().map(delivery_from_row).transpose()
}
