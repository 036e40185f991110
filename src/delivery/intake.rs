//! Work entering the engine: events (ingested through the API, test sends)
//! and manual retries. One function each, which every surface calls (the
//! API now, the dashboard and tools next): a handler only parses the
//! request and answers, and "commit, then tell the engine" is written once.

use std::sync::Arc;

use serde_json::json;

use super::Engine;
use crate::catalogue::TEST_EVENT_TYPE;
use crate::model::{Delivery, IngestOutcome, NewEvent, Webhook};
use crate::store::{StoreError, StoreResult};

impl Engine {
    /// Stores events and their deliveries in one durable commit, hands
    /// those their lanes have room for straight to the engine and schedules
    /// the rest. It runs as a task of its own: once the commit is made, the
    /// deliveries reach the engine even if the caller has hung up meanwhile.
    pub async fn ingest(self: &Arc<Self>, account_id: &str, events: Vec<NewEvent>) -> StoreResult<Vec<IngestOutcome>> {
        let (engine, account_id) = (self.clone(), account_id.to_owned());
        let ingest = tokio::spawn(async move {
            let now = engine.clock.now();
            // One ingest is all the account's or all Herald's own (`herald.*`).
            let own = events.first().is_some_and(|e| e.event_type.starts_with(crate::filter::OPERATIONAL_PREFIX));
            let room = engine.admission.lend(&account_id, events.len());
            let lent = (!room.is_empty()).then(|| room.clone());
            let ingested = match engine.store.ingest(&account_id, events, now, room, &engine.lease(now)).await {
                Ok(ingested) => ingested,
                Err(err) => {
                    if let Some(lent) = &lent {
                        engine.admission.give_back(lent);
                    }
                    return Err(err);
                }
            };
            engine.admission.give_back(&ingested.unused);
            engine.config.metrics.events_ingested(ingested.outcomes.iter().filter(|o| !o.duplicate).count(), own);
            engine.hand_over(ingested.handed);
            let waiting = ingested.outcomes.iter().flat_map(|o| o.webhook_ids.iter().map(String::as_str));
            engine.mark_due(waiting, engine.clock.now());
            Ok::<_, StoreError>(ingested.outcomes)
        });
        ingest.await.map_err(|err| StoreError::Internal(anyhow::anyhow!("ingest task failed: {err}")))?
    }

    /// Sends a `webhook.test` event to `webhook` alone.
    pub async fn send_test(self: &Arc<Self>, webhook: &Webhook) -> StoreResult<IngestOutcome> {
        if !webhook.enabled {
            return Err(StoreError::Conflict("webhook is disabled: enable it to send a test event".to_owned()));
        }
        let payload = json!({ "message": "test event from herald", "webhook_id": webhook.id });
        let event = NewEvent {
            id: None,
            event_type: TEST_EVENT_TYPE.to_owned(),
            payload: payload.to_string(),
            webhook_id: Some(webhook.id.clone()),
            timestamp: None,
        };
        let outcomes = self.ingest(&webhook.account_id, vec![event]).await?;
        outcomes.into_iter().next().ok_or_else(|| StoreError::Internal(anyhow::anyhow!("an ingest of one event")))
    }

    /// Schedules one more attempt of a finished delivery, now; it is that
    /// delivery's last, whatever its policy says.
    pub async fn retry(&self, account_id: &str, delivery_id: &str) -> StoreResult<Delivery> {
        let delivery = self.store.retry_delivery(account_id, delivery_id, self.clock.now()).await?;
        self.mark_due([delivery.webhook_id.as_str()], self.clock.now());
        Ok(delivery)
    }
}
