//! Taking part in a cluster: what an engine does beside sending when its
//! store is shared by several nodes (PostgreSQL). It hears of work the
//! other nodes made due (the store's notices), renews the leases of what it
//! still holds, keeps its heartbeat (and with it this node's share of each
//! webhook's concurrency), and now and then sweeps the store for work no
//! notice told of: a notice missed while disconnected, or the deliveries of
//! a node that died, whose leases ran out. A store one node owns needs none
//! of it: its engine hears of all work in process.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::model::{DeliveryKey, Timestamp};

/// How often a node renews its heartbeat; a node silent for three of these
/// counts as gone, and its share of the limits passes to the others.
pub const HEARTBEAT: Duration = Duration::from_secs(2);

impl Engine {
    /// Runs the cluster's chores until `shutdown` (only for a shared store).
    pub(super) async fn take_part(self: Arc<Self>, shutdown: CancellationToken) {
        if let Some(mut notices) = self.store.due_notices() {
            let engine = self.clone();
            let stop = shutdown.clone();
            self.tasks.spawn(async move {
                loop {
                    tokio::select! {
                        notice = notices.recv() => match notice {
                            Some(notice) => engine.note_due(&notice.webhook_id, notice.at),
                            None => return,
                        },
                        _ = stop.cancelled() => return,
                    }
                }
            });
        }
        let lease_ms = self.config.lease.as_millis() as i64;
        // Renew well before a lease runs out; sweep for what no notice told
        // of about twice per lease, so a dead node's work waits at most
        // one and a half leases.
        let (renew_every, sweep_every) = ((lease_ms / 3).max(1), (lease_ms / 2).max(1));
        let start = self.clock.now();
        let (mut next_renew, mut next_sweep) = (Timestamp(start.0 + renew_every), Timestamp(start.0 + sweep_every));
        loop {
            let now = self.clock.now();
            self.beat(now).await;
            if now >= next_renew {
                self.renew(now).await;
                next_renew = Timestamp(now.0 + renew_every);
            }
            if now >= next_sweep {
                self.sweep(now).await;
                next_sweep = Timestamp(now.0 + sweep_every);
            }
            let next_beat = Timestamp(now.0 + HEARTBEAT.as_millis() as i64);
            tokio::select! {
                _ = self.clock.sleep_until(next_beat.min(next_renew).min(next_sweep)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn beat(&self, now: Timestamp) {
        let until = Timestamp(now.0 + 3 * HEARTBEAT.as_millis() as i64);
        match self.store.heartbeat(&self.node, now, until).await {
            Ok(view) => {
                let changed = std::mem::replace(&mut *self.cluster.lock().unwrap(), view) != view;
                if changed {
                    tracing::info!(nodes = view.nodes, rank = view.rank, "cluster changed");
                    // New shares: lanes made from now on use them.
                    self.wake.notify_one();
                }
            }
            Err(err) => tracing::warn!(error = %err, "heartbeat failed"),
        }
    }

    /// Extends the lease of every delivery this node holds.
    async fn renew(&self, now: Timestamp) {
        let held: Vec<DeliveryKey> = {
            let schedule = self.schedule.lock().unwrap();
            schedule
                .lanes
                .values()
                .flat_map(|lane| {
                    lane.held
                        .iter()
                        .map(|id| DeliveryKey { account_id: lane.account_id.clone(), delivery_id: id.clone() })
                })
                .collect()
        };
        if held.is_empty() {
            return;
        }
        match self.store.renew_leases(&self.lease(now), held).await {
            Ok(lost) if !lost.is_empty() => {
                tracing::warn!(n = lost.len(), "leases lost: another node has these deliveries now");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "renewing leases failed"),
        }
    }

    /// Learns of every webhook with due deliveries no node holds.
    async fn sweep(&self, now: Timestamp) {
        match self.store.due_webhooks(now).await {
            Ok(due) => {
                for (webhook_id, at) in due {
                    self.note_due(&webhook_id, at);
                }
            }
            Err(err) => tracing::warn!(error = %err, "sweeping for due deliveries failed"),
        }
    }
}
