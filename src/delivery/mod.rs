//! The delivery engine: claims due deliveries from the store and sends
//! each through its webhook's lane. One step function (`dispatch_due`) plus
//! a loop around it. The loop never polls: it sleeps on the clock until the
//! next delivery falls due, or until ingest, a manual retry or a lane
//! freeing up wakes it.
//!
//! Lanes keep one slow receiver from starving the others: each webhook has
//! its own concurrency cap, and a webhook with a full queue is left out of
//! claims until its queue drains.

mod attempt;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use attempt::{is_success, next_step, perform};

use crate::clock::SharedClock;
use crate::http_client::Outbound;
use crate::model::{AttemptRecord, DueDelivery, NextStep, Timestamp};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Deliveries being sent or queued in lanes, across all webhooks.
    pub max_in_flight: usize,
    /// Concurrent requests to one webhook.
    pub per_webhook_concurrency: usize,
    /// How long a claim holds a delivery before another node may take it.
    pub lease: Duration,
    /// How long shutdown waits for attempts in flight.
    pub shutdown_grace: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 1024,
            per_webhook_concurrency: 16,
            lease: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The most deliveries one claim takes.
const CLAIM_BATCH: usize = 256;

struct Lane {
    permits: Arc<Semaphore>,
    /// Claimed and not yet finished.
    queued: usize,
}

pub struct Engine {
    store: Arc<dyn Store>,
    clock: SharedClock,
    outbound: Outbound,
    wake: Arc<Notify>,
    config: EngineConfig,
    // std Mutexes, not Tokio ones: nothing async happens while they are held.
    lanes: Mutex<HashMap<String, Lane>>,
    in_flight_ids: Mutex<HashSet<String>>,
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
    /// Every attempt, once it is recorded: for live views and for tests,
    /// which wait on it instead of sleeping.
    recorded: broadcast::Sender<AttemptRecord>,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        clock: SharedClock,
        outbound: Outbound,
        wake: Arc<Notify>,
        config: EngineConfig,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            slots: Arc::new(Semaphore::new(config.max_in_flight)),
            store,
            clock,
            outbound,
            wake,
            config,
            lanes: Mutex::new(HashMap::new()),
            in_flight_ids: Mutex::new(HashSet::new()),
            tasks: TaskTracker::new(),
            recorded: broadcast::channel(1024).0,
        })
    }

    /// A feed of attempts as they are recorded.
    pub fn subscribe(&self) -> broadcast::Receiver<AttemptRecord> {
        self.recorded.subscribe()
    }

    /// A webhook's queue is full at this many claimed deliveries.
    fn lane_limit(&self) -> usize {
        self.config.per_webhook_concurrency * 4
    }

    fn saturated_lanes(&self) -> Vec<String> {
        let limit = self.lane_limit();
        self.lanes.lock().unwrap().iter().filter(|(_, lane)| lane.queued >= limit).map(|(id, _)| id.clone()).collect()
    }

    /// Claims what is due now and starts sending it. Returns how many
    /// deliveries the claim returned.
    pub async fn dispatch_due(self: &Arc<Self>) -> anyhow::Result<usize> {
        let limit = self.slots.available_permits().min(CLAIM_BATCH);
        if limit == 0 {
            return Ok(0);
        }
        let now = self.clock.now();
        let lease_until = Timestamp(now.0.saturating_add(self.config.lease.as_millis() as i64));
        let batch = self.store.claim_due(now, lease_until, limit, self.saturated_lanes()).await?;
        let n_claimed = batch.len();
        for due in batch {
            // A lease that ran out while the attempt is still under way here
            // is claimed again; the attempt already running wins.
            if !self.in_flight_ids.lock().unwrap().insert(due.delivery_id.clone()) {
                continue;
            }
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                self.in_flight_ids.lock().unwrap().remove(&due.delivery_id);
                break;
            };
            let lane = self.enter_lane(&due.webhook.id);
            let engine = self.clone();
            self.tasks.spawn(async move { engine.deliver(due, slot, lane).await });
        }
        Ok(n_claimed)
    }

    fn enter_lane(&self, webhook_id: &str) -> Arc<Semaphore> {
        let mut lanes = self.lanes.lock().unwrap();
        let lane = lanes.entry(webhook_id.to_owned()).or_insert_with(|| Lane {
            permits: Arc::new(Semaphore::new(self.config.per_webhook_concurrency)),
            queued: 0,
        });
        lane.queued += 1;
        lane.permits.clone()
    }

    fn leave_lane(&self, webhook_id: &str) {
        let mut lanes = self.lanes.lock().unwrap();
        let Some(lane) = lanes.get_mut(webhook_id) else { return };
        let was_saturated = lane.queued >= self.lane_limit();
        lane.queued -= 1;
        if lane.queued == 0 {
            lanes.remove(webhook_id);
        }
        if was_saturated {
            // Its due deliveries were left out of claims; look again.
            self.wake.notify_one();
        }
    }

    async fn deliver(self: Arc<Self>, due: DueDelivery, _slot: OwnedSemaphorePermit, lane: Arc<Semaphore>) {
        if let Ok(_turn) = lane.acquire_owned().await {
            let sample = rand::rng().random_range(-1.0..=1.0);
            let record = perform(&self.outbound, &*self.clock, &due, sample).await;
            match self.store.record_attempt(record.clone(), self.clock.now()).await {
                Ok(()) => {
                    if matches!(record.next, NextStep::RetryAt(_)) {
                        // The dispatcher may be asleep until a later time
                        // (this delivery's lease): have it look again.
                        self.wake.notify_one();
                    }
                    let _ = self.recorded.send(record);
                }
                // The lease stays; the delivery is attempted again when it
                // runs out or at the next start.
                Err(err) => tracing::error!(delivery = %due.delivery_id, error = %err, "could not record an attempt"),
            }
        }
        self.in_flight_ids.lock().unwrap().remove(&due.delivery_id);
        self.leave_lane(&due.webhook.id);
    }

    /// Runs until `shutdown`, then waits up to the grace period for
    /// attempts in flight.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            // Wait for room before claiming: claims never exceed the slots.
            tokio::select! {
                permit = self.slots.clone().acquire_owned() => drop(permit),
                _ = shutdown.cancelled() => break,
            }
            let full_batch = match self.dispatch_due().await {
                Ok(n) => n == CLAIM_BATCH,
                Err(err) => {
                    tracing::error!(error = %err, "claiming due deliveries failed");
                    let retry_at = self.clock.after(self.clock.now(), Duration::from_secs(1));
                    tokio::select! {
                        _ = self.clock.sleep_until(retry_at) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    continue;
                }
            };
            if full_batch {
                continue;
            }
            let next_due = match self.store.next_due_at(self.saturated_lanes()).await {
                Ok(next) => next,
                Err(err) => {
                    tracing::error!(error = %err, "reading the next due time failed");
                    Some(self.clock.after(self.clock.now(), Duration::from_secs(1)))
                }
            };
            let sleep = async {
                match next_due {
                    Some(at) => self.clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => {}
                _ = self.wake.notified() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        self.tasks.close();
        if tokio::time::timeout(self.config.shutdown_grace, self.tasks.wait()).await.is_err() {
            tracing::warn!("shutdown: attempts still in flight were abandoned; they run again at the next start");
        }
    }
}
