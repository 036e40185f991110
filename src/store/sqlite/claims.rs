//! Claiming a webhook's due deliveries: a read, off the writer thread.
//!
//! One node owns an SQLite file, so a claim writes no lease: the store's
//! own list of the deliveries it has handed out and not yet seen recorded
//! (`Held`) is the lease, and a claim skips them. (Deliveries ingest hands
//! over are written leased, since they are handed over in the same commit;
//! the next start releases them.) Only deliveries of a deleted or disabled
//! webhook need a write, to fail them, and that is rare.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{N_WEBHOOK_COLUMNS, WEBHOOK_COLUMNS, webhook_from_row};
use crate::model::{DueDelivery, Timestamp, Webhook};
use crate::profile::Profile;
use crate::store::{ClaimedBatch, IdMap, IdSet, StoreResult};

/// A place in a webhook's due order (by time, then id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ClaimCursor {
    pub due_at: Timestamp,
    pub delivery_id: String,
}

/// What the store holds of one webhook: the deliveries claimed and not yet
/// recorded, and where its last claim stopped.
#[derive(Default)]
pub(super) struct Lane {
    held: IdSet,
    /// Where the last claim stopped: the next starts past what it handed
    /// out (and is held).
    cursor: Option<ClaimCursor>,
    /// The last claim filled up past the cursor: the next need not copy
    /// the held list (what lies past the cursor is not held). Such a claim
    /// reads nothing behind the cursor: a delivery recorded and released
    /// while it read could look due and not held. If it runs short, the
    /// next copies the list again.
    streaming: bool,
}

/// The deliveries claimed and not yet recorded, by webhook: for one node's
/// file, the lease.
#[derive(Default)]
pub(super) struct Held {
    lanes: IdMap<Lane>,
    /// Each held delivery's webhook: records name deliveries alone.
    webhook_of: IdMap<String>,
}

impl Held {
    /// What a claim of `limit` for `webhook_id` should skip and start from,
    /// as of now (before its read begins: what is released after this is
    /// still skipped, so a row recorded meanwhile is never taken again).
    pub(super) fn want(&self, webhook_id: &str, limit: usize) -> Want {
        let (held, after) = match self.lanes.get(webhook_id) {
            Some(lane) if lane.streaming => (None, lane.cursor.clone()),
            Some(lane) => (Some(lane.held.clone()), lane.cursor.clone()),
            None => (Some(IdSet::default()), None),
        };
        Want { webhook_id: webhook_id.to_owned(), limit, held, after }
    }

    /// A claim took `taken`: held until recorded.
    pub(super) fn claimed(&mut self, taken: &Taken) {
        let webhook_id = &taken.batch.webhook_id;
        if taken.batch.deliveries.is_empty() && !self.lanes.contains_key(webhook_id) {
            return;
        }
        let lane = self.lanes.entry(webhook_id.clone()).or_default();
        for due in &taken.batch.deliveries {
            lane.held.insert(due.delivery_id.clone());
            self.webhook_of.insert(due.delivery_id.clone(), webhook_id.clone());
        }
        lane.cursor = taken.cursor.clone().max(lane.cursor.take());
        lane.streaming = taken.filled_past_cursor;
        if lane.held.is_empty() {
            self.lanes.remove(webhook_id);
        }
    }

    /// These deliveries' attempts are committed (or they were handed back):
    /// claims may see them again.
    pub(super) fn release<'a>(&mut self, delivery_ids: impl IntoIterator<Item = &'a str>) {
        if self.webhook_of.is_empty() {
            return;
        }
        for delivery_id in delivery_ids {
            let Some(webhook_id) = self.webhook_of.remove(delivery_id) else { continue };
            let Some(lane) = self.lanes.get_mut(&webhook_id) else { continue };
            lane.held.remove(delivery_id);
            if lane.held.is_empty() {
                self.lanes.remove(&webhook_id);
            }
        }
    }

    pub(super) fn clear(&mut self) {
        self.lanes.clear();
        self.webhook_of.clear();
    }
}

/// What one claim asks of one webhook.
#[derive(Debug)]
pub(super) struct Want {
    pub webhook_id: String,
    pub limit: usize,
    /// Deliveries of this webhook held, as of before the claim. `None`
    /// when the claim is expected to find enough past `after`: then it
    /// reads only past `after`, since anything behind it might be held.
    pub held: Option<IdSet>,
    /// Where the previous claim for this webhook stopped.
    pub after: Option<ClaimCursor>,
}

