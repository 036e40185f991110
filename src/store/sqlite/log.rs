//! The delivery log's reads: a page of an account's deliveries under a
//! filter, and the counts and attempt durations the stats summarise. Both
//! are ranges of the deliveries table keyed by (account, id): delivery ids
//! are ULIDs, so a time range is an id range and needs no index of its own.

use rusqlite::{Connection, params};

use super::attempts;
use super::rows::{DELIVERY_COLUMNS, DELIVERY_FROM, delivery_from_row, id_at};
use crate::model::{Delivery, DeliveryFilter, Timestamp};
use crate::stats::{Samples, WebhookSample};
use crate::store::StoreResult;

/// One page of an account's deliveries, newest first.
pub(super) fn list(conn: &Connection, account_id: &str, filter: DeliveryFilter) -> StoreResult<Vec<Delivery>> {
    let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE d.account_id = ?");
    let mut args: Vec<rusqlite::types::Value> = vec![account_id.to_owned().into()];
    let mut condition = |clause: &str, value: rusqlite::types::Value| {
        sql.push_str(clause);
        args.push(value);
    };
    if let Some(status) = filter.status {
        condition(" AND d.status = ?", status.as_str().to_owned().into());
    }
    if let Some(webhook_id) = filter.webhook_id {
        condition(" AND d.webhook_id = ?", webhook_id.into());
    }
    if let Some(event_type) = filter.event_type {
        condition(" AND d.event_type = ?", event_type.into());
    }
    // Delivery ids are ULIDs: a time range is an id range on the
    // account index, no extra index needed.
    if let Some(since) = filter.since {
        condition(" AND d.id >= ?", id_at("dlv", since).into());
    }
    if let Some(until) = filter.until {
        condition(" AND d.id < ?", id_at("dlv", until).into());
    }
    if let Some(before) = filter.before_id {
        condition(" AND d.id < ?", before.into());
    }
    sql.push_str(" ORDER BY d.id DESC LIMIT ?");
    args.push((filter.limit as i64).into());
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), delivery_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Delivery counts by webhook and status (deliveries created in
/// `[since, until)`) and the durations of attempts started then.
pub(super) fn stats(
    conn: &Connection,
    account_id: &str,
    since: Timestamp,
    until: Timestamp,
    webhook_id: Option<&str>,
) -> StoreResult<Vec<WebhookSample>> {
    let mut samples = Samples::default();
    let mut counts = conn.prepare_cached(
        "SELECT webhook_id, status, COUNT(*) FROM deliveries WHERE account_id = ?1 AND id >= ?2 \
             AND id < ?3 AND (?4 IS NULL OR webhook_id = ?4) GROUP BY webhook_id, status",
    )?;
    let (from, to) = (id_at("dlv", since), id_at("dlv", until));
    let rows = counts.query_map(params![account_id, from, to, webhook_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
    })?;
    for row in rows {
        let (webhook, status, n) = row?;
        samples.add_count(webhook, &status, n);
    }
    let mut durations = conn.prepare_cached(attempts::ATTEMPT_DURATIONS)?;
    let rows = durations
        .query_map(params![account_id, from, to, webhook_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (webhook, ms) = row?;
        samples.add_duration(webhook, ms);
    }
    Ok(samples.into_vec())
}
