//! The delivery engine: claims due deliveries from the store, webhook by
//! webhook, and sends each through its webhook's lane. One step function
//! (`dispatch_due`) plus a loop around it.
//!
//! The engine keeps a schedule in memory: for each webhook with unfinished
//! deliveries, when the first falls due. Ingest, manual retries and
//! scheduled retries update it; the store corrects it on every claim. So
//! the loop never polls and never scans: it sleeps on the clock until the
//! earliest due time of a webhook with room, or until something changes,
//! and each claim reads one webhook's due rows through an index.
//!
//! Lanes keep one slow receiver from starving the others: each webhook has
//! its own concurrency cap and holds at most `lane_limit` claimed
//! deliveries; it is claimed for again only once it has drained to half.
//! While a lane has room and nothing of its webhook waits in the store,
//! ingest hands fresh deliveries straight to it (`admission`).
//!
//! Finished attempts go to the recorder, which commits them in batches; a
//! delivery stays on its lane's held list (which claims skip) until then.
//! Work enters through `intake` (ingest, test sends, manual retries); tests
//! can drive the step by hand until nothing is due (`drive`).

mod admission;
mod attempt;
mod breaker;
mod cluster;
mod drive;
mod intake;
mod observe;
mod operational;
mod pace;
mod recorder;
mod send;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use admission::Admission;
pub use attempt::{Performed, ReceiverSays, is_success, next_step, perform};
use breaker::{Allowance, Breaker};
pub use breaker::{Circuit, CircuitState};
pub use operational::{DELIVERY_EXHAUSTED, WEBHOOK_DISABLED, WEBHOOK_RECOVERED};

use crate::clock::SharedClock;
use crate::http_client::Outbound;
use crate::model::{AttemptRecord, DueDelivery, NodeId, Timestamp};
use crate::store::{ClaimWant, ClaimedBatch, ClusterView, IdMap, IdSet, Lease, Store};

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
    /// The largest body a `compose` template may render: the largest the
    /// API takes (`--max-body-bytes`), so no template amplifies an event.
    pub max_rendered_body: usize,
    /// What the engine counts for `/metrics` (nothing, by default).
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 1024,
            per_webhook_concurrency: 16,
            lease: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(10),
            max_rendered_body: crate::config::DEFAULT_MAX_BODY_BYTES,
            metrics: Arc::default(),
        }
    }
}

/// The most webhooks one claim serves; more wait for the next round.
const WEBHOOKS_PER_CLAIM: usize = 128;

struct Lane {
    account_id: String,
    permits: Arc<Semaphore>,
    /// Deliveries claimed or handed over and not yet recorded: the node's
    /// work, whose leases it renews; a claim that hands one back while it
    /// is in flight here (its lease ran out) must not start a second attempt.
    held: IdSet,
    /// Of those, attempted and waiting to be recorded.
    attempted: usize,
}

impl Lane {
    /// Held and not yet attempted: what the lane's limit counts.
    fn queued(&self) -> usize {
        self.held.len() - self.attempted
    }
}

#[derive(Debug, Clone, Copy)]
struct Due {
    at: Timestamp,
    /// The earliest time `mark_due` gave since the last claim for this
    /// webhook was planned: news the claim's answer may not include.
    marked: Option<Timestamp>,
}

#[derive(Default)]
struct Schedule {
    /// Webhooks with claimed deliveries in memory.
    lanes: IdMap<Lane>,
    /// For each webhook with unfinished deliveries, when the first is due.
    due: IdMap<Due>,
    /// The sum of every lane's `queued`.
    total_queued: usize,
    /// Circuit breakers of webhooks that have failed lately.
    breakers: IdMap<Breaker>,
    /// Webhooks whose receiver answered `410 Gone`, and when Herald
    /// disabled them: deliveries claimed before then are not sent.
    gone: IdMap<Timestamp>,
    /// Token buckets of rate-limited webhooks.
    buckets: IdMap<pace::Bucket>,
}

impl Schedule {
    /// Notes that `webhook_id` has a delivery due at `at`.
    fn mark(&mut self, webhook_id: &str, at: Timestamp) {
        // A batch names the same webhook many times: look up before
        // allocating a key.
        match self.due.get_mut(webhook_id) {
            Some(entry) => {
                entry.at = entry.at.min(at);
                entry.marked = Some(entry.marked.map_or(at, |m| m.min(at)));
            }
            None => {
                self.due.insert(webhook_id.to_owned(), Due { at, marked: Some(at) });
            }
        }
    }
}