/// What a claim took for one webhook, and where it stopped.
pub(super) struct Taken {
    pub batch: ClaimedBatch,
    /// The place of the last delivery taken.
    pub cursor: Option<ClaimCursor>,
    /// All were taken past `want.after`.
    pub filled_past_cursor: bool,
}

/// What a claim found for one webhook.
pub(super) enum Found {
    Due(Taken),
    /// The webhook is gone or disabled: these deliveries fail, and more may wait.
    Refused {
        webhook_id: String,
        account_id: String,
        reason: &'static str,
        delivery_ids: Vec<String>,
    },
}

/// Up to `want.limit` deliveries of one webhook due at `now`, skipping
/// those the engine holds.
/// Events read by one claim, by sequence number: an event that fans out to
/// many webhooks is read, and its payload kept in memory, once.
pub(super) type EventCache = HashMap<i64, ClaimedEvent>;

#[derive(Clone)]
pub(super) struct ClaimedEvent {
    id: String,
    event_type: String,
    timestamp: Timestamp,
    payload: Arc<str>,
}

/// The columns of a due-index row a claim reads: all from the index.
const DUE_COLUMNS: &str = "id, next_attempt_at, n_attempts, final_attempt, event_seq";

pub(super) fn find_due(
    conn: &Connection,
    want: &Want,
    now: Timestamp,
    events: &mut EventCache,
    at_rest: &crate::sealing::AtRest,
) -> StoreResult<Found> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS}, w.deleted FROM webhooks w WHERE w.id = ?1");
    let found = conn
        .prepare_cached(&sql)?
        .query_row([&want.webhook_id], |row| {
            Ok((webhook_from_row(row, 0, at_rest)?, row.get::<_, bool>(N_WEBHOOK_COLUMNS)?))
        })
        .optional()?;
    let refusal = match &found {
        None | Some((_, true)) => Some("webhook deleted"),
        Some((webhook, false)) if !webhook.enabled => Some("webhook disabled"),
        _ => None,
    };
    let webhook = Arc::new(match found {
        Some((webhook, _)) => webhook,
        None => placeholder_webhook(&want.webhook_id, &account_of_due(conn, &want.webhook_id)?),
    });
    let DueRows { deliveries, exhausted, cursor, filled_past_cursor } = due_rows(conn, &webhook, want, now, events)?;
    if let Some(reason) = refusal {
        let delivery_ids = deliveries.into_iter().map(|due| due.delivery_id).collect();
        let account_id = webhook.account_id.clone();
        return Ok(Found::Refused { webhook_id: want.webhook_id.clone(), account_id, reason, delivery_ids });
    }
    let next_due = if exhausted {
        // Nothing more is due now: the next that will be, if any.
        conn.prepare_cached(
            "SELECT next_attempt_at FROM deliveries WHERE webhook_id = ?1 AND next_attempt_at > ?2 AND leased = 0 \
             ORDER BY next_attempt_at LIMIT 1",
        )?
        .query_row(params![want.webhook_id, now.0], |r| r.get(0))
        .optional()?
        .map(Timestamp)
    } else {
        Some(now)
    };
    Ok(Found::Due(Taken {
        batch: ClaimedBatch { webhook_id: want.webhook_id.clone(), deliveries, next_due, circuit_open_until: None },
        cursor,
        filled_past_cursor,
    }))
}

struct DueRows {
    deliveries: Vec<DueDelivery>,
    /// Everything due now was read.
    exhausted: bool,
    /// The place of the last delivery taken.
    cursor: Option<ClaimCursor>,
    /// All were taken past `want.after`.
    filled_past_cursor: bool,
}

