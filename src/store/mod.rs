//! The store: every durable fact Herald keeps, behind one trait of domain
//! verbs. Only `store/` contains SQL. The SQLite implementation is the
//! default; a PostgreSQL one implements the same trait.

mod sqlite;

/// Maps and sets keyed by ids on the hot path: foldhash, not SipHash.
/// Ids are ours (ULIDs and webhook ids), so flooding needs no defence.
pub type IdMap<V> = std::collections::HashMap<String, V, foldhash::fast::RandomState>;
pub type IdSet = std::collections::HashSet<String, foldhash::fast::RandomState>;

use async_trait::async_trait;

use crate::model::{
    Account, Attempt, AttemptRecord, Delivery, DeliveryFilter, DeliveryKey, DueDelivery, Event, IngestOutcome,
    NewEvent, Principal, Timestamp, Webhook,
};

#[doc(hidden)]
pub use sqlite::schema_migrations;
pub use sqlite::{SqliteOptions, SqliteStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the store is closed")]
    Closed,
    /// The database cannot be written just now (locked by another process
    /// past the busy timeout, a full disk, an I/O error): nothing was
    /// written, and the same write may well succeed later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What the engine asks one claim for, per webhook.
#[derive(Debug)]
pub struct ClaimWant {
    pub webhook_id: String,
    pub limit: usize,
    /// Deliveries of this webhook in the engine's hands, as of before the
    /// claim. `None` when the engine does not send them (it expects the
    /// claim to find enough past `after`): then the claim reads only past
    /// `after`, since anything behind it might be held.
    pub held: Option<IdSet>,
    /// Where the previous claim for this webhook stopped: a hint that lets
    /// a claim start past what it has already handed out (and is held).
    pub after: Option<ClaimCursor>,
}

/// A place in a webhook's due order (by time, then id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClaimCursor {
    pub due_at: Timestamp,
    pub delivery_id: String,
}

/// What one claim took for one webhook.
#[derive(Debug)]
pub struct ClaimedBatch {
    pub webhook_id: String,
    pub deliveries: Vec<DueDelivery>,
    /// When the webhook's next unclaimed delivery falls due, if it has one.
    pub next_due: Option<Timestamp>,
    /// Where this claim stopped, for the next one's `after`.
    pub cursor: Option<ClaimCursor>,
    /// The claim filled up from what lies past `after` alone, so the next
    /// may well too: it need not be told what is held.
    pub filled_past_cursor: bool,
}

/// Lets ingest hand fresh deliveries straight to the delivery engine: a
/// delivery it takes room for is written already leased and comes back in
/// `Ingested::handed`, so the engine never claims it from the store.
pub trait Admit: Send + Sync {
    /// Takes room for one fresh delivery of `webhook_id`, if there is any.
    fn take(&self, webhook_id: &str) -> bool;
    /// Gives back room taken for a delivery that was not committed.
    fn give_back(&self, webhook_id: &str);
}

/// What one ingest committed.
#[derive(Debug, Default)]
pub struct Ingested {
    pub outcomes: Vec<IngestOutcome>,
    /// New deliveries handed to the engine in memory (leased as written).
    pub handed: Vec<DueDelivery>,
}

/// What the first start of a database created.
#[derive(Debug, Default)]
pub struct Bootstrap {
    /// The operator token, when Herald generated it (shown once).
    pub generated_operator_token: Option<String>,
    /// The default account and its token, when this start created them.
    pub default_account: Option<(Account, String)>,
    /// The oldest account: the one a zero-configuration deployment uses.
    pub first_account_id: String,
    /// Webhooks that sign with an API token, as `(account id, webhook id)`:
    /// `/pa/set_webhook` stored the account's token so before bot tokens.
    /// They keep signing with it; the operator is told to move them.
    pub webhooks_keyed_by_api_tokens: Vec<(String, String)>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Installs the operator token (given, or generated when none exists)
    /// and creates a default account on an empty database.
    async fn bootstrap(&self, operator_token: Option<String>, now: Timestamp) -> StoreResult<Bootstrap>;

    /// Who a token (by its hash) belongs to.
    async fn authenticate(&self, token_hash: &str) -> StoreResult<Option<Principal>>;

    async fn create_account(&self, name: &str, token_hash: &str, now: Timestamp) -> StoreResult<Account>;
    /// Adds a Viber bot auth token (by its hash) to an account.
    async fn create_viber_bot_token(&self, account_id: &str, token_hash: &str, now: Timestamp) -> StoreResult<()>;
    async fn get_account(&self, account_id: &str) -> StoreResult<Option<Account>>;
    async fn set_strict_event_types(&self, account_id: &str, strict: bool) -> StoreResult<()>;

    async fn set_disable_after(&self, account_id: &str, seconds: u64) -> StoreResult<()>;

    /// Notes that a webhook's attempts have been failing since `since`,
    /// unless an earlier time is noted already; returns the time noted. It
    /// survives restarts, so that a window of days can be measured.
    async fn note_failing(&self, account_id: &str, webhook_id: &str, since: Timestamp) -> StoreResult<Timestamp>;
    /// A webhook's attempt succeeded after failing: no longer failing.
    async fn note_recovered(&self, account_id: &str, webhook_id: &str) -> StoreResult<()>;

