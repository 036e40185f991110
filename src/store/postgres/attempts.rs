//! The attempt log on PostgreSQL, laid out as in SQLite: a delivery's first
//! attempt in the delivery's own row, later ones in `attempts`. Recording
//! is batched (one `UNNEST` per statement, three statements per round) and
//! holds only for the node that holds the lease: a node whose lease ran out
//! and was claimed by another cannot overwrite that one's result.

use deadpool_postgres::GenericClient;

use super::notices::notify_due_at;
use crate::model::{Attempt, AttemptRecord, DeliveryKey, DeliveryStatus, ErrorClass, NextStep, NodeId, Timestamp};
use crate::store::StoreResult;

/// Records' columns, one array each, for `UNNEST`.
#[derive(Default)]
struct Columns<'r> {
    account_ids: Vec<&'r str>,
    ids: Vec<&'r str>,
    statuses: Vec<&'static str>,
    next_at: Vec<Option<i64>>,
    codes: Vec<Option<i64>>,
    last_errors: Vec<Option<String>>,
    started: Vec<i64>,
    durations: Vec<i64>,
    bodies: Vec<Option<&'r str>>,
    classes: Vec<Option<&'static str>>,
    messages: Vec<Option<&'r str>>,
}

impl<'r> Columns<'r> {
    fn push(&mut self, record: &'r AttemptRecord) {
        let a = &record.attempt;
        let (status, next_at) = match record.next {
            NextStep::Success => (DeliveryStatus::Success, None),
            NextStep::RetryAt(at) => (DeliveryStatus::Retrying, Some(at.0)),
            NextStep::Failed => (DeliveryStatus::Failed, None),
        };
        self.account_ids.push(&record.account_id);
        self.ids.push(&record.delivery_id);
        self.statuses.push(status.as_str());
        self.next_at.push(next_at);
        self.codes.push(a.status_code.map(i64::from));
        self.last_errors.push(a.error_message.as_ref().map(|m| match a.error_class {
            Some(class) => format!("{}: {m}", class.as_str()),
            None => m.clone(),
        }));
        self.started.push(a.started_at.0);
        self.durations.push(a.duration_ms as i64);
        self.bodies.push(a.response_body.as_deref());
        self.classes.push(a.error_class.map(|c| c.as_str()));
        self.messages.push(a.error_message.as_deref());
    }

    fn params<'a>(&'a self, now: &'a i64, node: &'a &'a str) -> [&'a (dyn tokio_postgres::types::ToSql + Sync); 13] {
        [
            now,
            node,
            &self.account_ids,
            &self.ids,
            &self.statuses,
            &self.next_at,
            &self.codes,
            &self.last_errors,
            &self.started,
            &self.durations,
            &self.bodies,
            &self.classes,
            &self.messages,
        ]
    }
}

/// The records as a table `u`, numbered as `Columns::params` binds them.
const RECORDS: &str = "UNNEST($3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[], $8::text[], $9::int8[], \
     $10::int8[], $11::text[], $12::text[], $13::text[]) \
     AS u(account_id, id, status, next_at, code, last_error, started, duration, body, class, message)";

