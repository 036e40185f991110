//! The PostgreSQL store: the backend for several nodes on one database.
//! This file holds the `Store` verbs; `accounts` the account and token
//! rows, `connect` the URL, the pool and what
//! errors mean, `schema` the migrations, `rows` the row mapping, `writes`
//! the ingest transaction, `claims` leasing due deliveries to a node,
//! `attempts` the attempt log, `log` the delivery log's reads, `secrets`
//! the start-up pass over secrets at rest, `notices` the due notices
//! between nodes (`NOTIFY` / `LISTEN`), `cluster` heartbeats and shared
//! circuit breakers.

mod accounts;
mod attempts;
mod claims;
mod cluster;
mod connect;
mod log;
mod notices;
mod rows;
mod schema;
mod secrets;
mod writes;

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};

use self::accounts::{insert_account, insert_token, webhooks_keyed_by_api_tokens};
use self::connect::PgOptions;
use self::rows::{WEBHOOK_COLUMNS, WebhookValues, find_delivery, webhook_from_row};
use super::tokens::{API_TOKEN, KnownTokens, VIBER_BOT_TOKEN, principal_of};
use super::{
    Bootstrap, ClaimWant, ClaimedBatch, ClusterView, DueNotice, HandOver, Ingested, Lease, Store, StoreError,
    StoreResult,
};
use crate::model::{
    Account, Attempt, AttemptRecord, Delivery, DeliveryFilter, DeliveryKey, DeliveryStatus, Event, NewEvent, NodeId,
    Principal, Timestamp, Webhook, new_id,
};
use crate::sealing::AtRest;
use crate::signing;
use crate::stats::WebhookSample;

pub struct PgStore {
    pool: Pool,
    /// How to reach the server, for the due-notice listener's connection.
    config: tokio_postgres::Config,
    /// Whether the due-notice feed was taken (it is made once).
    notices_taken: std::sync::atomic::AtomicBool,
    /// This handle's id in the notices it sends (one handle is one node),
    /// so that its own listener skips them.
    instance: String,
    /// Stops the listener when the store goes.
    stop: tokio_util::sync::CancellationToken,
    known_tokens: KnownTokens,
    /// Seals secrets on every write and opens them on every read.
    at_rest: AtRest,
    /// Times the commits of the hot writes (ingest, attempt records).
    commits: crate::metrics::CommitMetrics,
}

impl PgStore {
    /// Connects, migrates (one node at a time) and checks the secrets
    /// against `at_rest`, as `SqliteStore::open_with` does.
    pub async fn open(url: &str, at_rest: AtRest) -> anyhow::Result<PgStore> {
        let options = PgOptions::parse(url)?;
        let (mut client, connection) =
            options.config.connect(tokio_postgres::NoTls).await.context("connecting to postgresql")?;
        let driver = tokio::spawn(connection);
        schema::migrate(&mut client, options.schema.as_deref()).await.context("migrating the postgresql schema")?;
        secrets::seal_at_start(&mut client, &at_rest).await?;
        drop(client);
        let _ = driver.await;
        let pool = options.pool()?;
        Ok(PgStore {
            pool,
            config: options.config,
            notices_taken: Default::default(),
            instance: new_id("store"),
            stop: Default::default(),
            known_tokens: KnownTokens::default(),
            at_rest,
            commits: Default::default(),
        })
    }

