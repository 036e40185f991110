//! Webhook secrets at rest, the part every backend shares: at start, each
//! stored secret is checked against the key (a missing or other key
//! refuses the start before anything is sent), and with a key the plain
//! ones are sealed. A backend reads the rows, calls `check`, and writes
//! back what `sealed` gives; how it makes sure no plain copy lingers in its
//! files is its own business.

use crate::sealing::{AtRest, OpenError, webhook_context};

/// The `webhooks` columns that hold a signing secret.
pub(crate) const SECRET_COLUMNS: [&str; 2] = ["secret", "previous_secret"];

/// One webhook's secrets as stored, in `SECRET_COLUMNS` order.
pub(crate) struct StoredSecrets {
    pub id: String,
    pub values: [Option<String>; 2],
}

/// What the check found to seal.
pub(crate) struct Plain {
    /// The rows holding at least one plain secret.
    pub rows: Vec<StoredSecrets>,
    /// How many plain secrets they hold.
    pub n_secrets: usize,
}

/// Opens every stored secret (deleted webhooks' too: they are in the
/// database all the same); an error refuses the start and says what to do.
/// Without a key, plain secrets are warned about and left.
pub(crate) fn check(rows: Vec<StoredSecrets>, at_rest: &AtRest) -> anyhow::Result<Plain> {
    let mut plain = Plain { rows: Vec::new(), n_secrets: 0 };
    for row in rows {
        let mut has_plain = false;
        for (column, value) in SECRET_COLUMNS.iter().zip(&row.values) {
            let Some(value) = value.as_deref().filter(|v| !v.is_empty()) else { continue };
            match at_rest.load(value, &webhook_context(&row.id, column)) {
                Ok(_) if crate::sealing::is_sealed(value) => {}
                Ok(_) => {
                    has_plain = true;
                    plain.n_secrets += 1;
                }
                Err(err) => return Err(refusal(&row.id, column, err)),
            }
        }
        if has_plain {
            plain.rows.push(row);
        }
    }
    match at_rest.key() {
        None if plain.n_secrets > 0 => {
            // Why not at every keyless start: an empty database has nothing
            // to hide, and a warning that is always there is not read.
            tracing::warn!(
                secrets = plain.n_secrets,
                "webhook signing secrets are stored in the clear, readable by whoever can read the database: set \
                 HERALD_SECRET_KEY or --secret-key-file to store them encrypted"
            );
            plain.rows.clear();
        }
        None => {}
        Some(key) if plain.rows.is_empty() => tracing::info!(key = key.id(), "webhook secrets are stored encrypted"),
        Some(_) => {}
    }
    Ok(plain)
}

/// A row's secrets as they are to be stored: plain ones sealed.
pub(crate) fn sealed(row: &StoredSecrets, at_rest: &AtRest) -> [Option<String>; 2] {
    [0, 1].map(|i| {
        row.values[i].as_deref().map(|value| match crate::sealing::is_sealed(value) {
            true => value.to_owned(),
            false => at_rest.store(value, &webhook_context(&row.id, SECRET_COLUMNS[i])),
        })
    })
}

/// The start-up error for a secret that does not open, saying what to do.
fn refusal(webhook_id: &str, column: &str, err: OpenError) -> anyhow::Error {
    match err {
        OpenError::NoKey { sealed_with } => anyhow::anyhow!(
            "the database holds encrypted webhook secrets (key {sealed_with}) but no secret key is set: set \
             HERALD_SECRET_KEY or --secret-key-file to the key they were encrypted with"
        ),
        OpenError::OtherKey { sealed_with, key } => anyhow::anyhow!(
            "the secret key set (key {key}) is not the one the database's webhook secrets were encrypted with \
             (key {sealed_with}): set that key"
        ),
        OpenError::Damaged => anyhow::anyhow!(
            "webhook {webhook_id}'s {column} does not decrypt with the secret key: the database was altered, or \
             the value copied from another webhook"
        ),
    }
}
