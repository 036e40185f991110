//! The store: every durable fact Herald keeps, behind one trait of domain
//! verbs. Only `store/` contains SQL. The SQLite implementation is the
//! default; the PostgreSQL one (`postgres/`) implements the same trait for
//! several nodes on one database. What both keep alike lives beside them:
//! `values` (columns), `tokens`, `secrets` (the start-up pass at rest).

mod postgres;
mod secrets;
mod sqlite;
mod tokens;
mod values;

/// Maps and sets keyed by ids on the hot path: foldhash, not SipHash.
/// Ids are ours (ULIDs and webhook ids), so flooding needs no defence.
pub type IdMap<V> = std::collections::HashMap<String, V, foldhash::fast::RandomState>;
pub type IdSet = std::collections::HashSet<String, foldhash::fast::RandomState>;

use async_trait::async_trait;

use crate::model::{
    Account, Attempt, AttemptRecord, Delivery, DeliveryFilter, DeliveryKey, DueDelivery, Event, IngestOutcome,
    NewEvent, NodeId, Principal, Timestamp, Webhook,
};

pub use postgres::PgStore;
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

impl From<crate::fanout::Refusal> for StoreError {
    fn from(refusal: crate::fanout::Refusal) -> Self {
        match refusal {
            crate::fanout::Refusal::UnknownType(message) => StoreError::Invalid(message),
            crate::fanout::Refusal::NoSuchWebhook(what) => StoreError::NotFound(what),
        }
    }
}

/// A node's hold on deliveries: `node` may send them until `until`; past
/// it, another node may claim them. A node renews what it still works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub node: NodeId,
    pub until: Timestamp,
}

/// What the engine asks one claim for, per webhook.
#[derive(Debug, Clone)]
pub struct ClaimWant {
    pub webhook_id: String,
    pub limit: usize,
}

/// What one claim took for one webhook.
#[derive(Debug)]
pub struct ClaimedBatch {
    pub webhook_id: String,
    pub deliveries: Vec<DueDelivery>,
    /// When the webhook's next delivery that no node holds falls due, if it
    /// has one.
    pub next_due: Option<Timestamp>,
    /// The webhook's circuit breaker is open on some node until then: every
    /// node leaves the receiver alone until that time.
    pub circuit_open_until: Option<Timestamp>,
}

/// Room to hand fresh deliveries straight to the engine, by webhook: how
/// many ingest may write already leased to the ingesting node (they skip
/// the claim). Ingest answers what it handed and the room it left unused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandOver {
    pub per_webhook: IdMap<usize>,
}

impl HandOver {
    pub fn is_empty(&self) -> bool {
        self.per_webhook.is_empty()
    }

    /// Takes room for one delivery of `webhook_id`, if any is left.
    pub fn take(&mut self, webhook_id: &str) -> bool {
        match self.per_webhook.get_mut(webhook_id) {
            Some(free) if *free > 0 => {
                *free -= 1;
                true
            }
            _ => false,
        }
    }
}

/// What one ingest committed.
#[derive(Debug, Default)]
pub struct Ingested {
    pub outcomes: Vec<IngestOutcome>,
    /// New deliveries handed to the engine (leased to its node as written).
    pub handed: Vec<DueDelivery>,
    /// The room offered and not used.
    pub unused: HandOver,
}

/// "Webhook W has a delivery due at T that no node holds": how a store
/// shared by several nodes tells each engine of work another node made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueNotice {
    pub webhook_id: String,
    pub at: Timestamp,
}

/// The nodes sharing a store, as one node sees them at its heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterView {
    /// Nodes whose heartbeat is current, this one included.
    pub nodes: usize,
    /// This node's place among them (0-based, by node id): it decides the
    /// node's share of limits that hold for the whole cluster.
    pub rank: usize,
}

impl ClusterView {
    pub const ALONE: ClusterView = ClusterView { nodes: 1, rank: 0 };

    /// This node's share of a limit that holds across the cluster: the
    /// shares of all nodes add up to `limit`, and a node whose share is
    /// nothing leaves that work to the others.
    pub fn share(&self, limit: usize) -> usize {
        let nodes = self.nodes.max(1);
        limit / nodes + usize::from(self.rank < limit % nodes)
    }
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
    /// delivery whose webhook has `room` left is written leased to `lease`
    /// and handed over; the others are due now, for any node to claim.
    /// On an error, nothing was written and all the room is unused.
    async fn ingest(
        &self,
        account_id: &str,
        events: Vec<NewEvent>,
        now: Timestamp,
        room: HandOver,
        lease: &Lease,
    ) -> StoreResult<Ingested>;
    async fn get_event(&self, account_id: &str, id: &str) -> StoreResult<Option<Event>>;