    /// Counts this store's ingest and record commits in `commits`.
    pub fn with_commit_metrics(mut self, commits: crate::metrics::CommitMetrics) -> PgStore {
        self.commits = commits;
        self
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[async_trait]
impl Store for PgStore {
    async fn bootstrap(&self, operator_token: Option<String>, now: Timestamp) -> StoreResult<Bootstrap> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Nodes starting at once on an empty database make one account.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('herald-bootstrap'))", &[]).await?;
        let mut outcome = Bootstrap::default();
        match operator_token {
            Some(token) => {
                // The configured token replaces any earlier operator token.
                tx.execute("DELETE FROM tokens WHERE account_id IS NULL", &[]).await?;
                insert_token(&tx, &signing::token_hash(&token), None, API_TOKEN, now).await?;
            }
            None => {
                let n: i64 = tx.query_one("SELECT COUNT(*) FROM tokens WHERE account_id IS NULL", &[]).await?.get(0);
                if n == 0 {
                    let token = signing::generate_token();
                    insert_token(&tx, &signing::token_hash(&token), None, API_TOKEN, now).await?;
                    outcome.generated_operator_token = Some(token);
                }
            }
        }
        let n_accounts: i64 = tx.query_one("SELECT COUNT(*) FROM accounts", &[]).await?.get(0);
        if n_accounts == 0 {
            let token = signing::generate_token();
            let account = insert_account(&tx, "default", &signing::token_hash(&token), now).await?;
            outcome.default_account = Some((account, token));
        }
        outcome.first_account_id =
            tx.query_one("SELECT id FROM accounts ORDER BY created_at, id LIMIT 1", &[]).await?.get(0);
        outcome.webhooks_keyed_by_api_tokens = webhooks_keyed_by_api_tokens(&tx, &self.at_rest).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn authenticate(&self, token_hash: &str) -> StoreResult<Option<Principal>> {
        if let Some(principal) = self.known_tokens.get(token_hash) {
            return Ok(Some(principal));
        }
        let client = self.client().await?;
        let stmt = client.prepare_cached("SELECT account_id, kind FROM tokens WHERE hash = $1").await?;
        let Some(row) = client.query_opt(&stmt, &[&token_hash]).await? else { return Ok(None) };
        let kind: String = row.try_get(1)?;
        let principal = principal_of(row.try_get(0)?, &kind)?;
        self.known_tokens.remember(token_hash, &principal);
        Ok(Some(principal))
    }

    async fn create_account(&self, name: &str, token_hash: &str, now: Timestamp) -> StoreResult<Account> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let account = insert_account(&tx, name, token_hash, now).await?;
        tx.commit().await?;
        Ok(account)
    }

