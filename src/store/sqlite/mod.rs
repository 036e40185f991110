//! The embedded SQLite store: the default, zero-configuration backend.
//! This file holds the `Store` verbs; `schema` the migrations, `rows` the
//! row mapping, `writes` the ingest transaction, `many` its multi-row
//! inserts, `claims` claiming due deliveries, `attempts` the attempt log,
//! `log` the delivery log's reads (pages and stats), `secrets` the start-up
//! pass over secrets at rest, `options` what a `sqlite://` URL may set,
//! `pool` the writer thread and readers.

mod attempts;
mod claims;
mod log;
mod many;
mod options;
mod pool;
mod rows;
mod schema;
mod secrets;
mod writes;

pub use self::options::SqliteOptions;

use std::path::Path;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use self::claims::Found;
use self::pool::{Pool, internal};
use self::rows::{
    API_TOKEN, VIBER_BOT_TOKEN, WEBHOOK_COLUMNS, find_delivery, finish_without_attempt, insert_account, insert_token,
    load_webhooks, webhook_from_row, webhook_values,
};
use self::writes::ingest_in;

/// The schema's migrations in order (`PRAGMA user_version` counts those a
/// database has had), so that tests can build a database as an older
/// Herald left it by applying the first few. Not an API.
#[doc(hidden)]
pub fn schema_migrations() -> &'static [&'static str] {
    schema::MIGRATIONS
}
use super::{Bootstrap, ClaimWant, ClaimedBatch, HandOver, Ingested, Lease, Store, StoreError, StoreResult};
use crate::model::{
    Account, Attempt, AttemptRecord, Delivery, DeliveryFilter, DeliveryKey, DeliveryStatus, Event, NewEvent, NodeId,
    Principal, Timestamp, Webhook,
};
use crate::sealing::AtRest;
use crate::signing;
use crate::stats::WebhookSample;
use crate::store::tokens::{KnownTokens, principal_of};

pub struct SqliteStore {
    pool: Pool,
    /// Tokens seen valid, by hash, with their kind (in the principal).
    /// Tokens are never revoked while Herald runs, so a hit needs no trip
    /// to the database.
    known_tokens: KnownTokens,
    /// Seals secrets on every write and opens them on every read.
    at_rest: AtRest,
    /// What claims handed out and is not yet recorded: one node owns the
    /// file, so this list is its lease (a std Mutex: held for no await).
    held: std::sync::Mutex<claims::Held>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> anyhow::Result<SqliteStore> {
        Self::open_with(path, SqliteOptions::default(), AtRest::default(), Default::default())
    }

    /// Opens the database, migrates it and checks its secrets against
    /// `at_rest`: with a key, plain ones are sealed; a secret that does not
    /// open (no key, another key) refuses the start.
    pub fn open_with(
        path: &Path,
        options: SqliteOptions,
        at_rest: AtRest,
        commits: crate::metrics::CommitMetrics,
    ) -> anyhow::Result<SqliteStore> {
        let pass = at_rest.clone();
        let pool = Pool::open(path, options, commits, move |conn| {
            schema::migrate(conn)?;
            secrets::seal_at_start(conn, &pass)
        })?;
        Ok(SqliteStore { pool, known_tokens: Default::default(), at_rest, held: Default::default() })
    }
}

/// Webhooks whose secret is an API token, as `(account id, webhook id)`.
/// Tokens are kept hashed, so each secret is hashed here: a read of every
/// webhook once per start, which is small beside the deliveries.
fn webhooks_keyed_by_api_tokens(conn: &rusqlite::Connection, at_rest: &AtRest) -> StoreResult<Vec<(String, String)>> {
    let mut webhooks =
        conn.prepare("SELECT account_id, id, secret FROM webhooks WHERE deleted = 0 AND secret <> ''")?;
    let mut is_api_token = conn.prepare("SELECT 1 FROM tokens WHERE hash = ?1 AND kind = ?2")?;
    let mut found = Vec::new();
    let rows =
        webhooks.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
    for row in rows {
        let (account_id, id, stored) = row?;
        let secret = at_rest.load_webhook_secret(stored, &id, "secret").map_err(|e| StoreError::Internal(e.into()))?;
        if is_api_token.exists(params![signing::token_hash(&secret), API_TOKEN])? {
            found.push((account_id, id));
        }
    }
    Ok(found)
}