    async fn create_webhook(&self, webhook: Webhook) -> StoreResult<()>;
    async fn list_webhooks(&self, account_id: &str) -> StoreResult<Vec<Webhook>>;
    async fn get_webhook(&self, account_id: &str, id: &str) -> StoreResult<Option<Webhook>>;
    /// Replaces a webhook's fields, if it is still as the caller read it
    /// (`read_at`, the `updated_at` it had): `Conflict` if it changed
    /// meanwhile (Herald disabled it, another update came first), so no
    /// update undoes another; `NotFound` if it is not the account's.
    async fn update_webhook(&self, webhook: Webhook, read_at: Timestamp) -> StoreResult<()>;
    /// Disables an enabled webhook on Herald's own account (its receiver
    /// is gone), saying why; false if it was not enabled. Its unfinished
    /// deliveries fail when next claimed.
    async fn disable_webhook(&self, account_id: &str, id: &str, reason: &str, now: Timestamp) -> StoreResult<bool>;
    /// Deletes a webhook; its unfinished deliveries fail when next claimed.
    async fn delete_webhook(&self, account_id: &str, id: &str, now: Timestamp) -> StoreResult<()>;

    /// Stores events and their deliveries in one durable commit. A known
    /// caller id returns the original event and creates nothing. A new
    /// delivery `admit` takes room for is handed over; on an error, every
    /// room taken has been given back.
    async fn ingest(
        &self,
        account_id: &str,
        events: Vec<NewEvent>,
        now: Timestamp,
        admit: std::sync::Arc<dyn Admit>,
    ) -> StoreResult<Ingested>;
    async fn get_event(&self, account_id: &str, id: &str) -> StoreResult<Option<Event>>;

    /// For each want, claims up to `limit` of that webhook's deliveries due
    /// at `now`, skipping those the engine holds, and tells when its next
    /// delivery not held falls due. A store shared by several nodes leases
    /// what it returns until `lease_until`; one node's SQLite file needs no
    /// lease beyond the engine's own list. Deliveries of a disabled or
    /// deleted webhook are failed instead of returned.
    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        wants: Vec<ClaimWant>,
    ) -> StoreResult<Vec<ClaimedBatch>>;
    /// Every webhook with unfinished deliveries and when the first falls due.
    async fn due_webhooks(&self) -> StoreResult<Vec<(String, Timestamp)>>;
    /// Records attempts and each delivery's next step, and hands back
    /// `put_off` deliveries (claimed but not sent) unchanged, in one commit.
    /// The records are shared so that a caller can try again after an
    /// `Unavailable` without copying them first.
    async fn record_attempts(
        &self,
        records: std::sync::Arc<Vec<AttemptRecord>>,
        put_off: Vec<DeliveryKey>,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Makes every leased delivery due at `now` (a single node's restart).
    async fn release_leases(&self, now: Timestamp) -> StoreResult<u64>;

    async fn list_deliveries(&self, account_id: &str, filter: DeliveryFilter) -> StoreResult<Vec<Delivery>>;
    async fn get_delivery(&self, account_id: &str, id: &str) -> StoreResult<Option<(Delivery, Vec<Attempt>)>>;
    /// Schedules a finished delivery for one more attempt at `now`.
    async fn retry_delivery(&self, account_id: &str, id: &str, now: Timestamp) -> StoreResult<Delivery>;

    /// Delivery counts by status (deliveries created in `[since, until)`)
    /// and attempt durations (attempts started then), per webhook.
    async fn delivery_stats(
        &self,
        account_id: &str,
        since: Timestamp,
        until: Timestamp,
        webhook_id: Option<String>,
    ) -> StoreResult<Vec<crate::stats::WebhookSample>>;
}

/// Opens the store a `--database` URL names: `sqlite://PATH`, optionally
/// with `?busy_timeout_ms=N`. Webhook secrets are kept as `at_rest` says
/// (sealed with its key, if it has one); commits are counted in `commits`.
pub fn open(
    url: &str,
    at_rest: crate::sealing::AtRest,
    commits: crate::metrics::CommitMetrics,
) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    if let Some((path, query)) = sqlite_parts(url) {
        let options = SqliteOptions::parse(query).map_err(|e| anyhow::anyhow!("database url `{url}`: {e}"))?;
        return Ok(std::sync::Arc::new(SqliteStore::open_with(std::path::Path::new(path), options, at_rest, commits)?));
    }
    anyhow::bail!("unsupported database url `{url}`: expected sqlite://PATH")
}

/// The file a `--database` URL names, for files kept beside it.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    sqlite_parts(url).map(|(path, _)| std::path::PathBuf::from(path))
}

/// A `sqlite://` URL's path and its query (empty when it has none).
fn sqlite_parts(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    Some(rest.split_once('?').unwrap_or((rest, "")))
}