    async fn create_viber_bot_token(&self, account_id: &str, token_hash: &str, now: Timestamp) -> StoreResult<()> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO tokens (hash, account_id, created_at, kind) \
                 SELECT $1, id, $3, $4 FROM accounts WHERE id = $2",
                &[&token_hash, &account_id, &now.0, &VIBER_BOT_TOKEN],
            )
            .await?;
        if n == 0 { Err(StoreError::NotFound("account".into())) } else { Ok(()) }
    }

    async fn get_account(&self, account_id: &str) -> StoreResult<Option<Account>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id, name, created_at, strict_event_types, disable_after_seconds FROM accounts WHERE id = $1",
            )
            .await?;
        let Some(row) = client.query_opt(&stmt, &[&account_id]).await? else { return Ok(None) };
        Ok(Some(Account {
            id: row.try_get(0)?,
            name: row.try_get(1)?,
            created_at: Timestamp(row.try_get(2)?),
            strict_event_types: row.try_get(3)?,
            disable_after_seconds: row.try_get::<_, i64>(4)?.max(0) as u64,
        }))
    }

    async fn set_strict_event_types(&self, account_id: &str, strict: bool) -> StoreResult<()> {
        let client = self.client().await?;
        client.execute("UPDATE accounts SET strict_event_types = $2 WHERE id = $1", &[&account_id, &strict]).await?;
        Ok(())
    }

    async fn set_disable_after(&self, account_id: &str, seconds: u64) -> StoreResult<()> {
        let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
        let client = self.client().await?;
        client
            .execute("UPDATE accounts SET disable_after_seconds = $2 WHERE id = $1", &[&account_id, &seconds])
            .await?;
        Ok(())
    }

    async fn note_failing(&self, account_id: &str, webhook_id: &str, since: Timestamp) -> StoreResult<Timestamp> {
        let client = self.client().await?;
        // One statement: set it unless set, and read what is set either way.
        let stored: Option<Option<i64>> = client
            .query_opt(
                "UPDATE webhooks SET failing_since = COALESCE(failing_since, $3) WHERE id = $1 AND account_id = $2 \
                 RETURNING failing_since",
                &[&webhook_id, &account_id, &since.0],
            )
            .await?
            .map(|r| r.get(0));
        Ok(stored.flatten().map_or(since, Timestamp))
    }

    async fn note_recovered(&self, account_id: &str, webhook_id: &str) -> StoreResult<()> {
        let client = self.client().await?;
        // No longer failing: no breaker held open for it on any node either
        // (enabling a webhook again forgets its failures this way).
        client
            .execute(
                "UPDATE webhooks SET failing_since = NULL, circuit_open_until = NULL WHERE id = $1 AND account_id = $2",
                &[&webhook_id, &account_id],
            )
            .await?;
        Ok(())
    }

    async fn create_webhook(&self, webhook: Webhook) -> StoreResult<()> {
        let values = WebhookValues::new(&webhook, &self.at_rest);
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO webhooks (id, account_id, url, description, event_types, enabled, headers, profile, \
                 retry, timeout_ms, secret, previous_secret, previous_expires_at, created_at, updated_at, options, \
                 disabled_reason, disabled_at, rate_limit) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
            )
            .await?;
        client.execute(&stmt, &values.params()).await?;
        Ok(())
    }

    async fn list_webhooks(&self, account_id: &str) -> StoreResult<Vec<Webhook>> {
        let client = self.client().await?;
        writes::load_webhooks(&client, account_id, &self.at_rest).await
    }

    async fn get_webhook(&self, account_id: &str, id: &str) -> StoreResult<Option<Webhook>> {
        let client = self.client().await?;
        let sql =
            format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.id = $1 AND w.account_id = $2 AND NOT w.deleted");
        let stmt = client.prepare_cached(&sql).await?;
        let row = client.query_opt(&stmt, &[&id, &account_id]).await?;
        row.map(|row| webhook_from_row(&row, 0, &self.at_rest)).transpose()
    }

    async fn update_webhook(&self, webhook: Webhook, read_at: Timestamp) -> StoreResult<()> {
        let values = WebhookValues::new(&webhook, &self.at_rest);
        let client = self.client().await?;
        // The same values as the insert, $14 (created_at) left as it was;
        // $20 is the `updated_at` the caller read.
        let stmt = client
            .prepare_cached(
                "UPDATE webhooks SET url = $3, description = $4, event_types = $5, enabled = $6, headers = $7, \
                 profile = $8, retry = $9, timeout_ms = $10, secret = $11, previous_secret = $12, \
                 previous_expires_at = $13, updated_at = $15, options = $16, disabled_reason = $17, \
                 disabled_at = $18, rate_limit = $19 \
                 WHERE id = $1 AND account_id = $2 AND NOT deleted AND updated_at = $20 AND $14::int8 IS NOT NULL",
            )
            .await?;
        let mut params = values.params().to_vec();
        params.push(&read_at.0);
        if client.execute(&stmt, &params).await? > 0 {
            return Ok(());
        }
        let exists = client
            .query_opt(
                "SELECT 1 FROM webhooks WHERE id = $1 AND account_id = $2 AND NOT deleted",
                &[&webhook.id, &webhook.account_id],
            )
            .await?
            .is_some();
        match exists {
            true => Err(StoreError::Conflict(
                "the webhook changed while this update was made (herald may have disabled it): read it and try again"
                    .into(),
            )),
            false => Err(StoreError::NotFound("webhook".into())),
        }
    }

    async fn disable_webhook(&self, account_id: &str, id: &str, reason: &str, now: Timestamp) -> StoreResult<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE webhooks SET enabled = FALSE, disabled_reason = $3, disabled_at = $4, updated_at = $4 \
                 WHERE id = $1 AND account_id = $2 AND NOT deleted AND enabled",
                &[&id, &account_id, &reason, &now.0],
            )
            .await?;
        Ok(n > 0)
    }

    async fn delete_webhook(&self, account_id: &str, id: &str, now: Timestamp) -> StoreResult<()> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE webhooks SET deleted = TRUE, updated_at = $3 WHERE id = $1 AND account_id = $2 AND NOT deleted",
                &[&id, &account_id, &now.0],
            )
            .await?;
        if n == 0 { Err(StoreError::NotFound("webhook".into())) } else { Ok(()) }
    }

    async fn ingest(
        &self,
        account_id: &str,
        events: Vec<NewEvent>,
        now: Timestamp,
        room: HandOver,
        lease: &Lease,
    ) -> StoreResult<Ingested> {
        let mut client = self.client().await?;
        let started = std::time::Instant::now();
        let tx = client.transaction().await?;
        let ingested =
            writes::ingest_in(&tx, account_id, events, now, room, (lease, &self.instance), &self.at_rest).await?;
        tx.commit().await?;
        self.commits.committed(started.elapsed(), 1);
        Ok(ingested)
    }

    async fn get_event(&self, account_id: &str, id: &str) -> StoreResult<Option<Event>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id, type, payload, webhook_id, timestamp, created_at FROM events \
                 WHERE account_id = $1 AND id = $2",
            )
            .await?;
        let Some(row) = client.query_opt(&stmt, &[&account_id, &id]).await? else { return Ok(None) };
        let payload = serde_json::value::RawValue::from_string(row.try_get(2)?)
            .map_err(|e| StoreError::Internal(anyhow::anyhow!("stored payload is not json: {e}")))?;
        Ok(Some(Event {
            id: row.try_get(0)?,
            event_type: row.try_get(1)?,
            payload,
            webhook_id: row.try_get(3)?,
            timestamp: Timestamp(row.try_get(4)?),
            created_at: Timestamp(row.try_get(5)?),
        }))
    }

    async fn claim_due(&self, now: Timestamp, lease: &Lease, wants: Vec<ClaimWant>) -> StoreResult<Vec<ClaimedBatch>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let batches = claims::claim(&tx, now, lease, wants, &self.at_rest).await?;
        tx.commit().await?;
        Ok(batches)
    }

    async fn renew_leases(&self, lease: &Lease, deliveries: Vec<DeliveryKey>) -> StoreResult<Vec<DeliveryKey>> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let accounts: Vec<&str> = deliveries.iter().map(|k| k.account_id.as_str()).collect();
        let ids: Vec<&str> = deliveries.iter().map(|k| k.delivery_id.as_str()).collect();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE deliveries d SET lease_until = $2 FROM UNNEST($3::text[], $4::text[]) AS k(account_id, id) \
                 WHERE d.account_id = k.account_id AND d.id = k.id AND d.lease_owner = $1 RETURNING d.id",
            )
            .await?;
        let renewed: std::collections::HashSet<String> = client
            .query(&stmt, &[&lease.node.0, &lease.until.0, &accounts, &ids])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(deliveries.into_iter().filter(|k| !renewed.contains(&k.delivery_id)).collect())
    }

    async fn due_webhooks(&self, now: Timestamp) -> StoreResult<Vec<(String, Timestamp)>> {
        let client = self.client().await?;
        claims::due_webhooks(&client, Some(now)).await
    }

    async fn record_attempts(
        &self,
        node: &NodeId,
        records: Arc<Vec<AttemptRecord>>,
        put_off: Vec<DeliveryKey>,
        now: Timestamp,
    ) -> StoreResult<Vec<DeliveryKey>> {
        let mut client = self.client().await?;
        let started = std::time::Instant::now();
        let tx = client.transaction().await?;
        let lost = attempts::record(&tx, node, &records, &put_off, now, &self.instance).await?;
        tx.commit().await?;
        self.commits.committed(started.elapsed(), 1);
        Ok(lost)
    }

    async fn release_leases(&self, node: &NodeId, _now: Timestamp) -> StoreResult<u64> {
        // Only this node's: the others' are theirs until they run out.
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let due: Vec<(String, i64)> = tx
            .query(
                "UPDATE deliveries SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1 \
                 RETURNING webhook_id, next_attempt_at",
                &[&node.0],
            )
            .await?
            .iter()
            .filter_map(|r| Some((r.get(0), r.get::<_, Option<i64>>(1)?)))
            .collect();
        let n = due.len() as u64;
        let mut earliest: std::collections::BTreeMap<String, i64> = Default::default();
        for (webhook_id, at) in due {
            let slot = earliest.entry(webhook_id).or_insert(at);
            *slot = (*slot).min(at);
        }
        notices::notify_due_at(&tx, earliest.into_iter().collect(), &self.instance).await?;
        tx.commit().await?;
        Ok(n)
    }

    fn due_notices(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<DueNotice>> {
        if self.notices_taken.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return None;
        }
        // This store's own notices are skipped: its engine learns of that
        // work in process.
        Some(notices::listen(self.config.clone(), self.instance.clone(), self.stop.clone()))
    }

    async fn heartbeat(&self, node: &NodeId, now: Timestamp, until: Timestamp) -> StoreResult<ClusterView> {
        let client = self.client().await?;
        cluster::heartbeat(&client, node, now, until).await
    }

    async fn set_circuit(&self, webhook_id: &str, open_until: Option<Timestamp>) -> StoreResult<()> {
        let client = self.client().await?;
        cluster::set_circuit(&client, webhook_id, open_until).await
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn list_deliveries(&self, account_id: &str, filter: DeliveryFilter) -> StoreResult<Vec<Delivery>> {
        let client = self.client().await?;
        log::list(&client, account_id, filter).await
    }

    async fn get_delivery(&self, account_id: &str, id: &str) -> StoreResult<Option<(Delivery, Vec<Attempt>)>> {
        let client = self.client().await?;
        let Some(delivery) = find_delivery(&client, account_id, id).await? else { return Ok(None) };
        let attempts = attempts::attempts_of(&client, account_id, id).await?;
        Ok(Some((delivery, attempts)))
    }

    async fn retry_delivery(&self, account_id: &str, id: &str, now: Timestamp) -> StoreResult<Delivery> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(delivery) = find_delivery(&tx, account_id, id).await? else {
            return Err(StoreError::NotFound("delivery".into()));
        };
        if matches!(delivery.status, DeliveryStatus::Pending | DeliveryStatus::Retrying) {
            return Err(StoreError::Conflict(format!(
                "delivery is {}: it will be attempted again on its own",
                delivery.status
            )));
        }
        // Only if still finished: a concurrent retry on another node loses.
        let n = tx
            .execute(
                "UPDATE deliveries SET status = 'pending', final_attempt = TRUE, next_attempt_at = $3, \
                 lease_owner = NULL, lease_until = NULL, updated_at = $3 \
                 WHERE account_id = $1 AND id = $2 AND status NOT IN ('pending', 'retrying')",
                &[&account_id, &id, &now.0],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::Conflict("delivery is pending: it will be attempted again on its own".into()));
        }
        let delivery =
            find_delivery(&tx, account_id, id).await?.ok_or_else(|| StoreError::NotFound("delivery".into()))?;
        // Due now for any node (this one's engine hears of it in process).
        notices::notify_due(&tx, vec![delivery.webhook_id.clone()], now, &self.instance).await?;
        tx.commit().await?;
        Ok(delivery)
    }

    async fn delivery_stats(
        &self,
        account_id: &str,
        since: Timestamp,
        until: Timestamp,
        webhook_id: Option<String>,
    ) -> StoreResult<Vec<WebhookSample>> {
        let client = self.client().await?;
        log::stats(&client, account_id, since, until, webhook_id.as_deref()).await
    }
}
