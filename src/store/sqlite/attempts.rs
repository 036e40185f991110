//! The attempt log. A delivery's first attempt is kept in the delivery's
//! own row (migration 4), which recording the attempt rewrites anyway;
//! later attempts, and first attempts recorded before that migration, are
//! rows of `attempts`. This module is the one place that knows: it writes
//! attempts, and gives the reads that put both halves together.

use rusqlite::{Connection, params};

use crate::model::{Attempt, AttemptRecord, DeliveryKey, DeliveryStatus, ErrorClass, NextStep, Timestamp};
use crate::store::StoreResult;

/// Records finished attempts and lets go of `put_off` deliveries (not
/// sent: they wait again, their attempts intact), inside the caller's
/// transaction.
pub(super) fn record(
    conn: &Connection,
    records: &[AttemptRecord],
    put_off: &[DeliveryKey],
    now: Timestamp,
) -> StoreResult<()> {
    // The three statements number their parameters alike, so one list of
    // values serves each: ?1 delivery, ?2 status, ?3 next attempt, ?4 status
    // code, ?5 last error, ?6 now, ?7 started, ?8 duration, ?9 response
    // body, ?10 error class, ?11 error message, ?12 account.
    //
    // Only while the row says no attempt was made: the engine's count
    // (`number`) is checked, not trusted.
    let mut first = conn.prepare_cached(
        "UPDATE deliveries SET status = ?2, n_attempts = 1, final_attempt = 0, next_attempt_at = ?3, leased = 0, \
         last_status_code = ?4, last_error = ?5, updated_at = ?6, first_started_at = ?7, first_duration_ms = ?8, \
         first_status_code = ?4, first_response_body = ?9, first_error_class = ?10, first_error_message = ?11 \
         WHERE account_id = ?12 AND id = ?1 AND n_attempts = 0",
    )?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO attempts (delivery_id, n, started_at, duration_ms, status_code, response_body, \
         error_class, error_message) \
         VALUES (?1, (SELECT n_attempts + 1 FROM deliveries WHERE account_id = ?12 AND id = ?1), \
         ?7, ?8, ?4, ?9, ?10, ?11)",
    )?;
    let mut update = conn.prepare_cached(
        "UPDATE deliveries SET status = ?2, n_attempts = n_attempts + 1, final_attempt = 0, \
         next_attempt_at = ?3, leased = 0, last_status_code = ?4, last_error = ?5, updated_at = ?6 \
         WHERE account_id = ?12 AND id = ?1",
    )?;
    for record in records {
        let a = &record.attempt;
        let (status, next_at) = match record.next {
            NextStep::Success => (DeliveryStatus::Success, None),
            NextStep::RetryAt(at) => (DeliveryStatus::Retrying, Some(at.0)),
            NextStep::Failed => (DeliveryStatus::Failed, None),
        };
        let last_error = a.error_message.as_ref().map(|m| match a.error_class {
            Some(class) => format!("{}: {m}", class.as_str()),
            None => m.clone(),
        });
        let values = params![
            record.delivery_id,
            status.as_str(),
            next_at,
            a.status_code,
            last_error,
            now.0,
            a.started_at.0,
            a.duration_ms as i64,
            a.response_body,
            a.error_class.map(|c| c.as_str()),
            a.error_message,
            record.account_id,
        ];
        if record.number == 1 && first.execute(values)? == 1 {
            continue;
        }
        insert.execute(values)?;
        update.execute(values)?;
    }
    let mut release = conn.prepare_cached("UPDATE deliveries SET leased = 0 WHERE account_id = ?1 AND id = ?2")?;
    for key in put_off {
        release.execute([&key.account_id, &key.delivery_id])?;
    }
    Ok(())
}

/// One delivery's attempts, first to last.
pub(super) fn attempts_of(conn: &Connection, account_id: &str, delivery_id: &str) -> StoreResult<Vec<Attempt>> {
    let mut stmt = conn.prepare_cached(
        "SELECT 1, first_started_at, first_duration_ms, first_status_code, first_response_body, first_error_class, \
         first_error_message FROM deliveries WHERE account_id = ?2 AND id = ?1 AND first_started_at IS NOT NULL \
         UNION ALL \
         SELECT n, started_at, duration_ms, status_code, response_body, error_class, error_message \
         FROM attempts WHERE delivery_id = ?1 \
         ORDER BY 1",
    )?;
    let attempts = stmt
        .query_map([delivery_id, account_id], |row| {
            let class: Option<String> = row.get(5)?;
            Ok(Attempt {
                started_at: Timestamp(row.get(1)?),
                duration_ms: row.get::<_, i64>(2)? as u64,
                status_code: row.get(3)?,
                response_body: row.get(4)?,
                error_class: class.as_deref().and_then(ErrorClass::parse),
                error_message: row.get(6)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(attempts)
}

/// Every attempt's webhook and duration, for deliveries of account `?1`
/// made in `[?2, ?3)` (as delivery ids), of webhook `?4` if it is not null.
pub(super) const ATTEMPT_DURATIONS: &str = "SELECT webhook_id, first_duration_ms FROM deliveries \
     WHERE account_id = ?1 AND id >= ?2 AND id < ?3 AND (?4 IS NULL OR webhook_id = ?4) \
     AND first_duration_ms IS NOT NULL \
     UNION ALL \
     SELECT d.webhook_id, a.duration_ms FROM deliveries d JOIN attempts a ON a.delivery_id = d.id \
     WHERE d.account_id = ?1 AND d.id >= ?2 AND d.id < ?3 AND (?4 IS NULL OR d.webhook_id = ?4)";
