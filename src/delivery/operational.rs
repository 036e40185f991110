//! What Herald decides about a whole webhook, and tells its account: a
//! webhook whose receiver is gone (`410`) or whose every attempt has failed
//! for the account's window is disabled; one that got a delivery through
//! after failing a while has recovered; a delivery that used its last
//! attempt is exhausted. The account hears of each through Herald's own
//! events (`herald.*`), ingested like any other, so they are signed,
//! retried and logged for the webhooks whose filter names them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::Engine;
use super::breaker::Transition;
use crate::model::{AttemptRecord, DueDelivery, NewEvent, NextStep, Timestamp, Webhook};

pub const WEBHOOK_DISABLED: &str = "herald.webhook.disabled";
pub const WEBHOOK_RECOVERED: &str = "herald.webhook.recovered";
pub const DELIVERY_EXHAUSTED: &str = "herald.delivery.exhausted";

/// A breaker that closes after failing at least this long (on Herald's
/// clock) is news; a blip of a few seconds is not.
const RECOVERY_WORTH_TELLING: Duration = Duration::from_secs(60);

impl Engine {
    /// Ingests Herald's own events in an account.
    async fn tell(self: &Arc<Self>, account_id: &str, news: Vec<(&'static str, Value)>) {
        let events = news
            .into_iter()
            .map(|(event_type, data)| NewEvent {
                id: None,
                event_type: event_type.to_owned(),
                payload: data.to_string(),
                webhook_id: None,
                timestamp: None,
            })
            .collect();
        if let Err(err) = self.ingest(account_id, events).await {
            tracing::error!(account_id, error = %err, "could not tell the account what herald did");
        }
    }

    /// Disables `webhook` at once, for `reason`: nothing it already holds
    /// is sent (the store's claims fail the deliveries of a disabled
    /// webhook), and the account is told.
    pub(super) async fn disable(self: &Arc<Self>, webhook: &Webhook, reason: &str) {
        let now = self.clock.now();
        self.schedule.lock().unwrap().gone.insert(webhook.id.clone(), now);
        match self.store.disable_webhook(&webhook.account_id, &webhook.id, reason, now).await {
            Ok(true) => {
                tracing::warn!(webhook_id = %webhook.id, reason, "webhook disabled");
                let data = json!({"webhook_id": webhook.id, "url": webhook.url, "reason": reason, "disabled_at": now});
                self.tell(&webhook.account_id, vec![(WEBHOOK_DISABLED, data)]).await;
            }
            Ok(false) => {}
            Err(err) => {
                // Not disabled: its deliveries must flow (and the next 410 try
                // again) rather than be put off for ever.
                self.schedule.lock().unwrap().gone.remove(&webhook.id);
                tracing::error!(webhook_id = %webhook.id, error = %err, "could not disable a webhook");
            }
        }
    }

    /// Acts on what an attempt changed in its webhook's breaker: notes when
    /// failures began (so a window of days survives restarts), disables a
    /// webhook past its account's window, tells of a recovery.
    pub(super) async fn on_transition(self: &Arc<Self>, webhook: &Webhook, transition: Transition, succeeded: bool) {
        let (account_id, webhook_id) = (&webhook.account_id, &webhook.id);
        match transition {
            Transition::Nothing if succeeded && webhook.failing_since.is_some() => {
                // A success with no breaker to close, where failures were
                // noted before a restart: they are over.
                if let Err(err) = self.store.note_recovered(account_id, webhook_id).await {
                    tracing::error!(webhook_id, error = %err, "could not note a recovery");
                }
            }
            Transition::Nothing => {}
            Transition::Opened | Transition::FailedAgain => {
                let since = self.breaker_failing_since(webhook_id).unwrap_or(self.clock.now());
                let since = match transition {
                    Transition::Opened => match self.store.note_failing(account_id, webhook_id, since).await {
                        Ok(noted) => {
                            // Only into a breaker still failing: a success that
                            // closed it meanwhile must not be undone.
                            let mut schedule = self.schedule.lock().unwrap();
                            if let Some(breaker) = schedule.breakers.get_mut(webhook_id)
                                && breaker.failing_since().is_some()
                            {
                                breaker.failing_since_at_least(noted);
                            }
                            noted
                        }
                        Err(err) => {
                            tracing::error!(webhook_id, error = %err, "could not note failures");
                            since
                        }
                    },
                    _ => since,
                };
                self.disable_if_failing_too_long(webhook, since).await;
            }
            Transition::Closed { failing_since } => {
                if let Err(err) = self.store.note_recovered(account_id, webhook_id).await {
                    tracing::error!(webhook_id, error = %err, "could not note a recovery");
                }
                let now = self.clock.now();
                if self.clock.after(failing_since, RECOVERY_WORTH_TELLING) <= now {
                    let data = json!({
                        "webhook_id": webhook_id, "url": webhook.url, "failing_since": failing_since, "recovered_at": now,
                    });
                    self.tell(account_id, vec![(WEBHOOK_RECOVERED, data)]).await;
                }
            }
        }
    }

    /// A webhook the account enabled again starts afresh: no failures noted,
    /// no breaker, not gone, a full bucket.
    pub async fn forget_failures(&self, webhook: &Webhook) -> crate::store::StoreResult<()> {
        {
            let mut schedule = self.schedule.lock().unwrap();
            schedule.breakers.remove(&webhook.id);
            schedule.gone.remove(&webhook.id);
            schedule.buckets.remove(&webhook.id);
        }
        self.store.note_recovered(&webhook.account_id, &webhook.id).await
    }

    fn breaker_failing_since(&self, webhook_id: &str) -> Option<Timestamp> {
        self.schedule.lock().unwrap().breakers.get(webhook_id).and_then(|b| b.failing_since())
    }

    /// Disables a webhook whose attempts have all failed since `since` for
    /// longer than its account allows (measured on the clock, so a time
    /// scale shortens it too).
    async fn disable_if_failing_too_long(self: &Arc<Self>, webhook: &Webhook, since: Timestamp) {
        let window = match self.store.get_account(&webhook.account_id).await {
            Ok(Some(account)) => Duration::from_secs(account.disable_after_seconds),
            Ok(None) => return,
            Err(err) => {
                tracing::error!(webhook_id = %webhook.id, error = %err, "could not read the account's window");
                return;
            }
        };
        if self.clock.after(since, window) <= self.clock.now() {
            let reason = format!(
                "every attempt has failed since {} (the account disables a webhook after {} s of failures)",
                since.to_rfc3339(),
                window.as_secs()
            );
            self.disable(webhook, &reason).await;
        }
    }

    /// Tells each account of its deliveries, recorded in one batch, that
    /// used their last attempt. Deliveries of Herald's own events are left
    /// out, so that a failing receiver of them cannot feed itself.
    pub(super) async fn tell_exhausted(self: &Arc<Self>, recorded: Vec<(&DueDelivery, &AttemptRecord)>) {
        let mut by_account: Vec<(&str, Vec<(&'static str, Value)>)> = Vec::new();
        for (due, record) in recorded {
            if record.next != NextStep::Failed || due.event_type.starts_with(crate::filter::OPERATIONAL_PREFIX) {
                continue;
            }
            let data = json!({
                "delivery_id": record.delivery_id,
                "event_id": due.event_id,
                "event_type": due.event_type,
                "webhook_id": due.webhook.id,
                "attempts": record.number,
                "last_status_code": record.attempt.status_code,
                "last_error": record.attempt.error_message,
            });
            match by_account.iter_mut().find(|(account, _)| *account == due.webhook.account_id) {
                Some((_, news)) => news.push((DELIVERY_EXHAUSTED, data)),
                None => by_account.push((&due.webhook.account_id, vec![(DELIVERY_EXHAUSTED, data)])),
            }
        }
        for (account_id, news) in by_account {
            self.tell(account_id, news).await;
        }
    }
}
