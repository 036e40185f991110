//! The embedded SQLite store: the default, zero-configuration backend.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::sqlite_pool::{Pool, internal};
use super::{Bootstrap, ClaimedBatch, Store, StoreError, StoreResult};
use crate::model::{
    Account, Attempt, AttemptRecord, Delivery, DeliveryFilter, DeliveryStatus, DueDelivery, ErrorClass, Event,
    IngestOutcome, NewEvent, NextStep, Principal, RetiringSecret, Timestamp, Webhook, new_id, new_id_at,
};
use crate::profile::Profile;
use crate::signing;
use crate::stats::WebhookSample;
use crate::{catalogue, filter};

/// Schema migrations, applied in order; `PRAGMA user_version` counts how
/// many a database has had. Append only: never edit a shipped migration.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    strict_event_types INTEGER NOT NULL DEFAULT 0
);
-- account_id NULL marks an operator token.
CREATE TABLE tokens (hash TEXT PRIMARY KEY, account_id TEXT, created_at INTEGER NOT NULL);
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    event_types TEXT,
    enabled INTEGER NOT NULL,
    headers TEXT NOT NULL,
    profile TEXT NOT NULL,
    retry TEXT,
    timeout_ms INTEGER,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_expires_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    -- Profile-specific settings (compose template, viber privacy flags).
    options TEXT
);
CREATE INDEX webhooks_by_account ON webhooks (account_id) WHERE deleted = 0;
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    account_id TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    webhook_id TEXT,
    timestamp INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    n_deliveries INTEGER NOT NULL,
    UNIQUE (account_id, id)
);
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    status TEXT NOT NULL,
    n_attempts INTEGER NOT NULL DEFAULT 0,
    final_attempt INTEGER NOT NULL DEFAULT 0,
    -- Set while the delivery is pending or retrying: when it is due,
    -- while leased, still the time it was due.
    next_attempt_at INTEGER,
    leased INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
-- Clustered by id (a ULID, so new rows append): one b-tree, not a rowid
-- table plus an index on id.
CREATE INDEX deliveries_due ON deliveries (webhook_id, next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX deliveries_by_account ON deliveries (account_id, id);
-- Clustered by (delivery, attempt number): a delivery's attempts are one
-- range, and no separate index is kept.
CREATE TABLE attempts (
    delivery_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status_code INTEGER,
    response_body TEXT,
    error_class TEXT,
    error_message TEXT,
    PRIMARY KEY (delivery_id, n)
) WITHOUT ROWID;
"#];

fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let tx = conn.transaction()?;
    let applied: usize = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if applied > MIGRATIONS.len() {
        anyhow::bail!("database schema version {applied} is newer than this herald ({})", MIGRATIONS.len());
    }
    for migration in &MIGRATIONS[applied..] {
        tx.execute_batch(migration)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {}", MIGRATIONS.len()))?;
    tx.commit()?;
    Ok(())
}

pub struct SqliteStore {
    pool: Pool,
    /// Tokens seen valid, by hash. Tokens are never revoked while Herald
    /// runs, so a hit needs no trip to the database.
    known_tokens: std::sync::Mutex<std::collections::HashMap<String, Principal>>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> anyhow::Result<SqliteStore> {
        Ok(SqliteStore { pool: Pool::open(path, migrate)?, known_tokens: Default::default() })
    }
}

/// Tokens remembered at most; past it the cache starts over.
const MAX_KNOWN_TOKENS: usize = 10_000;

const WEBHOOK_COLUMNS: &str = "w.id, w.account_id, w.url, w.description, w.event_types, w.enabled, w.headers, \
     w.profile, w.retry, w.timeout_ms, w.secret, w.previous_secret, w.previous_expires_at, w.created_at, w.updated_at, w.options";

fn json_column<T: serde::de::DeserializeOwned>(row: &Row, idx: usize) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| {
        serde_json::from_str(&t)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e)))
    })
    .transpose()
}

