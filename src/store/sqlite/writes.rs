//! The SQLite store's two busiest write transactions: ingest (events and
//! their fan-out) and claiming a webhook's due deliveries.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{WEBHOOK_COLUMNS, finish_without_attempt, load_webhooks, webhook_from_row};
use crate::model::{DueDelivery, IngestOutcome, NewEvent, Timestamp, Webhook, new_id, new_id_at};
use crate::profile::Profile;
use crate::store::{ClaimedBatch, StoreError, StoreResult};
use crate::{catalogue, filter};

/// Claims up to `limit` due deliveries of one webhook, inside the writer's
/// transaction; see `Store::claim_due`.
pub(super) fn claim_for_webhook(
    conn: &Connection,
    webhook_id: &str,
    now: Timestamp,
    lease_until: Timestamp,
    limit: usize,
) -> StoreResult<ClaimedBatch> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS}, w.deleted FROM webhooks w WHERE w.id = ?1");
    let found = conn
        .prepare_cached(&sql)?
        .query_row([webhook_id], |row| Ok((webhook_from_row(row, 0)?, row.get::<_, bool>(16)?)))
        .optional()?;
    let refusal = match &found {
        None | Some((_, true)) => Some("webhook deleted"),
        Some((webhook, false)) if !webhook.enabled => Some("webhook disabled"),
        _ => None,
    };
    let webhook = Arc::new(found.map(|(w, _)| w).unwrap_or_else(|| placeholder_webhook(webhook_id)));
    let mut due_rows = conn.prepare_cached(
        "SELECT d.id, d.n_attempts, d.final_attempt, d.event_id, d.event_type, e.timestamp, e.payload \
         FROM deliveries d JOIN events e ON e.seq = d.event_seq \
         WHERE d.webhook_id = ?1 AND d.next_attempt_at <= ?2 AND d.leased = 0 ORDER BY d.next_attempt_at LIMIT ?3",
    )?;
    let rows = due_rows.query_map(params![webhook_id, now.0, limit as i64], |row| {
        Ok(DueDelivery {
            delivery_id: row.get(0)?,
            n_attempts: row.get(1)?,
            final_attempt: row.get(2)?,
            event_id: row.get(3)?,
            event_type: row.get(4)?,
            event_timestamp: Timestamp(row.get(5)?),
            payload: row.get(6)?,
            webhook: webhook.clone(),
        })
    })?;
    let deliveries: Vec<DueDelivery> = rows.collect::<Result<_, _>>()?;
    if let Some(reason) = refusal {
        for due in &deliveries {
            finish_without_attempt(conn, &due.delivery_id, reason, now)?;
        }
        // More may wait; the engine claims again at once.
        let next_due = (deliveries.len() == limit).then_some(now);
        return Ok(ClaimedBatch { webhook_id: webhook_id.to_owned(), deliveries: Vec::new(), next_due });
    }
    // One node owns an SQLite database, so a lease is a flag that the next
    // start clears (`release_leases`), not a deadline; leaving
    // `next_attempt_at` alone spares the due index an update per delivery.
    let _ = lease_until;
    let mut lease = conn.prepare_cached("UPDATE deliveries SET leased = 1 WHERE id = ?1")?;
    for due in &deliveries {
        lease.execute(params![due.delivery_id])?;
    }
    // The next unleased delivery; leased ones are in this engine's hands.
    let next_due: Option<i64> = conn
        .prepare_cached(
            "SELECT next_attempt_at FROM deliveries WHERE webhook_id = ?1 AND next_attempt_at IS NOT NULL \
             AND leased = 0 ORDER BY next_attempt_at LIMIT 1",
        )?
        .query_row([webhook_id], |r| r.get(0))
        .optional()?;
    Ok(ClaimedBatch { webhook_id: webhook_id.to_owned(), deliveries, next_due: next_due.map(Timestamp) })
}

/// Stands in for a webhook row that no longer exists.
pub(super) fn placeholder_webhook(id: &str) -> Webhook {
    Webhook {
        id: id.to_owned(),
        account_id: String::new(),
        url: String::new(),
        description: String::new(),
        event_types: None,
        enabled: false,
        headers: Default::default(),
        profile: Profile::default(),
        options: Default::default(),
        retry: None,
        timeout_ms: None,
        secret: String::new(),
        previous_secret: None,
        created_at: Timestamp(0),
        updated_at: Timestamp(0),
    }
}

/// The body of `Store::ingest`, inside the writer's transaction.
pub(super) fn ingest_in(
    conn: &Connection,
    account_id: &str,
    events: Vec<NewEvent>,
    now: Timestamp,
) -> StoreResult<Vec<IngestOutcome>> {
    let strict: bool = conn
        .prepare_cached("SELECT strict_event_types FROM accounts WHERE id = ?1")?
        .query_row([account_id], |r| r.get(0))
        .optional()?
        .unwrap_or(false);
    if strict && let Some((i, event)) = events.iter().enumerate().find(|(_, e)| !catalogue::is_known(&e.event_type)) {
        return Err(StoreError::Invalid(format!(
            "events[{i}].type: `{}` is not in the event catalogue (this account is in strict mode)",
            event.event_type
        )));
    }
    let webhooks = load_webhooks(conn, account_id)?;
    // A targeted webhook must exist in this account, or the whole request
    // fails before anything is written.
    for (i, event) in events.iter().enumerate() {
        if let Some(target) = &event.webhook_id
            && !webhooks.iter().any(|w| &w.id == target)
        {
            return Err(StoreError::NotFound(format!("webhook `{target}` (events[{i}].webhook_id)")));
        }
    }
    let mut find = conn.prepare_cached("SELECT id, n_deliveries FROM events WHERE account_id = ?1 AND id = ?2")?;
    let mut insert_event = conn.prepare_cached(
        "INSERT INTO events (account_id, id, type, payload, webhook_id, timestamp, created_at, n_deliveries) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut insert_delivery = conn.prepare_cached(
        "INSERT INTO deliveries (id, account_id, event_seq, event_id, event_type, webhook_id, status, next_attempt_at, \
         created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7, ?7)",
    )?;
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        if let Some(id) = &event.id {
            let seen: Option<(String, u32)> =
                find.query_row([account_id, id], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
            if let Some((id, deliveries)) = seen {
                outcomes.push(IngestOutcome { id, deliveries, duplicate: true, webhook_ids: Vec::new() });
                continue;
            }
        }
        let targets: Vec<&Webhook> = match &event.webhook_id {
            Some(target) => webhooks.iter().filter(|w| &w.id == target && w.enabled).collect(),
            None => webhooks
                .iter()
                .filter(|w| w.enabled && filter::matches(w.event_types.as_deref(), &event.event_type))
                .collect(),
        };
        let id = event.id.unwrap_or_else(|| new_id("evt"));
        let timestamp = event.timestamp.unwrap_or(now);
        insert_event.execute(params![
            account_id,
            id,
            event.event_type,
            event.payload,
            event.webhook_id,
            timestamp.0,
            now.0,
            targets.len() as i64
        ])?;
        let seq = conn.last_insert_rowid();
        for webhook in &targets {
            insert_delivery.execute(params![
                new_id_at("dlv", now),
                account_id,
                seq,
                id,
                event.event_type,
                webhook.id,
                now.0
            ])?;
        }
        outcomes.push(IngestOutcome {
            id,
            deliveries: targets.len() as u32,
            duplicate: false,
            webhook_ids: targets.iter().map(|w| w.id.clone()).collect(),
        });
    }
    Ok(outcomes)
}