    /// For each want, claims up to `limit` of that webhook's deliveries due
    /// at `now` that no node holds (or whose lease ran out), leasing them to
    /// `lease`, and tells when its next delivery no node holds falls due.
    /// Deliveries of a disabled or deleted webhook are failed instead of
    /// returned.
    async fn claim_due(&self, now: Timestamp, lease: &Lease, wants: Vec<ClaimWant>) -> StoreResult<Vec<ClaimedBatch>>;
    /// Extends `lease` to the deliveries named that its node still holds;
    /// answers those it no longer holds (its lease ran out and another node
    /// claimed them, or they were finished).
    async fn renew_leases(&self, lease: &Lease, deliveries: Vec<DeliveryKey>) -> StoreResult<Vec<DeliveryKey>>;
    /// Every webhook with unfinished deliveries that no node holds at `now`,
    /// and when the first falls due.
    async fn due_webhooks(&self, now: Timestamp) -> StoreResult<Vec<(String, Timestamp)>>;
    /// Records attempts and each delivery's next step, and hands back
    /// `put_off` deliveries (claimed but not sent) unchanged, in one commit,
    /// for the deliveries that `node` holds; answers those it did not hold
    /// (their records were not written: another node has them now). The
    /// records are shared so that a caller can try again after an
    /// `Unavailable` without copying them first.
    async fn record_attempts(
        &self,
        node: &NodeId,
        records: std::sync::Arc<Vec<AttemptRecord>>,
        put_off: Vec<DeliveryKey>,
        now: Timestamp,
    ) -> StoreResult<Vec<DeliveryKey>>;
    /// Hands back every delivery `node` holds, due at once for any node (a
    /// graceful shutdown). A store one node owns hands back every lease, so
    /// that a start resumes what the last run left unfinished.
    async fn release_leases(&self, node: &NodeId, now: Timestamp) -> StoreResult<u64>;
    /// Notices of deliveries that other nodes made due, for a store shared
    /// by several nodes: taken once, by the engine. `None` for a store one
    /// node owns (its engine learns of all work in process).
    fn due_notices(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<DueNotice>> {
        None
    }
    /// Marks `node` alive until `until` and answers the nodes alive at
    /// `now`. A store one node owns has no others.
    async fn heartbeat(&self, _node: &NodeId, _now: Timestamp, _until: Timestamp) -> StoreResult<ClusterView> {
        Ok(ClusterView::ALONE)
    }
    /// Shares a webhook's circuit breaker with every node: open until the
    /// time given, or closed (`None`). A store one node owns keeps nothing.
    async fn set_circuit(&self, _webhook_id: &str, _open_until: Option<Timestamp>) -> StoreResult<()> {
        Ok(())
    }
    /// Whether several nodes may share this store (so leases, notices and
    /// heartbeats matter).
    fn is_shared(&self) -> bool {
        false
    }

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
/// with `?busy_timeout_ms=N`, or `postgres://user:pass@host:port/db`,
/// optionally with `?pool_size=N` (default 16) and `&schema=NAME` (created
/// if missing). Webhook secrets are kept as `at_rest` says (sealed with its
/// key, if it has one); the hot writes' commits are counted in `commits`.
pub async fn open(
    url: &str,
    at_rest: crate::sealing::AtRest,
    commits: crate::metrics::CommitMetrics,
) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    if let Some((path, query)) = sqlite_parts(url) {
        let options = SqliteOptions::parse(query).map_err(|e| anyhow::anyhow!("database url `{url}`: {e}"))?;
        return Ok(std::sync::Arc::new(SqliteStore::open_with(std::path::Path::new(path), options, at_rest, commits)?));
    }
    if is_postgres(url) {
        return Ok(std::sync::Arc::new(PgStore::open(url, at_rest).await?.with_commit_metrics(commits)));
    }
    anyhow::bail!("unsupported database url `{url}`: expected sqlite://PATH or postgres://USER@HOST:PORT/DB")
}

/// Whether a `--database` URL names a PostgreSQL database.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Where the local credentials file of a `--database` URL lives: beside an
/// SQLite file, or in the working directory for a PostgreSQL database
/// (where `herald serve` runs, and so where the CLI beside it looks).
pub fn credentials_path(url: &str) -> Option<std::path::PathBuf> {
    match sqlite_path(url) {
        Some(db) => Some(crate::credentials::path_for_database(&db)),
        None if is_postgres(url) => Some(std::path::PathBuf::from("herald.credentials.json")),
        None => None,
    }
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
