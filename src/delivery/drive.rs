//! Driving the engine by hand: its step (claim, send, record) run again
//! and again until nothing is due now. Tests call it instead of letting
//! `run` loop, and then assert what was sent and, as surely, what was not:
//! when it returns, every attempt it started has finished and is recorded.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::Engine;

impl Engine {
    /// Claims and sends everything due now (and whatever ingest handed
    /// over), records every attempt, and repeats until a round claims and
    /// records nothing. Returns the attempts recorded. Retries scheduled
    /// later wait for a later call, once the clock has moved. `run` must
    /// not be running: this takes the recorder's place.
    pub async fn run_until_idle(self: &Arc<Self>) -> anyhow::Result<usize> {
        let mut inbox = self
            .recorder_inbox
            .lock()
            .unwrap()
            .take()
            .context("the engine is running: run_until_idle drives an engine that `run` does not")?;
        let never = CancellationToken::new();
        let mut recorded = 0;
        let outcome = loop {
            let step = match self.dispatch_due().await {
                Ok(step) => step,
                Err(err) => break Err(err),
            };
            // Every attempt started, by this claim or by an earlier hand-over,
            // runs to its end.
            self.tasks.close();
            self.tasks.wait().await;
            self.tasks.reopen();
            let mut batch = Vec::new();
            while let Ok(finished) = inbox.try_recv() {
                batch.push(finished);
            }
            if batch.is_empty() && step.claimed == 0 {
                break Ok(recorded);
            }
            recorded += batch.iter().filter(|finished| finished.record.is_some()).count();
            self.record_batch(batch, &never).await;
        };
        *self.recorder_inbox.lock().unwrap() = Some(inbox);
        outcome
    }
}
