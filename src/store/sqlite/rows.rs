//! Row mapping and small statements shared by the SQLite store's verbs:
//! columns in and out of domain types, ids as time ranges.

use std::collections::BTreeMap;

use rusqlite::{Connection, Row, params};

use crate::model::{
    Account, DEFAULT_DISABLE_AFTER_SECONDS, Delivery, DeliveryStatus, Disabled, RetiringSecret, Timestamp, Webhook,
    new_id,
};
use crate::profile::Profile;
use crate::sealing::AtRest;
pub(super) use crate::store::values::{id_at, options_json, to_json};

/// How many columns `WEBHOOK_COLUMNS` names: a query that reads more after
/// them starts there.
pub(super) const N_WEBHOOK_COLUMNS: usize = 20;

pub(super) const WEBHOOK_COLUMNS: &str = "w.id, w.account_id, w.url, w.description, w.event_types, w.enabled, w.headers, \
     w.profile, w.retry, w.timeout_ms, w.secret, w.previous_secret, w.previous_expires_at, w.created_at, w.updated_at, w.options, \
     w.disabled_reason, w.disabled_at, w.failing_since, w.rate_limit";

pub(super) fn json_column<T: serde::de::DeserializeOwned>(row: &Row, idx: usize) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e)))
    })
    .transpose()
}

/// Reads a webhook from `WEBHOOK_COLUMNS` starting at column `at`,
/// opening its secrets.
pub(super) fn webhook_from_row(row: &Row, at: usize, at_rest: &AtRest) -> rusqlite::Result<Webhook> {
    let id: String = row.get(at)?;
    let profile: String = row.get(at + 7)?;
    let secret = |idx: usize, column: &str, stored: String| {
        at_rest
            .load_webhook_secret(stored, &id, column)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e)))
    };
    let previous_secret =
        row.get::<_, Option<String>>(at + 11)?.map(|s| secret(at + 11, "previous_secret", s)).transpose()?;
    let previous_expires_at: Option<i64> = row.get(at + 12)?;
    Ok(Webhook {
        secret: secret(at + 10, "secret", row.get(at + 10)?)?,
        id,
        account_id: row.get(at + 1)?,
        url: row.get(at + 2)?,
        description: row.get(at + 3)?,
        event_types: json_column(row, at + 4)?,
        enabled: row.get(at + 5)?,
        headers: json_column::<BTreeMap<String, String>>(row, at + 6)?.unwrap_or_default(),
        profile: Profile::parse(&profile).unwrap_or_default(),
        retry: json_column(row, at + 8)?,
        timeout_ms: row.get::<_, Option<i64>>(at + 9)?.map(|t| t as u64),
        previous_secret: previous_secret
            .zip(previous_expires_at)
            .map(|(secret, expires_at)| RetiringSecret { secret, expires_at: Timestamp(expires_at) }),
        created_at: Timestamp(row.get(at + 13)?),
        updated_at: Timestamp(row.get(at + 14)?),
        options: json_column(row, at + 15)?.unwrap_or_default(),
        disabled: row
            .get::<_, Option<String>>(at + 16)?
            .zip(row.get::<_, Option<i64>>(at + 17)?)
            .map(|(reason, at)| Disabled { reason, at: Timestamp(at) }),
        failing_since: row.get::<_, Option<i64>>(at + 18)?.map(Timestamp),
        rate_limit: json_column(row, at + 19)?,
    })
}

/// A webhook's columns in `INSERT` order, for the insert and the update
/// (all but `failing_since`, which only the engine's verbs write), its
/// secrets sealed when there is a key.
pub(super) fn webhook_values(w: &Webhook, at_rest: &AtRest) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value;
    let text = |t: String| Value::Text(t);
    let opt_text = |t: Option<String>| t.map_or(Value::Null, Value::Text);
    let opt_int = |n: Option<i64>| n.map_or(Value::Null, Value::Integer);
    vec![
        text(w.id.clone()),
        text(w.account_id.clone()),
        text(w.url.clone()),
        text(w.description.clone()),
        opt_text(w.event_types.as_ref().map(to_json)),
        Value::Integer(w.enabled as i64),
        text(to_json(&w.headers)),
        text(w.profile.name().to_owned()),
        opt_text(w.retry.as_ref().map(to_json)),
        opt_int(w.timeout_ms.map(|t| t as i64)),
        text(at_rest.store_webhook_secret(&w.secret, &w.id, "secret")),
        opt_text(w.previous_secret.as_ref().map(|p| at_rest.store_webhook_secret(&p.secret, &w.id, "previous_secret"))),
        opt_int(w.previous_secret.as_ref().map(|p| p.expires_at.0)),
        Value::Integer(w.created_at.0),
        Value::Integer(w.updated_at.0),
        opt_text(options_json(&w.options)),
        opt_text(w.disabled.as_ref().map(|d| d.reason.clone())),
        opt_int(w.disabled.as_ref().map(|d| d.at.0)),
        opt_text(w.rate_limit.as_ref().map(to_json)),
    ]
}