/// The due deliveries not held, in due order. Held deliveries are due
/// too, and usually first in that order (they were claimed first); the
/// cursor skips them. Whatever it might skip that is not held (a delivery
/// put back, a manual retry) is found by a scan from the start once the
/// rows past the cursor run short.
fn due_rows(
    conn: &Connection,
    webhook: &Arc<Webhook>,
    want: &Want,
    now: Timestamp,
    events: &mut EventCache,
) -> StoreResult<DueRows> {
    let mut taken = DueRows {
        deliveries: Vec::with_capacity(want.limit),
        exhausted: false,
        cursor: None,
        filled_past_cursor: false,
    };
    let mut event = conn.prepare_cached("SELECT id, type, timestamp, payload FROM events WHERE seq = ?1")?;
    let mut take = |taken: &mut DueRows, row: &rusqlite::Row<'_>| -> StoreResult<()> {
        let (delivery_id, due_at): (String, i64) = (row.get(0)?, row.get(1)?);
        let seq: i64 = row.get(4)?;
        let claimed = match events.get(&seq) {
            Some(known) => known.clone(),
            None => {
                let read = event.query_row([seq], |row| {
                    Ok(ClaimedEvent {
                        id: row.get(0)?,
                        event_type: row.get(1)?,
                        timestamp: Timestamp(row.get(2)?),
                        payload: Arc::<str>::from(row.get_ref(3)?.as_str()?),
                    })
                })?;
                events.insert(seq, read.clone());
                read
            }
        };
        let due = DueDelivery {
            delivery_id: delivery_id.clone(),
            n_attempts: row.get(2)?,
            final_attempt: row.get(3)?,
            event_id: claimed.id,
            event_type: claimed.event_type,
            event_timestamp: claimed.timestamp,
            payload: claimed.payload,
            webhook: webhook.clone(),
        };
        taken.deliveries.push(due);
        taken.cursor = Some(ClaimCursor { due_at: Timestamp(due_at), delivery_id });
        Ok(())
    };
    if let Some(after) = &want.after {
        let mut past = conn.prepare_cached(&format!(
            "SELECT {DUE_COLUMNS} FROM deliveries WHERE webhook_id = ?1 AND next_attempt_at <= ?2 \
             AND leased = 0 AND (next_attempt_at, id) > (?3, ?4) ORDER BY next_attempt_at, id LIMIT ?5"
        ))?;
        let mut rows =
            past.query(params![want.webhook_id, now.0, after.due_at.0, after.delivery_id, want.limit as i64])?;
        while let Some(row) = rows.next()? {
            let delivery_id = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            if !want.held.as_ref().is_some_and(|held| held.contains(delivery_id)) {
                take(&mut taken, row)?;
            }
        }
        if taken.deliveries.len() == want.limit {
            taken.filled_past_cursor = true;
            return Ok(taken);
        }
    }
    let Some(held) = &want.held else {
        // Behind the cursor, anything might be held: the engine asks again
        // with its list.
        return Ok(taken);
    };
    // From the start, reading past what is held (and what was just taken):
    // `limit` more, if there are that many.
    let skip = held.len() + taken.deliveries.len();
    let scan = want.limit + skip;
    let mut from_start = conn.prepare_cached(&format!(
        "SELECT {DUE_COLUMNS} FROM deliveries WHERE webhook_id = ?1 AND next_attempt_at <= ?2 \
         AND leased = 0 ORDER BY next_attempt_at, id LIMIT ?3"
    ))?;
    let mut rows = from_start.query(params![want.webhook_id, now.0, scan as i64])?;
    // What this claim took past the cursor comes up again from the start
    // (a row comes up once in a scan, so what the scan takes need not join).
    let taken_ids: IdSet = taken.deliveries.iter().map(|d| d.delivery_id.clone()).collect();
    let mut seen = 0;
    while let Some(row) = rows.next()? {
        seen += 1;
        let delivery_id = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
        if held.contains(delivery_id) || taken_ids.contains(delivery_id) {
            continue;
        }
        take(&mut taken, row)?;
        if taken.deliveries.len() == want.limit {
            break;
        }
    }
    // Stopping at the limit says nothing of what lies beyond.
    taken.exhausted = taken.deliveries.len() < want.limit && seen < scan;
    // The scan from the start may end before the rows past the cursor did.
    taken.cursor = taken.cursor.max(want.after.clone());
    Ok(taken)
}

/// The account of a webhook whose row is gone, from its due deliveries
/// (they are found by account and id, so failing them needs it). Herald
/// only marks webhooks deleted; this is for a row removed by hand.
fn account_of_due(conn: &Connection, webhook_id: &str) -> StoreResult<String> {
    Ok(conn
        .prepare_cached(
            "SELECT account_id FROM deliveries WHERE webhook_id = ?1 AND next_attempt_at IS NOT NULL AND leased = 0 \
             LIMIT 1",
        )?
        .query_row([webhook_id], |r| r.get(0))
        .optional()?
        .unwrap_or_default())
}

/// Stands in for a webhook row that no longer exists.
fn placeholder_webhook(id: &str, account_id: &str) -> Webhook {
    Webhook {
        id: id.to_owned(),
        enabled: false,
        ..Webhook::new(account_id, "", Profile::default(), String::new(), Timestamp(0))
    }
}
