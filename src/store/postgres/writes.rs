//! Ingest on PostgreSQL: one transaction per call, a few statements per
//! batch whatever its size. Events go in with one `INSERT … SELECT FROM
//! UNNEST` whose `ON CONFLICT DO NOTHING` on the unique (account, id) makes
//! caller ids idempotent across nodes; their deliveries with another.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::GenericClient;

use super::notices::notify_due;
use super::rows::WEBHOOK_COLUMNS;
use super::rows::webhook_from_row;
use crate::fanout;
use crate::model::{DueDelivery, IngestOutcome, NewEvent, Timestamp, Webhook, new_id, new_id_at};
use crate::sealing::AtRest;
use crate::store::{HandOver, Ingested, Lease, StoreResult};

/// The account's webhooks (not deleted), by id.
pub(super) async fn load_webhooks(
    client: &impl GenericClient,
    account_id: &str,
    at_rest: &AtRest,
) -> StoreResult<Vec<Webhook>> {
    let sql =
        format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.account_id = $1 AND NOT w.deleted ORDER BY w.id");
    let stmt = client.prepare_cached(&sql).await?;
    client.query(&stmt, &[&account_id]).await?.iter().map(|row| webhook_from_row(row, 0, at_rest)).collect()
}

/// The body of `Store::ingest`, inside the caller's transaction: a new
/// delivery whose webhook has `room` left is written leased to `lease` and
/// handed over; the others are due now, and every other node is told so
/// when the transaction commits (`from`: this store's id in notices).
pub(super) async fn ingest_in(
    tx: &deadpool_postgres::Transaction<'_>,
    account_id: &str,
    events: Vec<NewEvent>,
    now: Timestamp,
    mut room: HandOver,
    (lease, from): (&Lease, &str),
    at_rest: &AtRest,
) -> StoreResult<Ingested> {
    let strict: bool = tx
        .query_opt("SELECT strict_event_types FROM accounts WHERE id = $1", &[&account_id])
        .await?
        .map(|r| r.get(0))
        .unwrap_or(false);
    let webhooks: Vec<Arc<Webhook>> = load_webhooks(tx, account_id, at_rest).await?.into_iter().map(Arc::new).collect();
    let fanned = fanout::fan_out(strict, &webhooks, &events)?;

    // Every event's row, in one statement.
    let ids: Vec<String> = events.iter().map(|e| e.id.clone().unwrap_or_else(|| new_id("evt"))).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let payloads: Vec<&str> = events.iter().map(|e| e.payload.as_str()).collect();
    let targets: Vec<Option<&str>> = events.iter().map(|e| e.webhook_id.as_deref()).collect();
    let timestamps: Vec<i64> = events.iter().map(|e| e.timestamp.unwrap_or(now).0).collect();
    let counts: Vec<i64> = fanned.iter().map(|t| t.len() as i64).collect();
    let insert = tx
        .prepare_cached(
            "INSERT INTO events (account_id, id, type, payload, webhook_id, timestamp, created_at, n_deliveries) \
             SELECT $1, u.id, u.type, u.payload, u.webhook_id, u.ts, $2, u.n \
             FROM UNNEST($3::text[], $4::text[], $5::text[], $6::text[], $7::int8[], $8::int8[]) \
                 AS u(id, type, payload, webhook_id, ts, n) \
             ON CONFLICT (account_id, id) DO NOTHING RETURNING id, seq",
        )
        .await?;
    let rows =
        tx.query(&insert, &[&account_id, &now.0, &ids, &types, &payloads, &targets, &timestamps, &counts]).await?;
    let mut inserted: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    // Ids seen before this batch: the first one's answer.
    let seen: Vec<&String> = ids.iter().filter(|id| !inserted.contains_key(*id)).collect();
    let earlier: HashMap<String, i64> = match seen.is_empty() {
        true => HashMap::new(),
        false => tx
            .query("SELECT id, n_deliveries FROM events WHERE account_id = $1 AND id = ANY($2)", &[&account_id, &seen])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
    };

    let mut ingested =
        Ingested { outcomes: Vec::with_capacity(events.len()), handed: Vec::new(), unused: HandOver::default() };
    // Webhooks that got deliveries no node holds: the other nodes hear of them.
    let mut due_for: Vec<String> = Vec::new();
    let mut rows = DeliveryRows::default();
    // An id twice in one batch: the first is new, the second its duplicate.
    let mut in_batch: HashMap<String, u32> = HashMap::new();
    for ((event, targets), id) in events.into_iter().zip(fanned).zip(ids) {
        let Some(seq) = inserted.remove(&id) else {
            let deliveries = match in_batch.get(&id) {
                Some(n) => *n,
                None => earlier.get(&id).copied().unwrap_or(0) as u32,
            };
            ingested.outcomes.push(IngestOutcome { id, deliveries, duplicate: true, webhook_ids: Vec::new() });
            continue;
        };
        in_batch.insert(id.clone(), targets.len() as u32);
        let timestamp = event.timestamp.unwrap_or(now);
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
                if due_for.last() != Some(&webhook.id) {
                    due_for.push(webhook.id.clone());
                }
                waiting.push(webhook.id.clone());
            }
            rows.ids.push(delivery_id);
            rows.seqs.push(seq);
            rows.event_ids.push(id.clone());
            rows.event_types.push(event.event_type.clone());
            rows.webhook_ids.push(webhook.id.clone());
            rows.owners.push(handed.then_some(lease.node.0.as_str()));
            rows.until.push(handed.then_some(lease.until.0));
        }
        ingested.outcomes.push(IngestOutcome {
            id,
            deliveries: targets.len() as u32,
            duplicate: false,
            webhook_ids: waiting,
        });
    }
    if !rows.ids.is_empty() {
        let insert = tx
            .prepare_cached(
                "INSERT INTO deliveries (account_id, id, event_seq, event_id, event_type, webhook_id, status, \
                 next_attempt_at, lease_owner, lease_until, created_at, updated_at) \
                 SELECT $1, u.id, u.seq, u.event_id, u.event_type, u.webhook_id, 'pending', $2, u.owner, u.until, \
                     $2, $2 \
                 FROM UNNEST($3::text[], $4::int8[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int8[]) \
                     AS u(id, seq, event_id, event_type, webhook_id, owner, until)",
            )
            .await?;
        tx.execute(
            &insert,
            &[
                &account_id,
                &now.0,
                &rows.ids,
                &rows.seqs,
                &rows.event_ids,
                &rows.event_types,
                &rows.webhook_ids,
                &rows.owners,
                &rows.until,
            ],
        )
        .await?;
    }
    notify_due(tx, due_for, now, from).await?;
    ingested.unused = room;
    Ok(ingested)
}

/// A batch's new deliveries, column by column, for one `UNNEST`.
#[derive(Default)]
struct DeliveryRows<'n> {
    ids: Vec<String>,
    seqs: Vec<i64>,
    event_ids: Vec<String>,
    event_types: Vec<String>,
    webhook_ids: Vec<String>,
    owners: Vec<Option<&'n str>>,
    until: Vec<Option<i64>>,
}
