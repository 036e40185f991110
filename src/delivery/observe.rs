//! What the engine shows of itself to `/metrics`: its counters, and what
//! waits in its schedule, read at each scrape (kept out of `mod.rs`, which
//! is about the schedule's work, not its reporting).

use std::sync::Arc;

use super::Engine;
use crate::metrics::{Metrics, Waiting};

impl Engine {
    /// What the engine counts for `/metrics`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.config.metrics
    }

    /// What waits in the schedule now: webhooks whose first unfinished
    /// delivery is due now or later, and deliveries claimed into lanes.
    pub fn waiting(&self) -> Waiting {
        let now = self.clock.now();
        let schedule = self.schedule.lock().unwrap();
        let due_now = schedule.due.values().filter(|due| due.at <= now).count();
        Waiting {
            webhooks_due_now: due_now,
            webhooks_due_later: schedule.due.len() - due_now,
            deliveries_queued: schedule.total_queued,
        }
    }
}