/// Delivery columns, read from `deliveries d JOIN events e JOIN webhooks w`.
pub(super) const DELIVERY_COLUMNS: &str = "d.id, d.event_id, d.event_type, d.webhook_id, d.status, d.n_attempts, \
     d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.updated_at, d.leased, e.payload, w.url";
pub(super) const DELIVERY_FROM: &str =
    "deliveries d JOIN events e ON e.seq = d.event_seq JOIN webhooks w ON w.id = d.webhook_id";

/// One of an account's deliveries, by id.
pub(super) fn find_delivery(conn: &Connection, account_id: &str, id: &str) -> rusqlite::Result<Option<Delivery>> {
    use rusqlite::OptionalExtension;
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE d.id = ?1 AND d.account_id = ?2");
    conn.prepare_cached(&sql)?.query_row([id, account_id], delivery_from_row).optional()
}

pub(super) fn delivery_from_row(row: &Row) -> rusqlite::Result<Delivery> {
    let status: String = row.get(4)?;
    let leased: bool = row.get(11)?;
    // Being attempted right now: no schedule to show.
    Ok(Delivery {
        id: row.get(0)?,
        event_id: row.get(1)?,
        event_type: row.get(2)?,
        webhook_id: row.get(3)?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
        n_attempts: row.get(5)?,
        next_attempt_at: if leased { None } else { row.get::<_, Option<i64>>(6)?.map(Timestamp) },
        last_status_code: row.get(7)?,
        last_error: row.get(8)?,
        created_at: Timestamp(row.get(9)?),
        updated_at: Timestamp(row.get(10)?),
        payload: row.get(12)?,
        webhook_url: row.get(13)?,
    })
}

pub(super) use crate::store::tokens::{API_TOKEN, VIBER_BOT_TOKEN};

pub(super) fn insert_token(
    conn: &Connection,
    hash: &str,
    account_id: Option<&str>,
    kind: &str,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO tokens (hash, account_id, created_at, kind) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![hash, account_id, now.0, kind])?;
    Ok(())
}

pub(super) fn insert_account(
    conn: &Connection,
    name: &str,
    token_hash: &str,
    now: Timestamp,
) -> rusqlite::Result<Account> {
    let account = Account {
        id: new_id("acc"),
        name: name.to_owned(),
        created_at: now,
        strict_event_types: false,
        disable_after_seconds: DEFAULT_DISABLE_AFTER_SECONDS,
    };
    conn.prepare_cached("INSERT INTO accounts (id, name, created_at) VALUES (?1, ?2, ?3)")?.execute(params![
        account.id,
        account.name,
        now.0
    ])?;
    insert_token(conn, token_hash, Some(&account.id), API_TOKEN, now)?;
    Ok(account)
}

pub(super) fn load_webhooks(conn: &Connection, account_id: &str, at_rest: &AtRest) -> rusqlite::Result<Vec<Webhook>> {
    let sql =
        format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.account_id = ?1 AND w.deleted = 0 ORDER BY w.id");
    let mut stmt = conn.prepare_cached(&sql)?;
    stmt.query_map([account_id], |row| webhook_from_row(row, 0, at_rest))?.collect()
}

pub(super) fn finish_without_attempt(
    conn: &Connection,
    account_id: &str,
    delivery_id: &str,
    reason: &str,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, leased = 0, last_status_code = NULL, \
         last_error = ?2, updated_at = ?3 WHERE account_id = ?4 AND id = ?1",
    )?
    .execute(params![delivery_id, reason, now.0, account_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn n_webhook_columns_counts_webhook_columns() {
        assert_eq!(super::WEBHOOK_COLUMNS.split(',').count(), super::N_WEBHOOK_COLUMNS);
    }
}
