//! One delivery's turn: its lane, its webhook's pace, a global slot, the
//! circuit breaker's leave, the attempt, and what the attempt tells the
//! webhook (its breaker, a `410`, a `Retry-After`) before it goes to the
//! recorder.

use std::sync::Arc;

use rand::Rng;
use tokio::sync::{Semaphore, mpsc};

use super::attempt::{Performed, ReceiverSays, perform};
use super::breaker::{Allowance, Transition};
use super::{Engine, Finished, pace};
use crate::model::{DueDelivery, ErrorClass, NextStep, Timestamp};

impl Engine {
    pub(super) async fn deliver(self: Arc<Self>, due: DueDelivery, lane: Arc<Semaphore>, is_probe: bool) {
        // The lane's turn first, then a global slot: a webhook waiting on its
        // own cap holds no slot another webhook could use.
        let turn = lane.acquire_owned().await;
        // The webhook's pace next, still before a global slot, so that a
        // delivery waiting for its token holds nothing another could use.
        if let Some(limit) = due.webhook.rate_limit {
            self.pace(&due.webhook.id, limit).await;
        }
        let record = match (turn, self.slots.acquire().await) {
            // While attempts cannot be recorded, none starts: it is put off,
            // its attempts intact, rather than sent and then sent again
            // after a restart.
            (Ok(_turn), Ok(_slot)) if self.lets_through(&due, is_probe) && !self.recording_stalled() => {
                let sample = rand::rng().random_range(-1.0..=1.0);
                // Boxed: the attempt's future (rendering, the exchange, the
                // timeout) is kilobytes, and a delivery's task would
                // otherwise carry, and copy on spawn, all of it while it
                // waits its turn.
                let max_body = self.config.max_rendered_body;
                let Performed { record, receiver_says } =
                    Box::pin(perform(&self.outbound, &*self.clock, &due, sample, max_body)).await;
                // A request that could not be built says nothing of the receiver.
                let transition = match record.attempt.error_class {
                    Some(ErrorClass::Render) => Transition::Nothing,
                    _ => self.feed_breaker(&due.webhook.id, record.next == NextStep::Success, is_probe),
                };
                Some((record, receiver_says, transition))
            }
            _ => None,
        };
        let record = match record {
            Some((record, receiver_says, transition)) => {
                // Rare: most attempts change nothing for their webhook.
                let succeeded = record.next == NextStep::Success;
                if transition == Transition::Opened {
                    self.config.metrics.breaker_opened();
                }
                if transition != Transition::Nothing || (succeeded && due.webhook.failing_since.is_some()) {
                    self.on_transition(&due.webhook, transition, succeeded).await;
                }
                Some((record, receiver_says))
            }
            None => None,
        };
        let record = match record {
            Some((record, ReceiverSays::Gone)) => {
                self.disable(&due.webhook, "the receiver answered 410 Gone").await;
                Some(record)
            }
            Some((record, ReceiverSays::WaitUntil(until))) => {
                self.hold(&due.webhook.id, until);
                Some(record)
            }
            Some((record, ReceiverSays::Nothing)) => Some(record),
            None => None,
        };
        // A probe that reached no receiver (put off, or not renderable) told
        // the breaker nothing: another delivery must get to probe, or the
        // webhook would wait for this one for ever.
        if is_probe && record.as_ref().is_none_or(|r| r.attempt.error_class == Some(ErrorClass::Render)) {
            self.give_back_probe(&due.webhook.id);
        }
        // The permits and the lane's room are back before the attempt is
        // recorded: the next request to this receiver need not wait for a
        // commit.
        self.attempt_over(&due);
        if let Err(mpsc::error::SendError(finished)) = self.to_record.send(Finished { due, record }) {
            self.release([&finished.due]);
        }
    }

    /// A webhook's circuit breaker as the API shows it (`closed` when it has
    /// not failed lately).
    pub fn circuit(&self, webhook_id: &str) -> super::Circuit {
        let schedule = self.schedule.lock().unwrap();
        match schedule.breakers.get(webhook_id) {
            Some(breaker) => breaker.view(),
            None => super::Circuit { state: super::CircuitState::Closed, failures_in_a_row: 0, open_until: None },
        }
    }

