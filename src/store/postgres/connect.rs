//! Reaching PostgreSQL: what a `postgres://` URL may set beyond the
//! driver's own parameters (`pool_size`, `schema`), the connection pool,
//! and which errors mean "the database is away" (`Unavailable`: ingest
//! answers 503 and the recorder tries again) rather than a bug.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;

use crate::store::StoreError;

/// Connections kept at most when the URL does not say.
pub(super) const DEFAULT_POOL_SIZE: usize = 16;

/// How long a caller waits for a connection, or for one to be made,
/// before its call fails `Unavailable`: long enough for a busy pool, short
/// enough that ingest answers 503 while the database is away.
const WAIT: Duration = Duration::from_secs(5);

/// A parsed `postgres://` URL.
pub(super) struct PgOptions {
    pub config: tokio_postgres::Config,
    pub pool_size: usize,
    /// The schema Herald keeps its tables in (created if missing); the
    /// server's default search path when `None`.
    pub schema: Option<String>,
}

impl PgOptions {
    /// `postgres://user:pass@host:port/db?pool_size=N&schema=NAME`; other
    /// parameters go to the driver (`connect_timeout`, `application_name` …).
    pub(super) fn parse(url: &str) -> anyhow::Result<PgOptions> {
        let mut parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("database url: {e}"))?;
        let (mut pool_size, mut schema) = (DEFAULT_POOL_SIZE, None);
        let mut rest = Vec::new();
        for (key, value) in parsed.query_pairs() {
            match &*key {
                "pool_size" => {
                    pool_size =
                        value.parse::<usize>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                            anyhow::anyhow!("pool_size must be a number from 1 to 1000, not `{value}`")
                        })?
                }
                "schema" => {
                    let valid = !value.is_empty()
                        && value.len() <= 63
                        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                        && !value.as_bytes()[0].is_ascii_digit()
                        && !value.starts_with("pg_");
                    if !valid {
                        anyhow::bail!(
                            "schema must be lower-case letters, digits and `_`, not starting with a digit or `pg_`, \
                             not `{value}`"
                        );
                    }
                    schema = Some(value.into_owned());
                }
                _ => rest.push((key.into_owned(), value.into_owned())),
            }
        }
        parsed.set_query(None);
        if !rest.is_empty() {
            parsed.query_pairs_mut().extend_pairs(rest);
        }
        let mut config: tokio_postgres::Config =
            parsed.as_str().parse().map_err(|e| anyhow::anyhow!("database url: {e}"))?;
        // A 202 means committed: whatever the server's default, commits
        // wait for the WAL to reach the disk.
        let mut options = config.get_options().unwrap_or("").to_owned();
        options.push_str(" -c synchronous_commit=on");
        if let Some(schema) = &schema {
            options.push_str(&format!(" -c search_path={schema}"));
        }
        config.options(options.trim_start());
        if config.get_application_name().is_none() {
            config.application_name("herald");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(WAIT);
        }
        config.keepalives_idle(Duration::from_secs(30));
        Ok(PgOptions { config, pool_size, schema })
    }

    /// The pool: connections made on demand, checked before reuse, and
    /// made again after the server went away.
    pub(super) fn pool(&self) -> anyhow::Result<Pool> {
        let manager = Manager::from_config(
            self.config.clone(),
            tokio_postgres::NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        Ok(Pool::builder(manager)
            .max_size(self.pool_size)
            .wait_timeout(Some(WAIT))
            .create_timeout(Some(WAIT))
            .recycle_timeout(Some(WAIT))
            .runtime(Runtime::Tokio1)
            .build()?)
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        classify(&err)
    }
}

impl From<PoolError> for StoreError {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::Backend(err) => classify(&err),
            PoolError::Closed => StoreError::Closed,
            PoolError::Timeout(_) => StoreError::Unavailable("postgresql: no connection could be had in time".into()),
            other => StoreError::Unavailable(format!("postgresql: {other}")),
        }
    }
}

/// `Unavailable` for what the server or the network causes and may clear
/// by itself (refused, lost, shut down, too many connections, out of
/// resources), `Conflict` for a unique key taken, `Internal` for the rest.
fn classify(err: &tokio_postgres::Error) -> StoreError {
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        let class = &code.code()[..2];
        if *code == SqlState::UNIQUE_VIOLATION {
            return StoreError::Conflict(format!("already exists: {}", db.message()));
        }
        // 08 connection, 53 resources, 57 operator intervention (shutdown,
        // cannot connect now), 58 system (I/O).
        if matches!(class, "08" | "53" | "57" | "58") {
            return StoreError::Unavailable(format!("postgresql: {}", db.message()));
        }
        return StoreError::Internal(anyhow::anyhow!("postgresql: {db}"));
    }
    let io = std::error::Error::source(err).is_some_and(|s| s.is::<std::io::Error>());
    if err.is_closed() || io || err.to_string().contains("connection") {
        return StoreError::Unavailable(format!("postgresql: {err}"));
    }
    StoreError::Internal(anyhow::anyhow!("postgresql: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn herald_parameters_are_taken_out_of_the_url() {
        let options =
            PgOptions::parse("postgres://u:p@127.0.0.1:5433/db?pool_size=4&schema=h1&application_name=x").unwrap();
        assert_eq!(options.pool_size, 4);
        assert_eq!(options.schema.as_deref(), Some("h1"));
        assert_eq!(options.config.get_dbname(), Some("db"));
        assert_eq!(options.config.get_application_name(), Some("x"));
        assert_eq!(options.config.get_options(), Some("-c synchronous_commit=on -c search_path=h1"));
        let default = PgOptions::parse("postgres://u@127.0.0.1/db").unwrap();
        assert_eq!(default.pool_size, DEFAULT_POOL_SIZE);
        assert_eq!(default.schema, None);
    }

    #[test]
    fn bad_parameters_are_refused() {
        for url in [
            "postgres://u@h/db?pool_size=0",
            "postgres://u@h/db?pool_size=many",
            "postgres://u@h/db?schema=Bad",
            "postgres://u@h/db?schema=a;drop",
            "postgres://u@h/db?schema=1a",
            "postgres://u@h/db?schema=pg_catalog",
        ] {
            assert!(PgOptions::parse(url).is_err(), "{url}");
        }
    }
}