/// Reads a webhook from `WEBHOOK_COLUMNS` starting at column `at`.
fn webhook_from_row(row: &Row, at: usize) -> rusqlite::Result<Webhook> {
    let profile: String = row.get(at + 7)?;
    let previous_secret: Option<String> = row.get(at + 11)?;
    let previous_expires_at: Option<i64> = row.get(at + 12)?;
    Ok(Webhook {
        id: row.get(at)?,
        account_id: row.get(at + 1)?,
        url: row.get(at + 2)?,
        description: row.get(at + 3)?,
        event_types: json_column(row, at + 4)?,
        enabled: row.get(at + 5)?,
        headers: json_column::<BTreeMap<String, String>>(row, at + 6)?.unwrap_or_default(),
        profile: Profile::parse(&profile).unwrap_or_default(),
        retry: json_column(row, at + 8)?,
        timeout_ms: row.get::<_, Option<i64>>(at + 9)?.map(|t| t as u64),
        secret: row.get(at + 10)?,
        previous_secret: previous_secret
            .zip(previous_expires_at)
            .map(|(secret, expires_at)| RetiringSecret { secret, expires_at: Timestamp(expires_at) }),
        created_at: Timestamp(row.get(at + 13)?),
        updated_at: Timestamp(row.get(at + 14)?),
        options: json_column(row, at + 15)?.unwrap_or_default(),
    })
}

/// A webhook's columns in `INSERT` order, for the insert and the update.
fn webhook_values(w: &Webhook) -> Vec<rusqlite::types::Value> {
    use rusqlite::types::Value;
    let text = |t: String| Value::Text(t);
    let opt_text = |t: Option<String>| t.map_or(Value::Null, Value::Text);
    let opt_int = |n: Option<i64>| n.map_or(Value::Null, Value::Integer);
    vec![
        text(w.id.clone()),
        text(w.account_id.clone()),
        text(w.url.clone()),
        text(w.description.clone()),
        opt_text(w.event_types.as_ref().map(to_json)),
        Value::Integer(w.enabled as i64),
        text(to_json(&w.headers)),
        text(w.profile.name().to_owned()),
        opt_text(w.retry.as_ref().map(to_json)),
        opt_int(w.timeout_ms.map(|t| t as i64)),
        text(w.secret.clone()),
        opt_text(w.previous_secret.as_ref().map(|p| p.secret.clone())),
        opt_int(w.previous_secret.as_ref().map(|p| p.expires_at.0)),
        Value::Integer(w.created_at.0),
        Value::Integer(w.updated_at.0),
        opt_text(options_json(&w.options)),
    ]
}

fn options_json(options: &crate::profile::ProfileOptions) -> Option<String> {
    (options != &Default::default()).then(|| to_json(options))
}

/// The smallest id of kind `prefix` made at `at`: ids are ULIDs, so ids
/// made before `at` sort below it and ids made at or after it do not.
fn id_at(prefix: &str, at: Timestamp) -> String {
    let ms = u64::try_from(at.0).unwrap_or(0);
    format!("{prefix}_{}", ulid::Ulid::from_parts(ms, 0))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("domain values serialise")
}

/// Delivery columns, read from `deliveries d JOIN events e JOIN webhooks w`.
const DELIVERY_COLUMNS: &str = "d.id, d.event_id, d.event_type, d.webhook_id, d.status, d.n_attempts, \
     d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.updated_at, d.leased, e.payload, w.url";
const DELIVERY_FROM: &str = "deliveries d JOIN events e ON e.seq = d.event_seq JOIN webhooks w ON w.id = d.webhook_id";

fn delivery_from_row(row: &Row) -> rusqlite::Result<Delivery> {
    let status: String = row.get(4)?;
    let leased: bool = row.get(11)?;
    // Being attempted right now: no schedule to show.
    Ok(Delivery {
        id: row.get(0)?,
        event_id: row.get(1)?,
        event_type: row.get(2)?,
        webhook_id: row.get(3)?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Pending),
        n_attempts: row.get(5)?,
        next_attempt_at: if leased { None } else { row.get::<_, Option<i64>>(6)?.map(Timestamp) },
        last_status_code: row.get(7)?,
        last_error: row.get(8)?,
        created_at: Timestamp(row.get(9)?),
        updated_at: Timestamp(row.get(10)?),
        payload: row.get(12)?,
        webhook_url: row.get(13)?,
    })
}

fn insert_token(conn: &Connection, hash: &str, account_id: Option<&str>, now: Timestamp) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO tokens (hash, account_id, created_at) VALUES (?1, ?2, ?3)")?
        .execute(params![hash, account_id, now.0])?;
    Ok(())
}

