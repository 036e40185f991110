//! What a `sqlite://PATH?…` URL may set beyond the path.

/// Settings a `sqlite://` URL may carry after `?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How long a write waits for a lock another process holds before it
    /// fails (and ingest answers 503).
    pub busy_timeout_ms: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { busy_timeout_ms: 10_000 }
    }
}

impl SqliteOptions {
    /// Reads `busy_timeout_ms=N` pairs joined by `&`.
    pub fn parse(query: &str) -> anyhow::Result<SqliteOptions> {
        let mut options = SqliteOptions::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("busy_timeout_ms", value)) => {
                    options.busy_timeout_ms = value
                        .parse()
                        .map_err(|_| anyhow::anyhow!("busy_timeout_ms: `{value}` is not a number of milliseconds"))?;
                }
                _ => anyhow::bail!("unknown sqlite option `{pair}` (known: busy_timeout_ms)"),
            }
        }
        Ok(options)
    }
}