/// What to claim now, and when to look again if nothing else happens.
struct Plan {
    wants: Vec<ClaimWant>,
    next_wake: Option<Timestamp>,
    /// Webhooks whose one delivery is a circuit-breaker probe.
    probes: IdSet,
}

/// What one dispatch step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dispatched {
    /// Deliveries claimed.
    pub claimed: usize,
    /// When to look again at the latest, if anything is scheduled.
    pub next_wake: Option<Timestamp>,
    /// More is due right now than one step took.
    pub more_now: bool,
}

pub struct Engine {
    store: Arc<dyn Store>,
    /// This process, as the store's leases name it.
    node: NodeId,
    /// The nodes sharing the store, as of the last heartbeat: this node's
    /// share of each webhook's concurrency.
    cluster: Mutex<ClusterView>,
    clock: SharedClock,
    outbound: Outbound,
    wake: Notify,
    config: EngineConfig,
    // A std Mutex, not a Tokio one: nothing async happens while it is held.
    // Taken before `admission`'s lock, never after.
    schedule: Mutex<Schedule>,
    /// Room for deliveries handed over by ingest, kept by the schedule.
    admission: Arc<Admission>,
    /// Held while a request is being sent: bounds concurrent sends.
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
    /// Every attempt, once it is recorded: for live views and for tests,
    /// which wait on it instead of sleeping.
    recorded: broadcast::Sender<AttemptRecord>,
    /// Finished attempts on their way to the recorder.
    to_record: mpsc::UnboundedSender<Finished>,
    /// The recorder's end, taken when `run` starts it.
    recorder_inbox: Mutex<Option<mpsc::UnboundedReceiver<Finished>>>,
    /// The recorder's last commit failed: no new attempt starts until it
    /// succeeds, so the attempts waiting to be recorded stay bounded.
    recording_stalled: AtomicBool,
}