#[async_trait]
impl Store for SqliteStore {
    async fn bootstrap(&self, operator_token: Option<String>, now: Timestamp) -> StoreResult<Bootstrap> {
        let at_rest = self.at_rest.clone();
        self.pool
            .write(move |conn| {
                let mut outcome = Bootstrap::default();
                match operator_token {
                    Some(token) => {
                        // The configured token replaces any earlier operator token.
                        conn.execute("DELETE FROM tokens WHERE account_id IS NULL", [])?;
                        insert_token(conn, &signing::token_hash(&token), None, API_TOKEN, now)?;
                    }
                    None => {
                        let n: i64 =
                            conn.query_row("SELECT COUNT(*) FROM tokens WHERE account_id IS NULL", [], |r| r.get(0))?;
                        if n == 0 {
                            let token = signing::generate_token();
                            insert_token(conn, &signing::token_hash(&token), None, API_TOKEN, now)?;
                            outcome.generated_operator_token = Some(token);
                        }
                    }
                }
                let n_accounts: i64 = conn.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?;
                if n_accounts == 0 {
                    let token = signing::generate_token();
                    let account = insert_account(conn, "default", &signing::token_hash(&token), now)?;
                    outcome.default_account = Some((account, token));
                }
                outcome.first_account_id =
                    conn.query_row("SELECT id FROM accounts ORDER BY created_at, id LIMIT 1", [], |r| r.get(0))?;
                outcome.webhooks_keyed_by_api_tokens = webhooks_keyed_by_api_tokens(conn, &at_rest)?;
                Ok(outcome)
            })
            .await
    }

    async fn authenticate(&self, token_hash: &str) -> StoreResult<Option<Principal>> {
        if let Some(principal) = self.known_tokens.get(token_hash) {
            return Ok(Some(principal));
        }
        let hash = token_hash.to_owned();
        let found = self
            .pool
            .read(move |conn| {
                let found: Option<(Option<String>, String)> = conn
                    .prepare_cached("SELECT account_id, kind FROM tokens WHERE hash = ?1")?
                    .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let Some((account, kind)) = found else { return Ok(None) };
                Ok(Some(principal_of(account, &kind)?))
            })
            .await?;
        if let Some(principal) = &found {
            self.known_tokens.remember(token_hash, principal);
        }
        Ok(found)
    }

    async fn create_account(&self, name: &str, token_hash: &str, now: Timestamp) -> StoreResult<Account> {
        let (name, hash) = (name.to_owned(), token_hash.to_owned());
        self.pool.write(move |conn| Ok(insert_account(conn, &name, &hash, now)?)).await
    }

    async fn create_viber_bot_token(&self, account_id: &str, token_hash: &str, now: Timestamp) -> StoreResult<()> {
        let (account_id, hash) = (account_id.to_owned(), token_hash.to_owned());
        self.pool
            .write(move |conn| {
                let n: i64 =
                    conn.query_row("SELECT COUNT(*) FROM accounts WHERE id = ?1", [&account_id], |r| r.get(0))?;
                if n == 0 {
                    return Err(StoreError::NotFound("account".into()));
                }
                insert_token(conn, &hash, Some(&account_id), VIBER_BOT_TOKEN, now)?;
                Ok(())
            })
            .await
    }

