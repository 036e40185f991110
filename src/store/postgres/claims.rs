//! Claiming due deliveries on a database several nodes share. A claim
//! leases what it takes to its node until a deadline, in one statement per
//! round: for every webhook wanted, its due deliveries that no node holds
//! (or whose lease ran out), oldest first, `FOR UPDATE SKIP LOCKED` so
//! that nodes claiming at once never wait for each other nor take the same
//! row. Each claim also reads the webhook's circuit breaker as the nodes
//! share it, so a breaker one node opened holds on every node.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::GenericClient;

use super::rows::{N_WEBHOOK_COLUMNS, WEBHOOK_COLUMNS, webhook_from_row};
use crate::model::{DueDelivery, Timestamp, Webhook};
use crate::sealing::AtRest;
use crate::store::{ClaimWant, ClaimedBatch, Lease, StoreResult};

/// One claimed delivery's row, in due order: (due at, id, n_attempts,
/// final_attempt, event seq).
type ClaimedRow = (i64, String, i64, bool, i64);

/// Claims for every want, leasing to `lease`, inside the caller's
/// transaction. Deliveries of a deleted or disabled webhook are failed
/// instead.
pub(super) async fn claim(
    tx: &deadpool_postgres::Transaction<'_>,
    now: Timestamp,
    lease: &Lease,
    wants: Vec<ClaimWant>,
    at_rest: &AtRest,
) -> StoreResult<Vec<ClaimedBatch>> {
    let webhook_ids: Vec<&str> = wants.iter().map(|w| w.webhook_id.as_str()).collect();
    let sql = format!("SELECT {WEBHOOK_COLUMNS}, w.deleted, w.circuit_open_until FROM webhooks w WHERE w.id = ANY($1)");
    let stmt = tx.prepare_cached(&sql).await?;
    let mut webhooks: HashMap<String, (Arc<Webhook>, bool)> = HashMap::new();
    let mut circuits: HashMap<String, Timestamp> = HashMap::new();
    for row in tx.query(&stmt, &[&webhook_ids]).await? {
        let webhook = webhook_from_row(&row, 0, at_rest)?;
        let deleted: bool = row.try_get(N_WEBHOOK_COLUMNS)?;
        if let Some(until) = row.try_get::<_, Option<i64>>(N_WEBHOOK_COLUMNS + 1)? {
            circuits.insert(webhook.id.clone(), Timestamp(until));
        }
        webhooks.insert(webhook.id.clone(), (Arc::new(webhook), deleted));
    }
    // Which wants are refused (gone, deleted, disabled), and why.
    let (mut live_ids, mut live_limits) = (Vec::new(), Vec::new());
    let (mut refused_ids, mut reasons, mut refused_limits) = (Vec::new(), Vec::new(), Vec::new());
    for want in &wants {
        match webhooks.get(&want.webhook_id) {
            None | Some((_, true)) => {
                refused_ids.push(want.webhook_id.as_str());
                reasons.push("webhook deleted");
                refused_limits.push(want.limit as i64);
            }
            Some((webhook, false)) if !webhook.enabled => {
                refused_ids.push(want.webhook_id.as_str());
                reasons.push("webhook disabled");
                refused_limits.push(want.limit as i64);
            }
            Some(_) => {
                live_ids.push(want.webhook_id.as_str());
                live_limits.push(want.limit as i64);
            }
        }
    }
    if !refused_ids.is_empty() {
        // As many as the claim would have taken, as in SQLite: the rest
        // fail when claimed next.
        let fail = tx
            .prepare_cached(
                "WITH picked AS ( \
                     SELECT p.account_id, p.id, r.reason \
                     FROM UNNEST($2::text[], $3::text[], $4::int8[]) AS r(webhook_id, reason, n) \
                     CROSS JOIN LATERAL ( \
                         SELECT account_id, id FROM deliveries \
                         WHERE webhook_id = r.webhook_id AND next_attempt_at <= $1 \
                         AND (lease_until IS NULL OR lease_until < $1) \
                         ORDER BY next_attempt_at, id LIMIT r.n FOR UPDATE SKIP LOCKED) AS p) \
                 UPDATE deliveries d SET status = 'failed', next_attempt_at = NULL, lease_owner = NULL, \
                 lease_until = NULL, last_status_code = NULL, last_error = picked.reason, updated_at = $1 \
                 FROM picked WHERE d.account_id = picked.account_id AND d.id = picked.id",
            )
            .await?;
        tx.execute(&fail, &[&now.0, &refused_ids, &reasons, &refused_limits]).await?;
    }
    let mut claimed: HashMap<String, Vec<ClaimedRow>> = HashMap::new();
    if !live_ids.is_empty() {
        let take = tx
            .prepare_cached(
                "WITH picked AS ( \
                     SELECT p.account_id, p.id FROM UNNEST($1::text[], $2::int8[]) AS w(webhook_id, n) \
                     CROSS JOIN LATERAL ( \
                         SELECT account_id, id FROM deliveries \
                         WHERE webhook_id = w.webhook_id AND next_attempt_at <= $3 \
                         AND (lease_until IS NULL OR lease_until < $3) \
                         ORDER BY next_attempt_at, id LIMIT w.n FOR UPDATE SKIP LOCKED) AS p) \
                 UPDATE deliveries d SET lease_owner = $4, lease_until = $5 FROM picked \
                 WHERE d.account_id = picked.account_id AND d.id = picked.id \
                 RETURNING d.webhook_id, d.next_attempt_at, d.id, d.n_attempts, d.final_attempt, d.event_seq",
            )
            .await?;
        let rows = tx.query(&take, &[&live_ids, &live_limits, &now.0, &lease.node.0, &lease.until.0]).await?;
        for row in rows {
            let webhook_id: String = row.try_get(0)?;
            claimed.entry(webhook_id).or_default().push((
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
                row.try_get(4)?,
                row.try_get(5)?,
            ));
        }
    }
    // Each event once, however many of its deliveries were claimed.
    let seqs: Vec<i64> = claimed.values().flatten().map(|c| c.4).collect();
    let mut events: HashMap<i64, (String, String, Timestamp, Arc<str>)> = HashMap::new();
    if !seqs.is_empty() {
        let read =
            tx.prepare_cached("SELECT seq, id, type, timestamp, payload FROM events WHERE seq = ANY($1)").await?;
        for row in tx.query(&read, &[&seqs]).await? {
            let payload: &str = row.try_get(4)?;
            events.insert(
                row.try_get(0)?,
                (row.try_get(1)?, row.try_get(2)?, Timestamp(row.try_get(3)?), payload.into()),
            );
        }
    }
    // When each webhook's next delivery no node holds falls due.
    let next = tx
        .prepare_cached(
            "SELECT w.webhook_id, n.at FROM UNNEST($1::text[]) AS w(webhook_id) CROSS JOIN LATERAL ( \
                 SELECT next_attempt_at AS at FROM deliveries WHERE webhook_id = w.webhook_id \
                 AND next_attempt_at IS NOT NULL AND (lease_until IS NULL OR lease_until < $2) \
                 ORDER BY next_attempt_at LIMIT 1) AS n",
        )
        .await?;
    let next_due: HashMap<String, i64> =
        tx.query(&next, &[&webhook_ids, &now.0]).await?.iter().map(|r| (r.get(0), r.get(1))).collect();

    let mut batches = Vec::with_capacity(wants.len());
    for want in wants {
        let mut rows = claimed.remove(&want.webhook_id).unwrap_or_default();
        rows.sort();
        let full = rows.len() >= want.limit && want.limit > 0;
        let mut deliveries = Vec::with_capacity(rows.len());
        if let Some((webhook, _)) = webhooks.get(&want.webhook_id) {
            for (_, delivery_id, n_attempts, final_attempt, seq) in rows {
                let Some((event_id, event_type, event_timestamp, payload)) = events.get(&seq) else { continue };
                deliveries.push(DueDelivery {
                    delivery_id,
                    n_attempts: n_attempts as u32,
                    final_attempt,
                    event_id: event_id.clone(),
                    event_type: event_type.clone(),
                    event_timestamp: *event_timestamp,
                    payload: payload.clone(),
                    webhook: webhook.clone(),
                });
            }
        }
        let next_due = match full {
            true => Some(now),
            false => next_due.get(&want.webhook_id).map(|at| Timestamp(*at)),
        };
        let circuit_open_until = circuits.get(&want.webhook_id).copied().filter(|until| *until > now);
        batches.push(ClaimedBatch { webhook_id: want.webhook_id, deliveries, next_due, circuit_open_until });
    }
    Ok(batches)
}

/// `due_webhooks`' query, `$1` the time (or NULL: held or not).
pub(super) const DUE_WEBHOOKS: &str = "SELECT d.webhook_id, MIN(d.next_attempt_at) FROM deliveries d \
     WHERE d.next_attempt_at IS NOT NULL AND ($1::int8 IS NULL OR d.lease_until IS NULL OR d.lease_until < $1) \
     GROUP BY d.webhook_id";

/// Every webhook with unfinished deliveries no node holds at `now` (`None`:
/// held or not), and when the first falls due.
pub(super) async fn due_webhooks(
    client: &impl GenericClient,
    now: Option<Timestamp>,
) -> StoreResult<Vec<(String, Timestamp)>> {
    let rows = client.query(DUE_WEBHOOKS, &[&now.map(|t| t.0)]).await?;
    Ok(rows.iter().map(|r| (r.get(0), Timestamp(r.get(1)))).collect())
}
