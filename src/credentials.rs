//! The local credentials file: written beside the SQLite database on first
//! start, so that `herald send` and friends on the same machine find the
//! server and the default account's token without any copying. Mode 0600.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Credentials {
    /// Where the API was last listening.
    pub server: String,
    pub account_id: String,
    pub token: String,
    /// Only when Herald generated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_token: Option<String>,
}

/// `herald.db` → `herald.credentials.json`.
pub fn path_for_database(db_path: &Path) -> PathBuf {
    db_path.with_extension("credentials.json")
}

pub fn load(path: &Path) -> anyhow::Result<Credentials> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

pub fn save(path: &Path, credentials: &Credentials) -> anyhow::Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(credentials)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    Ok(())
}