/// An attempt made (or put off by an open circuit breaker), waiting to be
/// recorded.
struct Finished {
    due: DueDelivery,
    /// `None`: not sent; the delivery goes back to waiting, its attempts intact.
    record: Option<AttemptRecord>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, clock: SharedClock, outbound: Outbound, config: EngineConfig) -> Arc<Engine> {
        let (to_record, recorder_inbox) = mpsc::unbounded_channel();
        Arc::new(Engine {
            node: NodeId::generate(),
            cluster: Mutex::new(ClusterView::ALONE),
            to_record,
            recorder_inbox: Mutex::new(Some(recorder_inbox)),
            slots: Arc::new(Semaphore::new(config.max_in_flight)),
            store,
            clock,
            outbound,
            wake: Notify::new(),
            config,
            schedule: Mutex::new(Schedule::default()),
            admission: Arc::default(),
            tasks: TaskTracker::new(),
            recorded: broadcast::channel(1024).0,
            recording_stalled: AtomicBool::new(false),
        })
    }

    /// This process, as the store's leases name it.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The last commit of finished attempts failed and is being retried.
    pub fn recording_stalled(&self) -> bool {
        self.recording_stalled.load(Ordering::Acquire)
    }

    /// A feed of attempts as they are recorded.
    pub fn subscribe(&self) -> broadcast::Receiver<AttemptRecord> {
        self.recorded.subscribe()
    }

    /// Loads the schedule from the store (at start).
    pub async fn load_schedule(&self) -> anyhow::Result<usize> {
        let due = self.store.due_webhooks(self.clock.now()).await?;
        let n = due.len();
        let mut schedule = self.schedule.lock().unwrap();
        for (webhook_id, at) in due {
            schedule.due.insert(webhook_id, Due { at, marked: None });
        }
        Ok(n)
    }

    /// Tells the engine that `webhook_id` has a delivery due at `at` (new
    /// events, a manual retry, a scheduled retry).
    pub fn mark_due<'a>(&self, webhook_ids: impl IntoIterator<Item = &'a str>, at: Timestamp) {
        let due_now = at <= self.clock.now();
        let mut schedule = self.schedule.lock().unwrap();
        let mut closed: Option<&str> = None;
        for webhook_id in webhook_ids {
            if due_now && closed != Some(webhook_id) {
                // Older deliveries wait in the store: fresh ones queue behind
                // them. (Once per run of the same webhook.)
                self.admission.close(webhook_id);
                closed = Some(webhook_id);
            }
            schedule.mark(webhook_id, at);
        }
        drop(schedule);
        // Always: the dispatcher may be mid-claim with an older view.
        self.wake.notify_one();
    }

    /// This node's share of a webhook's concurrent requests: the cap holds
    /// across every node sharing the store.
    fn concurrency(&self) -> usize {
        self.cluster.lock().unwrap().share(self.config.per_webhook_concurrency)
    }

    /// Another node (or a sweep) says `webhook_id` has work due at `at`
    /// that no node holds: claimed like any other, and without closing
    /// the webhook's room (this node's own fresh deliveries are not behind
    /// it in any order that a cluster keeps).
    fn note_due(&self, webhook_id: &str, at: Timestamp) {
        self.schedule.lock().unwrap().mark(webhook_id, at);
        self.wake.notify_one();
    }

    /// A lane holds at most this many claimed deliveries.
    fn lane_limit(&self) -> usize {
        self.concurrency() * 8
    }

    /// A lease on what this node claims or is handed, from `now`.
    fn lease(&self, now: Timestamp) -> Lease {
        Lease { node: self.node.clone(), until: Timestamp(now.0.saturating_add(self.config.lease.as_millis() as i64)) }
    }

    /// Claimed deliveries held in memory across lanes before only idle
    /// webhooks are claimed for: bounds memory however large the backlog.
    fn queue_limit(&self) -> usize {
        self.config.max_in_flight * 2
    }

    /// Which webhooks to claim for now and how many each; and when to look
    /// again if nothing else happens. With `claiming`, the wanted webhooks'
    /// marks are cleared (what was committed before now, the claim will
    /// see) and their probes are taken.
    fn plan(&self, now: Timestamp, claiming: bool) -> Plan {
        let mut schedule = self.schedule.lock().unwrap();
        let full = schedule.total_queued >= self.queue_limit();
        // What all lanes together may still take in, so that memory stays
        // bounded however many webhooks have a backlog.
        let mut budget = self.queue_limit().saturating_sub(schedule.total_queued);
        let (limit, low_water) = (self.lane_limit(), self.lane_limit() / 2);
        let mut plan = Plan { wants: Vec::new(), next_wake: None, probes: IdSet::default() };
        let wake_at = |plan: &mut Plan, at: Timestamp| plan.next_wake = Some(plan.next_wake.map_or(at, |w| w.min(at)));
        for (webhook_id, Due { at, .. }) in &schedule.due {
            let at = *at;
            let queued = schedule.lanes.get(webhook_id).map_or(0, Lane::queued);
            // A lane above half is left alone; draining to half wakes us.
            if queued > low_water || (full && queued > 0) {
                continue;
            }
            let allowance = schedule.breakers.get(webhook_id).map_or(Allowance::Any, |b| b.allowance(now));
            let room = match allowance {
                Allowance::Nothing(until) => {
                    if let Some(until) = until {
                        wake_at(&mut plan, until.max(at));
                    }
                    continue;
                }
                Allowance::Probe => 1,
                Allowance::Any => {
                    // An idle webhook gets enough for its concurrency even
                    // when the budget is spent, so that none starves.
                    let fair = if queued == 0 { self.concurrency().min(limit) } else { 0 };
                    (limit - queued).min(budget.max(fair))
                }
            };
            if at > now {
                wake_at(&mut plan, at);
                continue;
            }
            if room == 0 {
                // The budget is spent; a lane that drains wakes us.
                continue;
            }
            if claiming {
                // Its time has come: fresh deliveries queue behind it.
                self.admission.close(webhook_id);
            }
            if plan.wants.len() >= WEBHOOKS_PER_CLAIM {
                wake_at(&mut plan, now);
            } else {
                if allowance == Allowance::Probe {
                    plan.probes.insert(webhook_id.clone());
                }
                budget = budget.saturating_sub(room);
                plan.wants.push(ClaimWant { webhook_id: webhook_id.clone(), limit: room });
            }
        }
        if claiming {
            for ClaimWant { webhook_id, .. } in &plan.wants {
                if let Some(due) = schedule.due.get_mut(webhook_id) {
                    due.marked = None;
                }
            }
            for webhook_id in &plan.probes {
                schedule.breakers.entry(webhook_id.clone()).or_default().probe_claimed();
            }
        }
        plan
    }

    /// Claims what is due now and starts sending it.
    pub async fn dispatch_due(self: &Arc<Self>) -> anyhow::Result<Dispatched> {
        if self.recording_stalled.load(Ordering::Acquire) {
            // The recorder wakes the loop once it can commit again.
            return Ok(Dispatched { claimed: 0, next_wake: None, more_now: false });
        }
        let now = self.clock.now();
        let Plan { wants, next_wake, probes } = self.plan(now, true);
        if wants.is_empty() {
            return Ok(Dispatched { claimed: 0, next_wake, more_now: false });
        }
        let batches = match self.store.claim_due(now, &self.lease(now), wants).await {
            Ok(batches) => batches,
            Err(err) => {
                // The probes planned were never sent: without this, their
                // breakers would wait for them forever.
                let mut schedule = self.schedule.lock().unwrap();
                for webhook_id in &probes {
                    if let Some(breaker) = schedule.breakers.get_mut(webhook_id) {
                        breaker.probe_unused();
                    }
                }
                return Err(err.into());
            }
        };
        let mut claimed = 0;
        let mut more_now = next_wake.is_some_and(|w| w <= now);
        for batch in batches {
            let mut entered = Vec::with_capacity(batch.deliveries.len());
            {
                let mut schedule = self.schedule.lock().unwrap();
                let marked = schedule.due.get(&batch.webhook_id).and_then(|d| d.marked);
                // The store's answer is the truth as of the claim; marks that
                // came in since may be newer.
                let at = match (marked, batch.next_due) {
                    (Some(m), Some(at)) => Some(m.min(at)),
                    (m, at) => m.or(at),
                };
                match at {
                    Some(at) => {
                        schedule.due.insert(batch.webhook_id.clone(), Due { at, marked });
                    }
                    None => {
                        schedule.due.remove(&batch.webhook_id);
                    }
                }
                for due in &batch.deliveries {
                    if let Some(lane) = self.enter_lane(&mut schedule, due) {
                        entered.push((lane, due.delivery_id.clone()));
                    }
                }
                self.adopt_circuit(&mut schedule, &batch, now);
                self.refresh_room(&schedule, &batch.webhook_id, now);
            }
            if batch.next_due.is_some_and(|at| at <= now) {
                more_now = true;
            }
            let is_probe = probes.contains(&batch.webhook_id);
            if is_probe && batch.deliveries.is_empty() {
                self.schedule.lock().unwrap().breakers.entry(batch.webhook_id.clone()).or_default().probe_unused();
            }
            let mut entered = entered.into_iter().peekable();
            for due in batch.deliveries {
                // Only those that entered their lane (not already in flight).
                let Some(lane) = entered.next_if(|(_, id)| *id == due.delivery_id).map(|(lane, _)| lane) else {
                    continue;
                };
                claimed += 1;
                let engine = self.clone();
                self.tasks.spawn(async move { engine.deliver(due, lane, is_probe).await });
            }
        }
        let plan = self.plan(now, false);
        Ok(Dispatched { claimed, next_wake: plan.next_wake, more_now: more_now || !plan.wants.is_empty() })
    }

    /// Deliveries ingest handed over (already leased): into their lanes.
    pub fn hand_over(self: &Arc<Self>, handed: Vec<DueDelivery>) {
        if handed.is_empty() {
            return;
        }
        let now = self.clock.now();
        let mut lanes = Vec::with_capacity(handed.len());
        {
            let mut schedule = self.schedule.lock().unwrap();
            // A batch names its webhooks in runs: account for each run at once.
            for run in handed.chunk_by(|a, b| a.webhook.id == b.webhook.id) {
                let webhook_id = &run[0].webhook.id;
                self.admission.arrived(webhook_id, run.len());
                lanes.extend(run.iter().map(|due| self.enter_lane(&mut schedule, due)));
                self.refresh_room(&schedule, webhook_id, now);
            }
        }
        for (due, lane) in handed.into_iter().zip(lanes) {
            let Some(lane) = lane else { continue };
            let engine = self.clone();
            self.tasks.spawn(async move { engine.deliver(due, lane, false).await });
        }
    }

    /// Counts a delivery into its webhook's lane; `None` if it is already
    /// in flight here.
    fn enter_lane(&self, schedule: &mut Schedule, due: &DueDelivery) -> Option<Arc<Semaphore>> {
        // Look up before allocating a key: the lane usually exists.
        if !schedule.lanes.contains_key(&due.webhook.id) {
            let lane = Lane {
                account_id: due.webhook.account_id.clone(),
                permits: Arc::new(Semaphore::new(self.concurrency())),
                held: IdSet::default(),
                attempted: 0,
            };
            schedule.lanes.insert(due.webhook.id.clone(), lane);
        }
        let lane = schedule.lanes.get_mut(&due.webhook.id).expect("inserted above");
        if !lane.held.insert(due.delivery_id.clone()) {
            return None;
        }
        let permits = lane.permits.clone();
        schedule.total_queued += 1;
        Some(permits)
    }

    /// Opens or closes a webhook's room for handed-over deliveries: open
    /// while none of its deliveries in the store is past due and its
    /// circuit breaker is closed.
    fn refresh_room(&self, schedule: &Schedule, webhook_id: &str, now: Timestamp) {
        let waiting = schedule.due.get(webhook_id).is_some_and(|d| d.at <= now);
        let breaker_closed = schedule.breakers.get(webhook_id).is_none_or(|b| b.allowance(now) == Allowance::Any);
        let lane = schedule.lanes.get(webhook_id);
        let queued = lane.map_or(0, Lane::queued);
        let account_id = lane.map(|lane| lane.account_id.as_str());
        self.admission.set(webhook_id, account_id, !waiting && breaker_closed, self.lane_limit(), queued);
        self.admission.set_total(self.queue_limit(), schedule.total_queued);
    }

    /// Another node opened this webhook's circuit breaker: this node leaves
    /// the receiver alone as long.
    fn adopt_circuit(&self, schedule: &mut Schedule, batch: &ClaimedBatch, now: Timestamp) {
        if let Some(until) = batch.circuit_open_until.filter(|until| *until > now) {
            schedule.breakers.entry(batch.webhook_id.clone()).or_default().hold_until(until);
        }
    }

    /// An attempt is over (or put off): the lane has room for another,
    /// though the delivery stays held until it is recorded.
    fn attempt_over(&self, due: &DueDelivery) {
        let mut schedule = self.schedule.lock().unwrap();
        let Some(lane) = schedule.lanes.get_mut(&due.webhook.id) else { return };
        if !lane.held.contains(&due.delivery_id) {
            return;
        }
        lane.attempted += 1;
        let reached_low_water = lane.queued() == self.lane_limit() / 2;
        let was_full = schedule.total_queued >= self.queue_limit();
        schedule.total_queued -= 1;
        self.refresh_room(&schedule, &due.webhook.id, self.clock.now());
        drop(schedule);
        if reached_low_water || was_full {
            // This webhook (or the engine) has room again: claim for it.
            self.wake.notify_one();
        }
    }

    /// Deliveries whose attempts are recorded: claims may see them again.
    /// (One lock for a whole batch.)
    fn release<'a>(&self, dues: impl IntoIterator<Item = &'a DueDelivery>) {
        let mut schedule = self.schedule.lock().unwrap();
        for due in dues {
            let Some(lane) = schedule.lanes.get_mut(&due.webhook.id) else { continue };
            if lane.held.remove(&due.delivery_id) {
                lane.attempted -= 1;
            }
            if lane.held.is_empty() {
                schedule.lanes.remove(&due.webhook.id);
            }
        }
    }

    /// Runs until `shutdown`, then waits up to the grace period for
    /// attempts in flight.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let stop_recorder = CancellationToken::new();
        let recorder = self
            .recorder_inbox
            .lock()
            .unwrap()
            .take()
            .map(|inbox| tokio::spawn(self.clone().record_finished(inbox, stop_recorder.clone())));
        if self.store.is_shared() {
            self.tasks.spawn(self.clone().take_part(shutdown.clone()));
        }
        while !shutdown.is_cancelled() {
            let next_wake = match self.dispatch_due().await {
                Ok(step) if step.more_now => continue,
                Ok(step) => step.next_wake,
                Err(err) => {
                    tracing::error!(error = %err, "claiming due deliveries failed");
                    // A real second, unscaled: the store's trouble is not on
                    // the retry schedule's time.
                    Some(Timestamp(self.clock.now().0.saturating_add(1000)))
                }
            };
            let sleep = async {
                match next_wake {
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
        let finish = async {
            self.tasks.wait().await;
            stop_recorder.cancel();
            if let Some(recorder) = recorder {
                let _ = recorder.await;
            }
        };
        if tokio::time::timeout(self.config.shutdown_grace, finish).await.is_err() {
            tracing::warn!("shutdown: attempts still in flight were abandoned; they run again at the next start");
        }
        // What this node still holds, any node may take at once.
        if let Err(err) = self.store.release_leases(&self.node, self.clock.now()).await {
            tracing::warn!(error = %err, "shutdown: could not hand back leases; they pass to other nodes when they run out");
        }
    }
}
