//! The recorder: finished attempts, committed to the store in batches.
//! Hundreds of attempts share one commit (and its fsync) under load, so the
//! commit rate falls as the load rises; when little is being sent, each
//! goes at once. A commit that fails (the file locked by another process,
//! a full disk) is tried again, with backoff, until it succeeds: its
//! deliveries stay held meanwhile, and the engine starts no new attempt, so
//! nothing is stranded and nothing is sent that could not be recorded.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Engine, Finished};
use crate::model::{AttemptRecord, DeliveryKey, NextStep, Timestamp};
use crate::store::StoreError;

/// Attempts recorded in one commit, at most.
const RECORD_BATCH: usize = 512;
/// How long a finished attempt may wait for its batch to fill.
const RECORD_WAIT_MS: i64 = 50;
/// The first wait before a failed commit is tried again; it doubles up to
/// `STORE_RETRY_MAX_MS`. Real milliseconds: a lock or a disk frees up on
/// its own time, not on the retry schedule's.
const STORE_RETRY_FIRST_MS: i64 = 100;
const STORE_RETRY_MAX_MS: i64 = 5_000;
/// Failures other than `Unavailable` before a batch is committed record by
/// record.
const TRIES_BEFORE_SPLITTING: u32 = 3;

impl Engine {
    /// Records finished attempts in batches. Under load a batch fills up to
    /// `RECORD_BATCH` before it is committed, so one commit (and its fsync)
    /// serves hundreds of attempts; it goes at once when nothing else is
    /// being sent, and at the latest `RECORD_WAIT_MS` after its first
    /// attempt (by the engine's clock: under a test's `ManualClock`, a batch
    /// waiting beside a request that never ends goes when the clock moves).
    /// Deliveries stay held (unclaimable) until recorded, but their lanes
    /// already have room for the next. Returns when `stop` is cancelled and
    /// everything sent before has been recorded.
    pub(super) async fn record_finished(
        self: Arc<Self>,
        mut inbox: mpsc::UnboundedReceiver<Finished>,
        stop: CancellationToken,
    ) {
        let mut batch: Vec<Finished> = Vec::new();
        loop {
            let first = tokio::select! {
                first = inbox.recv() => first,
                _ = stop.cancelled() => None,
            };
            let Some(first) = first else {
                while let Ok(finished) = inbox.try_recv() {
                    batch.push(finished);
                }
                if !batch.is_empty() {
                    self.record_batch(std::mem::take(&mut batch), &stop).await;
                }
                return;
            };
            batch.push(first);
            // Real milliseconds, not scaled ones: this bounds how stale the
            // log may be, not a retry wait.
            let mut due = self.clock.sleep_until(Timestamp(self.clock.now().0 + RECORD_WAIT_MS));
            loop {
                while batch.len() < RECORD_BATCH
                    && let Ok(finished) = inbox.try_recv()
                {
                    batch.push(finished);
                }
                if batch.len() >= RECORD_BATCH || self.sending() == 0 {
                    break;
                }
                tokio::select! {
                    next = inbox.recv() => match next {
                        Some(finished) => batch.push(finished),
                        None => break,
                    },
                    _ = &mut due => break,
                    _ = stop.cancelled() => break,
                }
            }
            self.record_batch(std::mem::take(&mut batch), &stop).await;
        }
    }

    /// Requests being sent right now.
    fn sending(&self) -> usize {
        self.config.max_in_flight - self.slots.available_permits()
    }