    /// Whether an attempt already claimed may be sent now: its breaker lets
    /// it through, and its webhook was not found gone since it was claimed.
    pub(super) fn lets_through(&self, due: &DueDelivery, is_probe: bool) -> bool {
        let schedule = self.schedule.lock().unwrap();
        let webhook_id = &due.webhook.id;
        schedule.gone.get(webhook_id).is_none_or(|gone_at| due.webhook.updated_at > *gone_at)
            && schedule.breakers.get(webhook_id).is_none_or(|b| b.lets_through(self.clock.now(), is_probe))
    }

    /// The receiver asked for a pause (`Retry-After` on 429 or 503): its
    /// webhook sends nothing before `until`, its deliveries keeping their
    /// attempts; other webhooks are not held.
    pub(super) fn hold(&self, webhook_id: &str, until: Timestamp) {
        let mut schedule = self.schedule.lock().unwrap();
        schedule.breakers.entry(webhook_id.to_owned()).or_default().hold_until(until);
        self.refresh_room(&schedule, webhook_id, self.clock.now());
        drop(schedule);
        self.wake.notify_one();
    }

    /// Waits for a token of the webhook's rate limit (real time: see `pace`).
    pub(super) async fn pace(&self, webhook_id: &str, limit: crate::model::RateLimit) {
        loop {
            let wait = {
                let mut schedule = self.schedule.lock().unwrap();
                let now = std::time::Instant::now();
                match schedule.buckets.get_mut(webhook_id) {
                    Some(bucket) => bucket.take(limit, now),
                    None => {
                        let mut bucket = pace::Bucket::new(limit, now);
                        let wait = bucket.take(limit, now);
                        schedule.buckets.insert(webhook_id.to_owned(), bucket);
                        wait
                    }
                }
            };
            match wait {
                None => return,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    pub(super) fn give_back_probe(&self, webhook_id: &str) {
        let mut schedule = self.schedule.lock().unwrap();
        let Some(breaker) = schedule.breakers.get_mut(webhook_id) else { return };
        breaker.probe_unused();
        self.refresh_room(&schedule, webhook_id, self.clock.now());
        drop(schedule);
        self.wake.notify_one();
    }

    pub(super) fn feed_breaker(&self, webhook_id: &str, success: bool, is_probe: bool) -> Transition {
        let mut schedule = self.schedule.lock().unwrap();
        if success && !schedule.breakers.contains_key(webhook_id) {
            return Transition::Nothing;
        }
        let breaker = schedule.breakers.entry(webhook_id.to_owned()).or_default();
        let before = breaker.allowance(self.clock.now());
        let transition = breaker.record(success, is_probe, self.clock.now(), &*self.clock);
        let after = breaker.allowance(self.clock.now());
        let changed = after != before;
        if breaker.is_idle() {
            schedule.breakers.remove(webhook_id);
        }
        if changed {
            self.refresh_room(&schedule, webhook_id, self.clock.now());
        }
        drop(schedule);
        if changed {
            // Closed (send the rest) or reopened (a new time to look again).
            self.wake.notify_one();
            self.share_circuit(webhook_id, after);
        }
        transition
    }

    /// Tells the other nodes sharing the store that this webhook's breaker
    /// opened (until when) or closed, so that none of them hammers it.
    fn share_circuit(&self, webhook_id: &str, allowance: Allowance) {
        if !self.store.is_shared() {
            return;
        }
        let open_until = match allowance {
            Allowance::Nothing(Some(until)) => Some(until),
            Allowance::Any => None,
            // A probe is out or due: the shared time stands.
            Allowance::Nothing(None) | Allowance::Probe => return,
        };
        let (store, webhook_id) = (self.store.clone(), webhook_id.to_owned());
        self.tasks.spawn(async move {
            if let Err(err) = store.set_circuit(&webhook_id, open_until).await {
                tracing::warn!(webhook_id, error = %err, "could not share the circuit breaker's state");
            }
        });
    }
}