fn insert_account(conn: &Connection, name: &str, token_hash: &str, now: Timestamp) -> rusqlite::Result<Account> {
    let account = Account { id: new_id("acc"), name: name.to_owned(), created_at: now, strict_event_types: false };
    conn.prepare_cached("INSERT INTO accounts (id, name, created_at) VALUES (?1, ?2, ?3)")?.execute(params![
        account.id,
        account.name,
        now.0
    ])?;
    insert_token(conn, token_hash, Some(&account.id), now)?;
    Ok(account)
}

fn load_webhooks(conn: &Connection, account_id: &str) -> rusqlite::Result<Vec<Webhook>> {
    let sql =
        format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.account_id = ?1 AND w.deleted = 0 ORDER BY w.id");
    let mut stmt = conn.prepare_cached(&sql)?;
    stmt.query_map([account_id], |row| webhook_from_row(row, 0))?.collect()
}

fn finish_without_attempt(conn: &Connection, delivery_id: &str, reason: &str, now: Timestamp) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE deliveries SET status = 'failed', next_attempt_at = NULL, leased = 0, last_status_code = NULL, \
         last_error = ?2, updated_at = ?3 WHERE id = ?1",
    )?
    .execute(params![delivery_id, reason, now.0])?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn bootstrap(&self, operator_token: Option<String>, now: Timestamp) -> StoreResult<Bootstrap> {
        self.pool
            .write(move |conn| {
                let mut outcome = Bootstrap::default();
                match operator_token {
                    Some(token) => {
                        // The configured token replaces any earlier operator token.
                        conn.execute("DELETE FROM tokens WHERE account_id IS NULL", [])?;
                        insert_token(conn, &signing::token_hash(&token), None, now)?;
                    }
                    None => {
                        let n: i64 =
                            conn.query_row("SELECT COUNT(*) FROM tokens WHERE account_id IS NULL", [], |r| r.get(0))?;
                        if n == 0 {
                            let token = signing::generate_token();
                            insert_token(conn, &signing::token_hash(&token), None, now)?;
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
                Ok(outcome)
            })
            .await
    }

    async fn authenticate(&self, token_hash: &str) -> StoreResult<Option<Principal>> {
        if let Some(principal) = self.known_tokens.lock().unwrap().get(token_hash) {
            return Ok(Some(principal.clone()));
        }
        let hash = token_hash.to_owned();
        let found = self
            .pool
            .read(move |conn| {
                let found: Option<Option<String>> = conn
                    .prepare_cached("SELECT account_id FROM tokens WHERE hash = ?1")?
                    .query_row([hash], |r| r.get(0))
                    .optional()?;
                Ok(found.map(|account| match account {
                    Some(id) => Principal::Account(id),
                    None => Principal::Operator,
                }))
            })
            .await?;
        if let Some(principal) = &found {
            let mut known = self.known_tokens.lock().unwrap();
            if known.len() >= MAX_KNOWN_TOKENS {
                known.clear();
            }
            known.insert(token_hash.to_owned(), principal.clone());
        }
        Ok(found)
    }

    async fn create_account(&self, name: &str, token_hash: &str, now: Timestamp) -> StoreResult<Account> {
        let (name, hash) = (name.to_owned(), token_hash.to_owned());
        self.pool.write(move |conn| Ok(insert_account(conn, &name, &hash, now)?)).await
    }

    async fn get_account(&self, account_id: &str) -> StoreResult<Option<Account>> {
        let account_id = account_id.to_owned();
        self.pool
            .read(move |conn| {
                Ok(conn
                    .prepare_cached("SELECT id, name, created_at, strict_event_types FROM accounts WHERE id = ?1")?
                    .query_row([account_id], |r| {
                        Ok(Account {
                            id: r.get(0)?,
                            name: r.get(1)?,
                            created_at: Timestamp(r.get(2)?),
                            strict_event_types: r.get(3)?,
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

    async fn create_webhook(&self, webhook: Webhook) -> StoreResult<()> {
        self.pool
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO webhooks (id, account_id, url, description, event_types, enabled, headers, profile, \
                     retry, timeout_ms, secret, previous_secret, previous_expires_at, created_at, updated_at, options) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                )?
                .execute(rusqlite::params_from_iter(webhook_values(&webhook)))?;
                Ok(())
            })
            .await
    }

    async fn list_webhooks(&self, account_id: &str) -> StoreResult<Vec<Webhook>> {
        let account_id = account_id.to_owned();
        self.pool.read(move |conn| Ok(load_webhooks(conn, &account_id)?)).await
    }

    async fn get_webhook(&self, account_id: &str, id: &str) -> StoreResult<Option<Webhook>> {
        let (account_id, id) = (account_id.to_owned(), id.to_owned());
        self.pool
            .read(move |conn| {
                let sql = format!(
                    "SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.id = ?1 AND w.account_id = ?2 AND w.deleted = 0"
                );
                Ok(conn.prepare_cached(&sql)?.query_row([id, account_id], |row| webhook_from_row(row, 0)).optional()?)
            })
            .await
    }

    async fn update_webhook(&self, webhook: Webhook) -> StoreResult<()> {
        self.pool
            .write(move |conn| {
                // The same 16 values as the insert; ?14 (created_at) stays as it was.
                let n = conn
                    .prepare_cached(
                        "UPDATE webhooks SET url = ?3, description = ?4, event_types = ?5, enabled = ?6, headers = ?7, \
                         profile = ?8, retry = ?9, timeout_ms = ?10, secret = ?11, previous_secret = ?12, \
                         previous_expires_at = ?13, updated_at = ?15, options = ?16 \
                         WHERE id = ?1 AND account_id = ?2 AND deleted = 0",
                    )?
                    .execute(rusqlite::params_from_iter(webhook_values(&webhook)))?;
                if n == 0 { Err(StoreError::NotFound("webhook".into())) } else { Ok(()) }
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

    async fn ingest(&self, account_id: &str, events: Vec<NewEvent>, now: Timestamp) -> StoreResult<Vec<IngestOutcome>> {
        let account_id = account_id.to_owned();
        self.pool.write(move |conn| ingest_in(conn, &account_id, events, now)).await
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

    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        wants: Vec<(String, usize)>,
    ) -> StoreResult<Vec<ClaimedBatch>> {
        self.pool
            .write(move |conn| {
                let mut batches = Vec::with_capacity(wants.len());
                for (webhook_id, limit) in wants {
                    batches.push(claim_for_webhook(conn, &webhook_id, now, lease_until, limit)?);
                }
                Ok(batches)
            })
            .await
    }

    async fn due_webhooks(&self) -> StoreResult<Vec<(String, Timestamp)>> {
        self.pool
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT webhook_id, MIN(next_attempt_at) FROM deliveries WHERE next_attempt_at IS NOT NULL \
                     GROUP BY webhook_id",
                )?;
                let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, Timestamp(r.get(1)?))))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    async fn record_attempts(
        &self,
        records: Vec<AttemptRecord>,
        put_off: Vec<String>,
        now: Timestamp,
    ) -> StoreResult<()> {
        self.pool
            .write(move |conn| {
                let mut insert = conn.prepare_cached(
                    "INSERT INTO attempts (delivery_id, n, started_at, duration_ms, status_code, response_body, \
                     error_class, error_message) \
                     VALUES (?1, (SELECT n_attempts + 1 FROM deliveries WHERE id = ?1), ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                let mut update = conn.prepare_cached(
                    "UPDATE deliveries SET status = ?2, n_attempts = n_attempts + 1, final_attempt = 0, \
                     next_attempt_at = ?3, leased = 0, last_status_code = ?4, last_error = ?5, updated_at = ?6 \
                     WHERE id = ?1",
                )?;
                for record in &records {
                    let a = &record.attempt;
                    insert.execute(params![
                        record.delivery_id,
                        a.started_at.0,
                        a.duration_ms as i64,
                        a.status_code,
                        a.response_body,
                        a.error_class.map(|c| c.as_str()),
                        a.error_message,
                    ])?;
                    let (status, next_at) = match record.next {
                        NextStep::Success => (DeliveryStatus::Success, None),
                        NextStep::RetryAt(at) => (DeliveryStatus::Retrying, Some(at.0)),
                        NextStep::Failed => (DeliveryStatus::Failed, None),
                    };
                    let last_error = a.error_message.as_ref().map(|m| match a.error_class {
                        Some(class) => format!("{}: {m}", class.as_str()),
                        None => m.clone(),
                    });
                    update.execute(params![
                        record.delivery_id,
                        status.as_str(),
                        next_at,
                        a.status_code,
                        last_error,
                        now.0
                    ])?;
                }
                let mut release = conn.prepare_cached("UPDATE deliveries SET leased = 0 WHERE id = ?1")?;
                for id in &put_off {
                    release.execute([id])?;
                }
                Ok(())
            })
            .await
    }

    async fn release_leases(&self, _now: Timestamp) -> StoreResult<u64> {
        self.pool
            .write(move |conn| Ok(conn.execute("UPDATE deliveries SET leased = 0 WHERE leased = 1", [])? as u64))
            .await
    }

    async fn list_deliveries(&self, account_id: &str, filter: DeliveryFilter) -> StoreResult<Vec<Delivery>> {
        let account_id = account_id.to_owned();
        self.pool
            .read(move |conn| {
                let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE d.account_id = ?");
                let mut args: Vec<rusqlite::types::Value> = vec![account_id.into()];
                let mut condition = |clause: &str, value: rusqlite::types::Value| {
                    sql.push_str(clause);
                    args.push(value);
                };
                if let Some(status) = filter.status {
                    condition(" AND d.status = ?", status.as_str().to_owned().into());
                }
                if let Some(webhook_id) = filter.webhook_id {
                    condition(" AND d.webhook_id = ?", webhook_id.into());
                }
                if let Some(event_type) = filter.event_type {
                    condition(" AND d.event_type = ?", event_type.into());
                }
                // Delivery ids are ULIDs: a time range is an id range on the
                // account index, no extra index needed.
                if let Some(since) = filter.since {
                    condition(" AND d.id >= ?", id_at("dlv", since).into());
                }
                if let Some(until) = filter.until {
                    condition(" AND d.id < ?", id_at("dlv", until).into());
                }
                if let Some(before) = filter.before_id {
                    condition(" AND d.id < ?", before.into());
                }
                sql.push_str(" ORDER BY d.id DESC LIMIT ?");
                args.push((filter.limit as i64).into());
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map(rusqlite::params_from_iter(args), delivery_from_row)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    async fn get_delivery(&self, account_id: &str, id: &str) -> StoreResult<Option<(Delivery, Vec<Attempt>)>> {
        let (account_id, id) = (account_id.to_owned(), id.to_owned());
        self.pool
            .read(move |conn| {
                let sql =
                    format!("SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE d.id = ?1 AND d.account_id = ?2");
                let Some(delivery) =
                    conn.prepare_cached(&sql)?.query_row([&id, &account_id], delivery_from_row).optional()?
                else {
                    return Ok(None);
                };
                let mut stmt = conn.prepare_cached(
                    "SELECT started_at, duration_ms, status_code, response_body, error_class, error_message \
                     FROM attempts WHERE delivery_id = ?1 ORDER BY n",
                )?;
                let attempts = stmt
                    .query_map([&id], |row| {
                        let class: Option<String> = row.get(4)?;
                        Ok(Attempt {
                            started_at: Timestamp(row.get(0)?),
                            duration_ms: row.get::<_, i64>(1)? as u64,
                            status_code: row.get(2)?,
                            response_body: row.get(3)?,
                            error_class: class.as_deref().and_then(ErrorClass::parse),
                            error_message: row.get(5)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some((delivery, attempts)))
            })
            .await
    }

    async fn retry_delivery(&self, account_id: &str, id: &str, now: Timestamp) -> StoreResult<Delivery> {
        let (account_id, id) = (account_id.to_owned(), id.to_owned());
        self.pool
            .write(move |conn| {
                let sql =
                    format!("SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE d.id = ?1 AND d.account_id = ?2");
                let Some(delivery) =
                    conn.prepare_cached(&sql)?.query_row([&id, &account_id], delivery_from_row).optional()?
                else {
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
                     updated_at = ?2 WHERE id = ?1",
                    params![id, now.0],
                )?;
                Ok(conn.prepare_cached(&sql)?.query_row([&id, &account_id], delivery_from_row)?)
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
        self.pool
            .read(move |conn| {
                let mut samples: BTreeMap<String, WebhookSample> = BTreeMap::new();
                let mut counts = conn.prepare_cached(
                    "SELECT webhook_id, status, COUNT(*) FROM deliveries WHERE account_id = ?1 AND id >= ?2 \
                     AND id < ?3 AND (?4 IS NULL OR webhook_id = ?4) GROUP BY webhook_id, status",
                )?;
                let (from, to) = (id_at("dlv", since), id_at("dlv", until));
                let rows = counts.query_map(params![account_id, from, to, webhook_id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
                })?;
                for row in rows {
                    let (webhook, status, n) = row?;
                    let sample = samples
                        .entry(webhook.clone())
                        .or_insert_with(|| WebhookSample { webhook_id: webhook, ..Default::default() });
                    if let Some(status) = DeliveryStatus::parse(&status) {
                        sample.add_count(status, n as u64);
                    }
                }
                let mut durations = conn.prepare_cached(
                    "SELECT d.webhook_id, a.duration_ms FROM attempts a JOIN deliveries d ON d.id = a.delivery_id \
                     WHERE d.account_id = ?1 AND d.id >= ?2 AND d.id < ?3 \
                     AND (?4 IS NULL OR d.webhook_id = ?4)",
                )?;
                let rows = durations.query_map(params![account_id, from, to, webhook_id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })?;
                for row in rows {
                    let (webhook, ms) = row?;
                    samples
                        .entry(webhook.clone())
                        .or_insert_with(|| WebhookSample { webhook_id: webhook, ..Default::default() })
                        .durations_ms
                        .push(ms.max(0) as u64);
                }
                Ok(samples.into_values().collect())
            })
            .await
    }
}

/// Claims up to `limit` due deliveries of one webhook, inside the writer's
/// transaction; see `Store::claim_due`.
fn claim_for_webhook(
    conn: &Connection,
    webhook_id: &str,
    now: Timestamp,
    lease_until: Timestamp,
    limit: usize,
) -> StoreResult<ClaimedBatch> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS}, w.deleted FROM webhooks w WHERE w.id = ?1");
    let found = conn
        .prepare_cached(&sql)?
        .query_row([webhook_id], |row| Ok((webhook_from_row(row, 0)?, row.get::<_, bool>(16)?)))
        .optional()?;
    let refusal = match &found {
        None | Some((_, true)) => Some("webhook deleted"),
        Some((webhook, false)) if !webhook.enabled => Some("webhook disabled"),
        _ => None,
    };
    let webhook = Arc::new(found.map(|(w, _)| w).unwrap_or_else(|| placeholder_webhook(webhook_id)));
    let mut due_rows = conn.prepare_cached(
        "SELECT d.id, d.n_attempts, d.final_attempt, d.event_id, d.event_type, e.timestamp, e.payload \
         FROM deliveries d JOIN events e ON e.seq = d.event_seq \
         WHERE d.webhook_id = ?1 AND d.next_attempt_at <= ?2 AND d.leased = 0 ORDER BY d.next_attempt_at LIMIT ?3",
    )?;
    let rows = due_rows.query_map(params![webhook_id, now.0, limit as i64], |row| {
        Ok(DueDelivery {
            delivery_id: row.get(0)?,
            n_attempts: row.get(1)?,
            final_attempt: row.get(2)?,
            event_id: row.get(3)?,
            event_type: row.get(4)?,
            event_timestamp: Timestamp(row.get(5)?),
            payload: row.get(6)?,
            webhook: webhook.clone(),
        })
    })?;
    let deliveries: Vec<DueDelivery> = rows.collect::<Result<_, _>>()?;
    if let Some(reason) = refusal {
        for due in &deliveries {
            finish_without_attempt(conn, &due.delivery_id, reason, now)?;
        }
        // More may wait; the engine claims again at once.
        let next_due = (deliveries.len() == limit).then_some(now);
        return Ok(ClaimedBatch { webhook_id: webhook_id.to_owned(), deliveries: Vec::new(), next_due });
    }
    // One node owns an SQLite database, so a lease is a flag that the next
    // start clears (`release_leases`), not a deadline; leaving
    // `next_attempt_at` alone spares the due index an update per delivery.
    let _ = lease_until;
    let mut lease = conn.prepare_cached("UPDATE deliveries SET leased = 1 WHERE id = ?1")?;
    for due in &deliveries {
        lease.execute(params![due.delivery_id])?;
    }
    // The next unleased delivery; leased ones are in this engine's hands.
    let next_due: Option<i64> = conn
        .prepare_cached(
            "SELECT next_attempt_at FROM deliveries WHERE webhook_id = ?1 AND next_attempt_at IS NOT NULL \
             AND leased = 0 ORDER BY next_attempt_at LIMIT 1",
        )?
        .query_row([webhook_id], |r| r.get(0))
        .optional()?;
    Ok(ClaimedBatch { webhook_id: webhook_id.to_owned(), deliveries, next_due: next_due.map(Timestamp) })
}

/// Stands in for a webhook row that no longer exists.
fn placeholder_webhook(id: &str) -> Webhook {
    Webhook {
        id: id.to_owned(),
        account_id: String::new(),
        url: String::new(),
        description: String::new(),
        event_types: None,
        enabled: false,
        headers: Default::default(),
        profile: Profile::default(),
        options: Default::default(),
        retry: None,
        timeout_ms: None,
        secret: String::new(),
        previous_secret: None,
        created_at: Timestamp(0),
        updated_at: Timestamp(0),
    }
}

/// The body of `Store::ingest`, inside the writer's transaction.
fn ingest_in(
    conn: &Connection,
    account_id: &str,
    events: Vec<NewEvent>,
    now: Timestamp,
) -> StoreResult<Vec<IngestOutcome>> {
    let strict: bool = conn
        .prepare_cached("SELECT strict_event_types FROM accounts WHERE id = ?1")?
        .query_row([account_id], |r| r.get(0))
        .optional()?
        .unwrap_or(false);
    if strict && let Some((i, event)) = events.iter().enumerate().find(|(_, e)| !catalogue::is_known(&e.event_type)) {
        return Err(StoreError::Invalid(format!(
            "events[{i}].type: `{}` is not in the event catalogue (this account is in strict mode)",
            event.event_type
        )));
    }
    let webhooks = load_webhooks(conn, account_id)?;
    // A targeted webhook must exist in this account, or the whole request
    // fails before anything is written.
    for (i, event) in events.iter().enumerate() {
        if let Some(target) = &event.webhook_id
            && !webhooks.iter().any(|w| &w.id == target)
        {
            return Err(StoreError::NotFound(format!("webhook `{target}` (events[{i}].webhook_id)")));
        }
    }
    let mut find = conn.prepare_cached("SELECT id, n_deliveries FROM events WHERE account_id = ?1 AND id = ?2")?;
    let mut insert_event = conn.prepare_cached(
        "INSERT INTO events (account_id, id, type, payload, webhook_id, timestamp, created_at, n_deliveries) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut insert_delivery = conn.prepare_cached(
        "INSERT INTO deliveries (id, account_id, event_seq, event_id, event_type, webhook_id, status, next_attempt_at, \
         created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7, ?7)",
    )?;
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        if let Some(id) = &event.id {
            let seen: Option<(String, u32)> =
                find.query_row([account_id, id], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
            if let Some((id, deliveries)) = seen {
                outcomes.push(IngestOutcome { id, deliveries, duplicate: true, webhook_ids: Vec::new() });
                continue;
            }
        }
        let targets: Vec<&Webhook> = match &event.webhook_id {
            Some(target) => webhooks.iter().filter(|w| &w.id == target && w.enabled).collect(),
            None => webhooks
                .iter()
                .filter(|w| w.enabled && filter::matches(w.event_types.as_deref(), &event.event_type))
                .collect(),
        };
        let id = event.id.unwrap_or_else(|| new_id("evt"));
        let timestamp = event.timestamp.unwrap_or(now);
        insert_event.execute(params![
            account_id,
            id,
            event.event_type,
            event.payload,
            event.webhook_id,
            timestamp.0,
            now.0,
            targets.len() as i64
        ])?;
        let seq = conn.last_insert_rowid();
        for webhook in &targets {
            insert_delivery.execute(params![
                new_id_at("dlv", now),
                account_id,
                seq,
                id,
                event.event_type,
                webhook.id,
                now.0
            ])?;
        }
        outcomes.push(IngestOutcome {
            id,
            deliveries: targets.len() as u32,
            duplicate: false,
            webhook_ids: targets.iter().map(|w| w.id.clone()).collect(),
        });
    }
    Ok(outcomes)
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        internal(err)
    }
}
