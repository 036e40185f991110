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
use tokio::sync::{Notify, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use attempt::{is_success, next_step, perform};

use crate::clock::SharedClock;
use crate::http_client::Outbound;
use crate::model::{AttemptRecord, DueDelivery, NextStep, Timestamp};
use crate::store::Store;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Requests being sent at once, across all webhooks.
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

#[derive(Default)]
struct Lanes {
    by_webhook: HashMap<String, Lane>,
    /// The sum of every lane's `queued`.
    total_queued: usize,
}

/// What one dispatch step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatched {
    /// Deliveries the claim returned.
    pub n: usize,
    /// Deliveries it asked for: `n == limit` means more may be due.
    pub limit: usize,
    /// Webhooks the claim left out (their lanes were full).
    pub excluded: Vec<String>,
}

pub struct Engine {
    store: Arc<dyn Store>,
    clock: SharedClock,
    outbound: Outbound,
    wake: Arc<Notify>,
    config: EngineConfig,
    // std Mutexes, not Tokio ones: nothing async happens while they are held.
    lanes: Mutex<Lanes>,
    in_flight_ids: Mutex<HashSet<String>>,
    /// Held while a request is being sent: bounds concurrent sends.
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
            lanes: Mutex::new(Lanes::default()),
            in_flight_ids: Mutex::new(HashSet::new()),
            tasks: TaskTracker::new(),
            recorded: broadcast::channel(1024).0,
        })
    }

    /// A feed of attempts as they are recorded.
    pub fn subscribe(&self) -> broadcast::Receiver<AttemptRecord> {
        self.recorded.subscribe()
    }

    /// A webhook's lane is full at this many claimed deliveries; it is then
    /// left out of claims until it drains.
    fn lane_limit(&self) -> usize {
        self.config.per_webhook_concurrency * 4
    }

    /// Claimed deliveries held in memory at most (a claim may overshoot by
    /// one batch): bounds memory however large the backlog.
    fn queue_limit(&self) -> usize {
        self.config.max_in_flight * 2
    }

    /// How many deliveries to claim and which webhooks to leave out. A
    /// webhook whose lane is full is left out. When the engine as a whole
    /// holds all it may, only webhooks with nothing queued are claimed for,
    /// a few at a time, so a backlogged receiver never starves an idle one.
    fn claim_plan(&self) -> (usize, Vec<String>) {
        let lanes = self.lanes.lock().unwrap();
        let room = self.queue_limit().saturating_sub(lanes.total_queued);
        if room > 0 {
            let limit = self.lane_limit();
            let saturated = lanes.by_webhook.iter().filter(|(_, l)| l.queued >= limit).map(|(id, _)| id.clone());
            (room.min(CLAIM_BATCH), saturated.collect())
        } else {
            (self.config.per_webhook_concurrency.min(CLAIM_BATCH), lanes.by_webhook.keys().cloned().collect())
        }
    }

    /// Claims what is due now and starts sending it.
    pub async fn dispatch_due(self: &Arc<Self>) -> anyhow::Result<Dispatched> {
        let (limit, excluded) = self.claim_plan();
        let now = self.clock.now();
        let lease_until = Timestamp(now.0.saturating_add(self.config.lease.as_millis() as i64));
        let batch = self.store.claim_due(now, lease_until, limit, excluded.clone()).await?;
        let n = batch.len();
        for due in batch {
            // A lease that ran out while the attempt is still under way here
            // is claimed again; the attempt already running wins.
            if !self.in_flight_ids.lock().unwrap().insert(due.delivery_id.clone()) {
                continue;
            }
            let lane = self.enter_lane(&due.webhook.id);
            let engine = self.clone();
            self.tasks.spawn(async move { engine.deliver(due, lane).await });
        }
        Ok(Dispatched { n, limit, excluded })
    }

    fn enter_lane(&self, webhook_id: &str) -> Arc<Semaphore> {
        let mut lanes = self.lanes.lock().unwrap();
        lanes.total_queued += 1;
        let lane = lanes.by_webhook.entry(webhook_id.to_owned()).or_insert_with(|| Lane {
            permits: Arc::new(Semaphore::new(self.config.per_webhook_concurrency)),
            queued: 0,
        });
        lane.queued += 1;
        lane.permits.clone()
    }

    fn leave_lane(&self, webhook_id: &str) {
        let mut lanes = self.lanes.lock().unwrap();
        let was_full = lanes.total_queued >= self.queue_limit();
        lanes.total_queued -= 1;
        let Some(lane) = lanes.by_webhook.get_mut(webhook_id) else {
            return;
        };
        let was_saturated = lane.queued >= self.lane_limit();
        lane.queued -= 1;
        if lane.queued == 0 {
            lanes.by_webhook.remove(webhook_id);
        }
        if was_saturated || was_full {
            // Due deliveries were left unclaimed for want of room; look again.
            self.wake.notify_one();
        }
    }

    async fn deliver(self: Arc<Self>, due: DueDelivery, lane: Arc<Semaphore>) {
        // The lane's turn first, then a global slot: a webhook waiting on its
        // own cap holds no slot another webhook could use.
        if let Ok(_turn) = lane.acquire_owned().await
            && let Ok(_slot) = self.slots.acquire().await
        {
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
                Err(err) => {
                    tracing::error!(delivery = %due.delivery_id, error = %err, "could not record an attempt")
                }
            }
        }
        self.in_flight_ids.lock().unwrap().remove(&due.delivery_id);
        self.leave_lane(&due.webhook.id);
    }

    /// Runs until `shutdown`, then waits up to the grace period for
    /// attempts in flight.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let next_due = match self.dispatch_due().await {
                Ok(step) if step.n == step.limit => continue,
                Ok(step) => self.next_due(step.excluded).await,
                Err(err) => {
                    tracing::error!(error = %err, "claiming due deliveries failed");
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

    /// When to look again: the next due time of a webhook with room.
    async fn next_due(&self, excluded: Vec<String>) -> Option<Timestamp> {
        match self.store.next_due_at(excluded).await {
            Ok(next) => next,
            Err(err) => {
                tracing::error!(error = %err, "reading the next due time failed");
                Some(self.clock.after(self.clock.now(), Duration::from_secs(1)))
            }
        }
    }
}