    async fn get_account(&self, account_id: &str) -> StoreResult<Option<Account>> {
        let account_id = account_id.to_owned();
        self.pool
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT id, name, created_at, strict_event_types, disable_after_seconds FROM accounts \
                         WHERE id = ?1",
                    )?
                    .query_row([account_id], |r| {
                        Ok(Account {
                            id: r.get(0)?,
                            name: r.get(1)?,
                            created_at: Timestamp(r.get(2)?),
                            strict_event_types: r.get(3)?,
                            disable_after_seconds: r.get::<_, i64>(4)?.max(0) as u64,
                        })
                    })
                    .optional()?)
            })
            .await
    }

    async fn set_strict_event_types(&self, account_id: &str, strict: bool) -> StoreResult<()> {
        let account_id = account_id.to_owned();
        self.pool
            .write(move |conn| {
                conn.execute("UPDATE accounts SET strict_event_types = ?2 WHERE id = ?1", params![account_id, strict])?;
                Ok(())
            })
            .await
    }

    async fn set_disable_after(&self, account_id: &str, seconds: u64) -> StoreResult<()> {
        let account_id = account_id.to_owned();
        let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
        self.pool
            .write(move |conn| {
                conn.execute(
                    "UPDATE accounts SET disable_after_seconds = ?2 WHERE id = ?1",
                    params![account_id, seconds],
                )?;
                Ok(())
            })
            .await
    }

    async fn note_failing(&self, account_id: &str, webhook_id: &str, since: Timestamp) -> StoreResult<Timestamp> {
        let (account_id, webhook_id) = (account_id.to_owned(), webhook_id.to_owned());
        self.pool
            .write(move |conn| {
                conn.execute(
                    "UPDATE webhooks SET failing_since = ?3 WHERE id = ?1 AND account_id = ?2 AND failing_since IS NULL",
                    params![webhook_id, account_id, since.0],
                )?;
                let stored: Option<i64> = conn
                    .query_row(
                        "SELECT failing_since FROM webhooks WHERE id = ?1 AND account_id = ?2",
                        params![webhook_id, account_id],
                        |r| r.get(0),
                    )
                    .optional()?
                    .flatten();
                Ok(stored.map_or(since, Timestamp))
            })
            .await
    }

    async fn note_recovered(&self, account_id: &str, webhook_id: &str) -> StoreResult<()> {
        let (account_id, webhook_id) = (account_id.to_owned(), webhook_id.to_owned());
        self.pool
            .write(move |conn| {
                conn.execute(
                    "UPDATE webhooks SET failing_since = NULL WHERE id = ?1 AND account_id = ?2",
                    params![webhook_id, account_id],
                )?;
                Ok(())
            })
            .await
    }

    async fn create_webhook(&self, webhook: Webhook) -> StoreResult<()> {
        let at_rest = self.at_rest.clone();
        self.pool
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO webhooks (id, account_id, url, description, event_types, enabled, headers, profile, \
                     retry, timeout_ms, secret, previous_secret, previous_expires_at, created_at, updated_at, options, \
                     disabled_reason, disabled_at, rate_limit) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
                )?
                .execute(rusqlite::params_from_iter(webhook_values(&webhook, &at_rest)))?;
                Ok(())
            })
            .await
    }

    async fn list_webhooks(&self, account_id: &str) -> StoreResult<Vec<Webhook>> {
        let (account_id, at_rest) = (account_id.to_owned(), self.at_rest.clone());
        self.pool.read(move |conn| Ok(load_webhooks(conn, &account_id, &at_rest)?)).await
    }

    async fn get_webhook(&self, account_id: &str, id: &str) -> StoreResult<Option<Webhook>> {
        let (account_id, id, at_rest) = (account_id.to_owned(), id.to_owned(), self.at_rest.clone());
        self.pool
            .read(move |conn| {
                let sql = format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.id = ?1 AND w.account_id = ?2 AND w.deleted = 0"
                );
                Ok(conn
                    .prepare_cached(&sql)?
                    .query_row([id, account_id], |row| webhook_from_row(row, 0, &at_rest))
                    .optional()?)
            })
            .await
    }

    async fn update_webhook(&self, webhook: Webhook, read_at: Timestamp) -> StoreResult<()> {
        let at_rest = self.at_rest.clone();
        self.pool
            .write(move |conn| {
                // The same values as the insert, ?14 (created_at) left as it
                // was; ?20 is the `updated_at` the caller read.
                let mut values = webhook_values(&webhook, &at_rest);
                values.push(rusqlite::types::Value::Integer(read_at.0));
                let n = conn
                    .prepare_cached(
                        "UPDATE webhooks SET url = ?3, description = ?4, event_types = ?5, enabled = ?6, headers = ?7, \
                         profile = ?8, retry = ?9, timeout_ms = ?10, secret = ?11, previous_secret = ?12, \
                         previous_expires_at = ?13, updated_at = ?15, options = ?16, disabled_reason = ?17, \
                         disabled_at = ?18, rate_limit = ?19 \
                         WHERE id = ?1 AND account_id = ?2 AND deleted = 0 AND updated_at = ?20",
                    )?
                    .execute(rusqlite::params_from_iter(values))?;
                if n > 0 {
                    return Ok(());
                }
                let exists = conn
                    .prepare_cached("SELECT 1 FROM webhooks WHERE id = ?1 AND account_id = ?2 AND deleted = 0")?
                    .exists(params![webhook.id, webhook.account_id])?;
                match exists {
                    true => Err(StoreError::Conflict(
                        "the webhook changed while this update was made (herald may have disabled it): read it and \
                         try again"
                            .into(),
                    )),
                    false => Err(StoreError::NotFound("webhook".into())),
                }
            })
            .await
    }

    async fn disable_webhook(&self, account_id: &str, id: &str, reason: &str, now: Timestamp) -> StoreResult<bool> {
        let (account_id, id, reason) = (account_id.to_owned(), id.to_owned(), reason.to_owned());
        self.pool
            .write(move |conn| {
                let n = conn.execute(
                    "UPDATE webhooks SET enabled = 0, disabled_reason = ?3, disabled_at = ?4, updated_at = ?4 \
                     WHERE id = ?1 AND account_id = ?2 AND deleted = 0 AND enabled = 1",
                    params![id, account_id, reason, now.0],
                )?;
                Ok(n > 0)
            })
            .await
    }

    async fn delete_webhook(&self, account_id: &str, id: &str, now: Timestamp) -> StoreResult<()> {
        let (account_id, id) = (account_id.to_owned(), id.to_owned());
        self.pool
            .write(move |conn| {
                let n = conn.execute(
                    "UPDATE webhooks SET deleted = 1, updated_at = ?3 WHERE id = ?1 AND account_id = ?2 AND deleted = 0",
                    params![id, account_id, now.0],
                )?;
                if n == 0 { Err(StoreError::NotFound("webhook".into())) } else { Ok(()) }
            })
            .await
    }

    async fn ingest(
        &self,
        account_id: &str,
        events: Vec<NewEvent>,
        now: Timestamp,
        room: HandOver,
        _lease: &Lease,
    ) -> StoreResult<Ingested> {
        // The lease is the engine's: a handed delivery is written leased,
        // and one node's next start releases it.
        let (account_id, at_rest) = (account_id.to_owned(), self.at_rest.clone());
        self.pool.write(move |conn| ingest_in(conn, &account_id, events, now, room, &at_rest)).await
    }
    async fn get_event(&self, account_id: &str, id: &str) -> StoreResult<Option<Event>> {
        let (account_id, id) = (account_id.to_owned(), id.to_owned());
        self.pool
            .read(move |conn| {
                let found = conn
                    .prepare_cached(
                        "SELECT id, type, payload, webhook_id, timestamp, created_at FROM events \
                         WHERE account_id = ?1 AND id = ?2",
                    )?
                    .query_row([account_id, id], |row| {
                        let payload: String = row.get(2)?;
                        Ok((row.get(0)?, row.get(1)?, payload, row.get(3)?, row.get(4)?, row.get(5)?))
                    })
                    .optional()?;
                let Some((id, event_type, payload, webhook_id, timestamp, created_at)) = found else {
                    return Ok(None);
                };
                let payload = serde_json::value::RawValue::from_string(payload)
                    .map_err(|e| StoreError::Internal(anyhow::anyhow!("stored payload is not json: {e}")))?;
                Ok(Some(Event {
                    id,
                    event_type,
                    payload,
                    webhook_id,
                    timestamp: Timestamp(timestamp),
                    created_at: Timestamp(created_at),
                }))
            })
            .await
    }

    async fn claim_due(&self, now: Timestamp, _lease: &Lease, wants: Vec<ClaimWant>) -> StoreResult<Vec<ClaimedBatch>> {
        let at_rest = self.at_rest.clone();
        // What is held as of now, before the read begins (see `Held::want`).
        let wants: Vec<claims::Want> = {
            let held = self.held.lock().unwrap();
            wants.into_iter().map(|want| held.want(&want.webhook_id, want.limit)).collect()
        };
        let found = self
            .pool
            .read(move |conn| {
                let mut events = claims::EventCache::new();
                wants
                    .iter()
                    .map(|want| claims::find_due(conn, want, now, &mut events, &at_rest))
                    .collect::<StoreResult<Vec<_>>>()
            })
            .await?;
        let mut batches = Vec::with_capacity(found.len());
        for found in found {
            match found {
                Found::Due(taken) => {
                    self.held.lock().unwrap().claimed(&taken);
                    batches.push(taken.batch);
                }
                Found::Refused { webhook_id, account_id, reason, delivery_ids } => {
                    let more = !delivery_ids.is_empty();
                    self.pool
                        .write(move |conn| {
                            for id in &delivery_ids {
                                finish_without_attempt(conn, &account_id, id, reason, now)?;
                            }
                            Ok(())
                        })
                        .await?;
                    // More may wait; the engine claims again at once.
                    let next_due = more.then_some(now);
                    batches.push(ClaimedBatch {
                        webhook_id,
                        deliveries: Vec::new(),
                        next_due,
                        circuit_open_until: None,
                    });
                }
            }
        }
        Ok(batches)
    }
    async fn renew_leases(&self, _lease: &Lease, _deliveries: Vec<DeliveryKey>) -> StoreResult<Vec<DeliveryKey>> {
        // One node owns the file: what it holds, no other node can take.
        Ok(Vec::new())
    }
    async fn due_webhooks(&self, _now: Timestamp) -> StoreResult<Vec<(String, Timestamp)>> {
        self.pool
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT webhook_id, MIN(next_attempt_at) FROM deliveries WHERE next_attempt_at IS NOT NULL \
                     AND leased = 0 GROUP BY webhook_id",
                )?;
                let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, Timestamp(r.get(1)?))))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }
    async fn record_attempts(
        &self,
        _node: &NodeId,
        records: std::sync::Arc<Vec<AttemptRecord>>,
        put_off: Vec<DeliveryKey>,
        now: Timestamp,
    ) -> StoreResult<Vec<DeliveryKey>> {
        let (committed, keys) = (records.clone(), put_off.clone());
        self.pool.write(move |conn| attempts::record(conn, &records, &put_off, now)).await?;
        // Committed: claims may see these rows again (as they now are).
        let ids = committed.iter().map(|r| r.delivery_id.as_str()).chain(keys.iter().map(|k| k.delivery_id.as_str()));
        self.held.lock().unwrap().release(ids);
        Ok(Vec::new())
    }
    async fn release_leases(&self, _node: &NodeId, _now: Timestamp) -> StoreResult<u64> {
        // One node owns the file: every lease is this node's, or its last run's.
        let released = self
            .pool
            .write(move |conn| Ok(conn.execute("UPDATE deliveries SET leased = 0 WHERE leased = 1", [])? as u64))
            .await?;
        self.held.lock().unwrap().clear();
        Ok(released)
    }

    async fn list_deliveries(&self, account_id: &str, filter: DeliveryFilter) -> StoreResult<Vec<Delivery>> {
        let account_id = account_id.to_owned();
        self.pool.read(move |conn| log::list(conn, &account_id, filter)).await
    }

    async fn get_delivery(&self, account_id: &str, id: &str) -> StoreResult<Option<(Delivery, Vec<Attempt>)>> {
        let (account_id, id) = (account_id.to_owned(), id.to_owned());
        self.pool
            .read(move |conn| {
                let Some(delivery) = find_delivery(conn, &account_id, &id)? else {
                    return Ok(None);
                };
                let attempts = attempts::attempts_of(conn, &account_id, &id)?;
                Ok(Some((delivery, attempts)))
            })
            .await
    }

    async fn retry_delivery(&self, account_id: &str, id: &str, now: Timestamp) -> StoreResult<Delivery> {
        let (account_id, id) = (account_id.to_owned(), id.to_owned());
        self.pool
            .write(move |conn| {
                let Some(delivery) = find_delivery(conn, &account_id, &id)? else {
                    return Err(StoreError::NotFound("delivery".into()));
                };
                if matches!(delivery.status, DeliveryStatus::Pending | DeliveryStatus::Retrying) {
                    return Err(StoreError::Conflict(format!(
                        "delivery is {}: it will be attempted again on its own",
                        delivery.status
                    )));
                }
                conn.execute(
                    "UPDATE deliveries SET status = 'pending', final_attempt = 1, next_attempt_at = ?2, leased = 0, \
                     updated_at = ?2 WHERE account_id = ?3 AND id = ?1",
                    params![id, now.0, account_id],
                )?;
                find_delivery(conn, &account_id, &id)?.ok_or_else(|| StoreError::NotFound("delivery".into()))
            })
            .await
    }

    async fn delivery_stats(
        &self,
        account_id: &str,
        since: Timestamp,
        until: Timestamp,
        webhook_id: Option<String>,
    ) -> StoreResult<Vec<WebhookSample>> {
        let account_id = account_id.to_owned();
        self.pool.read(move |conn| log::stats(conn, &account_id, since, until, webhook_id.as_deref())).await
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        internal(err)
    }
}
