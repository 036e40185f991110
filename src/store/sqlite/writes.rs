//! The SQLite store's busiest write transaction: ingest (events and their
//! fan-out).

use std::sync::Arc;

use rusqlite::types::ToSql;
use rusqlite::{Connection, OptionalExtension, params};

use super::many::insert_many;

use super::rows::load_webhooks;
use crate::fanout;
use crate::model::{DueDelivery, IngestOutcome, NewEvent, Timestamp, Webhook, new_id, new_id_at};
use crate::store::{HandOver, Ingested, StoreResult};

/// The body of `Store::ingest`, inside the writer's transaction: a new
/// delivery whose webhook has `room` left is handed over.
pub(super) fn ingest_in(
    conn: &Connection,
    account_id: &str,
    events: Vec<NewEvent>,
    now: Timestamp,
    mut room: HandOver,
    at_rest: &crate::sealing::AtRest,
) -> StoreResult<Ingested> {
    let strict: bool = conn
        .prepare_cached("SELECT strict_event_types FROM accounts WHERE id = ?1")?
        .query_row([account_id], |r| r.get(0))
        .optional()?
        .unwrap_or(false);
    let webhooks: Vec<Arc<Webhook>> = load_webhooks(conn, account_id, at_rest)?.into_iter().map(Arc::new).collect();
    let fanned = fanout::fan_out(strict, &webhooks, &events)?;
    let mut find = conn.prepare_cached("SELECT n_deliveries FROM events WHERE account_id = ?1 AND id = ?2")?;
    let mut insert_event = conn.prepare_cached(
        "INSERT INTO events (account_id, id, type, payload, webhook_id, timestamp, created_at, n_deliveries) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (account_id, id) DO NOTHING",
    )?;
    let mut ingested =
        Ingested { outcomes: Vec::with_capacity(events.len()), handed: Vec::new(), unused: HandOver::default() };
    // Deliveries go in together once their events are in (see `many`).
    let mut deliveries: Vec<NewDelivery> = Vec::with_capacity(events.len());
    let mut event_types: Vec<String> = Vec::with_capacity(events.len());
    for (event, targets) in events.into_iter().zip(fanned) {
        let id = event.id.unwrap_or_else(|| new_id("evt"));
        let timestamp = event.timestamp.unwrap_or(now);
        let inserted = insert_event.execute(params![
            account_id,
            id,
            event.event_type,
            event.payload,
            event.webhook_id,
            timestamp.0,
            now.0,
            targets.len() as i64
        ])?;
        if inserted == 0 {
            // Seen before (the insert found it): the first one's answer.
            let deliveries = find.query_row([account_id, &id], |r| r.get(0))?;
            ingested.outcomes.push(IngestOutcome { id, deliveries, duplicate: true, webhook_ids: Vec::new() });
            continue;
        }
        let seq = conn.last_insert_rowid();
        let payload: Arc<str> = event.payload.into();
        let mut waiting = Vec::new();
        for webhook in &targets {
            let delivery_id = new_id_at("dlv", now);
            let handed = room.take(&webhook.id);
            if handed {
                let event = (id.as_str(), event.event_type.as_str(), timestamp);
                ingested.handed.push(DueDelivery::fresh(
                    delivery_id.clone(),
                    event,
                    payload.clone(),
                    Arc::clone(webhook),
                ));
            } else {
                waiting.push(webhook.id.clone());
            }
            let (outcome, event_type) = (ingested.outcomes.len(), event_types.len());
            deliveries.push(NewDelivery { id: delivery_id, seq, outcome, event_type, webhook_id: &webhook.id, handed });
        }
        event_types.push(event.event_type);
        ingested.outcomes.push(IngestOutcome {
            id,
            deliveries: targets.len() as u32,
            duplicate: false,
            webhook_ids: waiting,
        });
    }
    let now_ms = now.0;
    let mut values: Vec<&dyn ToSql> = Vec::with_capacity(deliveries.len() * 10);
    for delivery in &deliveries {
        values.extend_from_slice(&[
            &delivery.id as &dyn ToSql,
            &account_id,
            &delivery.seq,
            &ingested.outcomes[delivery.outcome].id,
            &event_types[delivery.event_type],
            &delivery.webhook_id,
            &now_ms,
            &delivery.handed,
            &now_ms,
            &now_ms,
        ]);
    }
    insert_many(
        conn,
        "deliveries (id, account_id, event_seq, event_id, event_type, webhook_id, next_attempt_at, \
         leased, status, created_at, updated_at)",
        "(?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
        10,
        &values,
    )?;
    ingested.unused = room;
    Ok(ingested)
}

/// A delivery ingest creates, waiting for its row to be written.
struct NewDelivery<'w> {
    id: String,
    seq: i64,
    /// Its event's place in the outcomes (which hold the event id) and in
    /// the list of event types.
    outcome: usize,
    event_type: usize,
    webhook_id: &'w str,
    handed: bool,
}
