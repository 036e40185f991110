//! The PostgreSQL schema and its migrations, the SQLite schema's latest
//! version in PostgreSQL's words. Timestamps are BIGINT milliseconds and
//! text ids sort bytewise (`COLLATE "C"`), as in SQLite, so that ids,
//! time filters and pagination order alike on both backends. Leases name
//! their node and run until a deadline, so several nodes can share it.
//!
//! Migrations run at open inside one transaction that first takes an
//! advisory lock: when several nodes start at once, one migrates and the
//! others wait for it, then find nothing left to do.

use tokio_postgres::Client;

/// Schema migrations, applied in order; `herald_schema.version` counts how
/// many a database has had. Append only: never edit a shipped migration.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE accounts (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    strict_event_types BOOLEAN NOT NULL DEFAULT FALSE,
    disable_after_seconds BIGINT NOT NULL DEFAULT 432000
);
-- account_id NULL marks an operator token; kind is 'api' or 'viber-bot'.
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    account_id TEXT COLLATE "C",
    created_at BIGINT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'api'
);
CREATE TABLE webhooks (
    id TEXT COLLATE "C" PRIMARY KEY,
    account_id TEXT COLLATE "C" NOT NULL,
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    event_types TEXT,
    enabled BOOLEAN NOT NULL,
    headers TEXT NOT NULL,
    profile TEXT NOT NULL,
    retry TEXT,
    timeout_ms BIGINT,
    secret TEXT NOT NULL,
    previous_secret TEXT,
    previous_expires_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    options TEXT,
    disabled_reason TEXT,
    disabled_at BIGINT,
    failing_since BIGINT,
    rate_limit TEXT
);
CREATE INDEX webhooks_by_account ON webhooks (account_id, id) WHERE NOT deleted;
-- The unique (account_id, id) is what makes a caller id idempotent across
-- nodes: a second insert of it does nothing, whichever node makes it.
CREATE TABLE events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    webhook_id TEXT COLLATE "C",
    timestamp BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    n_deliveries BIGINT NOT NULL,
    UNIQUE (account_id, id)
);
-- A delivery is leased to one node (`lease_owner`) until `lease_until`;
-- once that passes, any node may claim it. A first attempt lives in the
-- delivery's own row (`first_*`), later ones in `attempts`.
CREATE TABLE deliveries (
    account_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    event_seq BIGINT NOT NULL,
    event_id TEXT COLLATE "C" NOT NULL,
    event_type TEXT NOT NULL,
    webhook_id TEXT COLLATE "C" NOT NULL,
    status TEXT NOT NULL,
    n_attempts BIGINT NOT NULL DEFAULT 0,
    final_attempt BOOLEAN NOT NULL DEFAULT FALSE,
    next_attempt_at BIGINT,
    lease_owner TEXT,
    lease_until BIGINT,
    last_status_code BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    first_started_at BIGINT,
    first_duration_ms BIGINT,
    first_status_code BIGINT,
    first_response_body TEXT,
    first_error_class TEXT,
    first_error_message TEXT,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX deliveries_due ON deliveries (webhook_id, next_attempt_at, id) WHERE next_attempt_at IS NOT NULL;
CREATE TABLE attempts (
    delivery_id TEXT COLLATE "C" NOT NULL,
    n BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status_code BIGINT,
    response_body TEXT,
    error_class TEXT,
    error_message TEXT,
    PRIMARY KEY (delivery_id, n)
);
"#,
    r#"
-- The nodes sharing the database, each alive until its heartbeat lapses,
-- and each webhook's circuit breaker as the nodes share it (open until a
-- time, or closed: NULL). Neither is the webhook's own setting, so the
-- breaker is not its `updated_at`'s business.
CREATE TABLE nodes (id TEXT COLLATE "C" PRIMARY KEY, alive_until BIGINT NOT NULL);
ALTER TABLE webhooks ADD COLUMN circuit_open_until BIGINT;
"#,
];

/// The advisory lock migrations take: one per schema, so that Heralds in
/// different schemas of one database do not wait for each other.
fn lock_key(schema: Option<&str>) -> i64 {
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"herald-migrate:".iter().chain(schema.unwrap_or("").as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Brings the schema up to date (creating `schema` first, if named).
pub(super) async fn migrate(client: &mut Client, schema: Option<&str>) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(schema)]).await?;
    if let Some(schema) = schema {
        tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")).await?;
    }
    tx.batch_execute("CREATE TABLE IF NOT EXISTS herald_schema (version BIGINT NOT NULL)").await?;
    let applied: Option<i64> = tx.query_opt("SELECT version FROM herald_schema", &[]).await?.map(|r| r.get(0));
    let applied = applied.unwrap_or(0) as usize;
    if applied > MIGRATIONS.len() {
        anyhow::bail!("database schema version {applied} is newer than this herald ({})", MIGRATIONS.len());
    }
    for migration in &MIGRATIONS[applied..] {
        tx.batch_execute(migration).await?;
    }
    tx.execute("DELETE FROM herald_schema", &[]).await?;
    tx.execute("INSERT INTO herald_schema (version) VALUES ($1)", &[&(MIGRATIONS.len() as i64)]).await?;
    tx.commit().await?;
    Ok(())
}