    pub(super) async fn record_batch(self: &Arc<Self>, batch: Vec<Finished>, stop: &CancellationToken) {
        let mut dues = Vec::with_capacity(batch.len());
        let mut records = Vec::with_capacity(batch.len());
        let (mut put_off, mut waiting, mut retries) = (Vec::new(), Vec::new(), Vec::new());
        for Finished { due, record } in batch {
            match record {
                Some(record) => {
                    self.config.metrics.attempt(&due.webhook.id, due.webhook.profile, &record);
                    if let NextStep::RetryAt(at) = record.next {
                        retries.push((due.webhook.id.clone(), at));
                    }
                    records.push(record);
                }
                None => {
                    put_off.push(DeliveryKey {
                        account_id: due.webhook.account_id.clone(),
                        delivery_id: due.delivery_id.clone(),
                    });
                    waiting.push(due.webhook.id.clone());
                }
            }
            dues.push(due);
        }
        self.config.metrics.recorder_batch(records.len());
        let records = Arc::new(records);
        if self.commit_records(&records, &put_off, stop).await {
            for (webhook_id, at) in &retries {
                self.mark_due([webhook_id.as_str()], *at);
            }
            if !waiting.is_empty() {
                // Still due: the plan holds them back while the breaker is open.
                self.mark_due(waiting.iter().map(String::as_str), self.clock.now());
            }
            if self.recorded.receiver_count() > 0 {
                for record in records.iter() {
                    let _ = self.recorded.send(record.clone());
                }
            }
            // Few fail for good in any batch: look up only those.
            let exhausted: Vec<_> = records
                .iter()
                .filter(|record| record.next == NextStep::Failed)
                .filter_map(|record| {
                    dues.iter().find(|due| due.delivery_id == record.delivery_id).map(|due| (due, record))
                })
                .collect();
            if !exhausted.is_empty() {
                // The deliveries are recorded: claims may see them again
                // while the account is told.
                self.release(&dues);
                self.tell_exhausted(exhausted).await;
                return;
            }
        }
        self.release(&dues);
    }

    /// Commits one batch, trying again after a failure (with backoff, on
    /// the clock, so tests drive it) until it succeeds. A fault of the
    /// world (`Unavailable`: a lock, a full disk) is waited out however
    /// long it lasts. Any other error is tried `TRIES_BEFORE_SPLITTING`
    /// times, then each record alone, so that one record the store cannot
    /// take does not hold up the rest (and with them the whole engine);
    /// such a record is logged and left, its delivery to be claimed again.
    /// Returns false only when shutdown came first: the deliveries then stay
    /// leased in the store and are attempted again at the next start.
    async fn commit_records(
        &self,
        records: &Arc<Vec<AttemptRecord>>,
        put_off: &[DeliveryKey],
        stop: &CancellationToken,
    ) -> bool {
        let mut wait_ms = STORE_RETRY_FIRST_MS;
        let mut other_failures = 0;
        loop {
            let failed =
                match self.store.record_attempts(&self.node, records.clone(), put_off.to_vec(), self.clock.now()).await
                {
                    Ok(lost) => {
                        self.lost_leases(&lost);
                        break;
                    }
                    Err(err) => err,
                };
            if !matches!(failed, StoreError::Unavailable(_)) {
                other_failures += 1;
                if other_failures >= TRIES_BEFORE_SPLITTING {
                    self.commit_one_by_one(records, put_off).await;
                    break;
                }
            }
            // New attempts wait until their results can be recorded.
            self.recording_stalled.store(true, Ordering::Release);
            tracing::error!(n = records.len() + put_off.len(), error = %failed, retry_in_ms = wait_ms, "could not record attempts");
            let retry = self.clock.sleep_until(Timestamp(self.clock.now().0.saturating_add(wait_ms)));
            tokio::select! {
                _ = retry => {}
                _ = stop.cancelled() => return false,
            }
            wait_ms = (wait_ms * 2).min(STORE_RETRY_MAX_MS);
        }
        if self.recording_stalled.swap(false, Ordering::AcqRel) {
            tracing::info!("recording attempts again");
            self.wake.notify_one();
        }
        true
    }

    /// Deliveries whose lease ran out before their attempts here were
    /// recorded: another node claimed them, and its result stands.
    fn lost_leases(&self, lost: &[DeliveryKey]) {
        for key in lost {
            tracing::warn!(delivery_id = %key.delivery_id, "lease lost before the attempt was recorded; another node has the delivery");
        }
    }

    /// Commits each record and each put-off delivery on its own, logging
    /// and leaving those the store refuses.
    async fn commit_one_by_one(&self, records: &[AttemptRecord], put_off: &[DeliveryKey]) {
        for record in records {
            let one = Arc::new(vec![record.clone()]);
            if let Err(err) = self.store.record_attempts(&self.node, one, Vec::new(), self.clock.now()).await {
                tracing::error!(delivery_id = %record.delivery_id, error = %err, "could not record an attempt; left unrecorded");
            }
        }
        for key in put_off {
            let (none, one) = (Arc::default(), vec![key.clone()]);
            if let Err(err) = self.store.record_attempts(&self.node, none, one, self.clock.now()).await {
                tracing::error!(delivery_id = %key.delivery_id, error = %err, "could not hand a delivery back");
            }
        }
    }
}
