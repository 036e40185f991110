//! The SQLite schema and its migrations.

use rusqlite::Connection;

/// Schema migrations, applied in order; `PRAGMA user_version` counts how
/// many a database has had. Append only: never edit a shipped migration.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    r#"
-- Leased deliveries (handed straight from ingest to the engine) stay out
-- of the due index: claims never want them, and most are done before
-- their lease would matter, so they never enter it at all.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due ON deliveries (webhook_id, next_attempt_at) WHERE next_attempt_at IS NOT NULL AND leased = 0;
"#,
    r#"
-- The due index carries what a claim needs of the delivery (its event is
-- read apart, once per claim), so claiming reads no delivery rows. `id`
-- is named so that it comes before the extra columns: the order is still
-- (next_attempt_at, id), the order claims read in. `leased` (always 0
-- here) is carried because the claim's WHERE names it.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due
    ON deliveries (webhook_id, next_attempt_at, id, n_attempts, final_attempt, event_seq, leased)
    WHERE next_attempt_at IS NOT NULL AND leased = 0;
"#,
    r#"
-- A delivery's first attempt is kept in the delivery's own row, which its
-- recording rewrites anyway: most deliveries succeed at once and so need
-- no `attempts` row (one b-tree insert fewer per delivery). Later attempts
-- go to `attempts`, as do first attempts recorded before this migration;
-- readers take both (`ATTEMPTS_OF`).
ALTER TABLE deliveries ADD COLUMN first_started_at INTEGER;
ALTER TABLE deliveries ADD COLUMN first_duration_ms INTEGER;
ALTER TABLE deliveries ADD COLUMN first_status_code INTEGER;
ALTER TABLE deliveries ADD COLUMN first_response_body TEXT;
ALTER TABLE deliveries ADD COLUMN first_error_class TEXT;
ALTER TABLE deliveries ADD COLUMN first_error_message TEXT;
"#,
    r#"
-- Deliveries are keyed by account, then id: an account's listing reads the
-- table itself in id order, and `deliveries_by_account` (one more b-tree
-- insert and more pages written per delivery) goes. Every lookup of one
-- delivery names its account.
CREATE TABLE deliveries_by_key (
    account_id TEXT NOT NULL,
    id TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    status TEXT NOT NULL,
    n_attempts INTEGER NOT NULL DEFAULT 0,
    final_attempt INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    leased INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    first_started_at INTEGER,
    first_duration_ms INTEGER,
    first_status_code INTEGER,
    first_response_body TEXT,
    first_error_class TEXT,
    first_error_message TEXT,
    PRIMARY KEY (account_id, id)
) WITHOUT ROWID;
INSERT INTO deliveries_by_key
    SELECT account_id, id, event_seq, event_id, event_type, webhook_id, status, n_attempts, final_attempt,
        next_attempt_at, leased, last_status_code, last_error, created_at, updated_at, first_started_at,
        first_duration_ms, first_status_code, first_response_body, first_error_class, first_error_message
    FROM deliveries ORDER BY account_id, id;
DROP TABLE deliveries;
ALTER TABLE deliveries_by_key RENAME TO deliveries;
CREATE INDEX deliveries_due
    ON deliveries (webhook_id, next_attempt_at, id, n_attempts, final_attempt, event_seq, leased)
    WHERE next_attempt_at IS NOT NULL AND leased = 0;
"#,
    r#"
-- What a token may do: 'api' (the operator's, or an account's for all of
-- /v1) or 'viber-bot' (an account's bot: /pa/set_webhook only, and the key
-- its webhook signs with). Every token before this one was an API token.
ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'api';
"#,
    r#"
-- Why and when Herald itself disabled a webhook (its receiver answered
-- 410 Gone); both null for one the account disabled, or never disabled.
ALTER TABLE webhooks ADD COLUMN disabled_reason TEXT;
ALTER TABLE webhooks ADD COLUMN disabled_at INTEGER;
"#,
    r#"
-- How long a webhook's every attempt may fail before it is disabled (five
-- days unless the account says), and since when a webhook's attempts have
-- been failing (set when its circuit breaker opens, cleared by a success).
ALTER TABLE accounts ADD COLUMN disable_after_seconds INTEGER NOT NULL DEFAULT 432000;
ALTER TABLE webhooks ADD COLUMN failing_since INTEGER;
"#,
    r#"
-- A webhook's rate limit (`{"per_second", "burst"}`), null for none.
ALTER TABLE webhooks ADD COLUMN rate_limit TEXT;
"#,
];

pub(super) fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
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