/// Records finished attempts of deliveries `node` holds, and lets go of
/// its `put_off` deliveries (not sent: they wait again, attempts intact),
/// inside the caller's transaction. Answers the deliveries `node` did not
/// hold, whose records were not written.
pub(super) async fn record(
    tx: &deadpool_postgres::Transaction<'_>,
    node: &NodeId,
    records: &[AttemptRecord],
    put_off: &[DeliveryKey],
    now: Timestamp,
    from: &str,
) -> StoreResult<Vec<DeliveryKey>> {
    let node = node.0.as_str();
    let mut lost = Vec::new();
    if !records.is_empty() {
        // First attempts into the delivery's row, while the row says no
        // attempt was made: the engine's count is checked, not trusted.
        let mut firsts = Columns::default();
        records.iter().filter(|r| r.number == 1).for_each(|r| firsts.push(r));
        let mut done = std::collections::HashSet::new();
        if !firsts.ids.is_empty() {
            let first = tx
                .prepare_cached(&format!(
                    "UPDATE deliveries d SET status = u.status, n_attempts = 1, final_attempt = FALSE, \
                     next_attempt_at = u.next_at, lease_owner = NULL, lease_until = NULL, last_status_code = u.code, \
                     last_error = u.last_error, updated_at = $1, first_started_at = u.started, \
                     first_duration_ms = u.duration, first_status_code = u.code, first_response_body = u.body, \
                     first_error_class = u.class, first_error_message = u.message \
                     FROM {RECORDS} \
                     WHERE d.account_id = u.account_id AND d.id = u.id AND d.n_attempts = 0 AND d.lease_owner = $2 \
                     RETURNING d.id"
                ))
                .await?;
            for row in tx.query(&first, &firsts.params(&now.0, &node)).await? {
                done.insert(row.get::<_, String>(0));
            }
        }
        let mut later = Columns::default();
        records.iter().filter(|r| !done.contains(&r.delivery_id)).for_each(|r| later.push(r));
        if !later.ids.is_empty() {
            let insert = tx
                .prepare_cached(&format!(
                    "INSERT INTO attempts (delivery_id, n, started_at, duration_ms, status_code, response_body, \
                     error_class, error_message) \
                     SELECT u.id, d.n_attempts + 1, u.started, u.duration, u.code, u.body, u.class, u.message \
                     FROM {RECORDS} JOIN deliveries d ON d.account_id = u.account_id AND d.id = u.id \
                     WHERE d.lease_owner = $2 AND $1::int8 IS NOT NULL" // ($1, the time, is bound for all three alike)
                ))
                .await?;
            let written = tx.execute(&insert, &later.params(&now.0, &node)).await?;
            let update = tx
                .prepare_cached(&format!(
                    "UPDATE deliveries d SET status = u.status, n_attempts = d.n_attempts + 1, \
                     final_attempt = FALSE, next_attempt_at = u.next_at, lease_owner = NULL, lease_until = NULL, \
                     last_status_code = u.code, last_error = u.last_error, updated_at = $1 \
                     FROM {RECORDS} \
                     WHERE d.account_id = u.account_id AND d.id = u.id AND d.lease_owner = $2 \
                     RETURNING d.id"
                ))
                .await?;
            let updated: std::collections::HashSet<String> =
                tx.query(&update, &later.params(&now.0, &node)).await?.iter().map(|r| r.get(0)).collect();
            debug_assert_eq!(written as usize, updated.len());
            lost = records
                .iter()
                .filter(|r| !done.contains(&r.delivery_id) && !updated.contains(&r.delivery_id))
                .map(|r| DeliveryKey { account_id: r.account_id.clone(), delivery_id: r.delivery_id.clone() })
                .collect();
        }
    }
    if !put_off.is_empty() {
        let accounts: Vec<&str> = put_off.iter().map(|k| k.account_id.as_str()).collect();
        let ids: Vec<&str> = put_off.iter().map(|k| k.delivery_id.as_str()).collect();
        let release = tx
            .prepare_cached(
                "UPDATE deliveries d SET lease_owner = NULL, lease_until = NULL \
                 FROM UNNEST($2::text[], $3::text[]) AS k(account_id, id) \
                 WHERE d.account_id = k.account_id AND d.id = k.id AND d.lease_owner = $1 \
                 RETURNING d.webhook_id, d.next_attempt_at",
            )
            .await?;
        // Put off here, due for any node: the others hear of them.
        let mut due: Vec<(String, i64)> = tx
            .query(&release, &[&node, &accounts, &ids])
            .await?
            .iter()
            .filter_map(|r| Some((r.get(0), r.get::<_, Option<i64>>(1)?)))
            .collect();
        due.sort();
        due.dedup_by(|a, b| a.0 == b.0);
        notify_due_at(tx, due, from).await?;
    }
    Ok(lost)
}

/// One delivery's attempts, first to last.
pub(super) async fn attempts_of(
    client: &impl GenericClient,
    account_id: &str,
    delivery_id: &str,
) -> StoreResult<Vec<Attempt>> {
    let stmt = client
        .prepare_cached(
            "SELECT 1::int8 AS n, first_started_at, first_duration_ms, first_status_code, first_response_body, \
             first_error_class, first_error_message FROM deliveries \
             WHERE account_id = $1 AND id = $2 AND first_started_at IS NOT NULL \
             UNION ALL \
             SELECT n, started_at, duration_ms, status_code, response_body, error_class, error_message \
             FROM attempts WHERE delivery_id = $2 \
             ORDER BY 1",
        )
        .await?;
    client
        .query(&stmt, &[&account_id, &delivery_id])
        .await?
        .iter()
        .map(|row| {
            let class: Option<String> = row.try_get(5)?;
            Ok(Attempt {
                started_at: Timestamp(row.try_get(1)?),
                duration_ms: row.try_get::<_, i64>(2)?.max(0) as u64,
                status_code: row.try_get::<_, Option<i64>>(3)?.map(|c| c as u16),
                response_body: row.try_get(4)?,
                error_class: class.as_deref().and_then(ErrorClass::parse),
                error_message: row.try_get(6)?,
            })
        })
        .collect()
}

/// Every attempt's webhook and duration, for deliveries of account `$1`
/// made in `[$2, $3)` (as delivery ids), of webhook `$4` if it is not null.
pub(super) const ATTEMPT_DURATIONS: &str = "SELECT webhook_id, first_duration_ms FROM deliveries \
     WHERE account_id = $1 AND id >= $2 AND id < $3 AND ($4::text IS NULL OR webhook_id = $4) \
     AND first_duration_ms IS NOT NULL \
     UNION ALL \
     SELECT d.webhook_id, a.duration_ms FROM deliveries d JOIN attempts a ON a.delivery_id = d.id \
     WHERE d.account_id = $1 AND d.id >= $2 AND d.id < $3 AND ($4::text IS NULL OR d.webhook_id = $4)";
