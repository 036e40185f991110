//! Webhook secrets at rest in the SQLite file: the columns they live in and
//! the start-up pass. With a key, the pass first opens every sealed secret
//! (so a missing or wrong key refuses the start before anything is sent or
//! written), then seals every plain one in batches, with `secure_delete` on
//! so the plain cells are zeroed, rebuilds the table so no free space in
//! its pages keeps an older one, and truncates the WAL so no old frame
//! does. Without a key, a sealed secret refuses the start: Herald
//! would otherwise sign with a ciphertext, or not at all.

use anyhow::Context;
use rusqlite::{Connection, params};

use crate::sealing::AtRest;
use crate::store::secrets::{StoredSecrets, check, sealed};

/// Rows sealed per transaction at start.
const BATCH: usize = 256;

/// Checks every stored secret against `at_rest` and, with a key, seals the
/// plain ones. Every webhook row counts, deleted ones too: their secrets
/// are in the file all the same.
pub(super) fn seal_at_start(conn: &mut Connection, at_rest: &AtRest) -> anyhow::Result<()> {
    let rows = {
        let mut stmt = conn.prepare("SELECT id, secret, previous_secret FROM webhooks")?;
        let rows = stmt.query_map([], |r| Ok(StoredSecrets { id: r.get(0)?, values: [r.get(1)?, r.get(2)?] }))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let plain = check(rows, at_rest)?;
    let (Some(key), false) = (at_rest.key(), plain.rows.is_empty()) else { return Ok(()) };
    let n_plain = plain.n_secrets;
    let plain = plain.rows;
    // Zeroes the cells the plain secrets leave, in the pages and in the
    // freelist, rather than leaving them as free space.
    conn.execute_batch("PRAGMA secure_delete = ON")?;
    for batch in plain.chunks(BATCH) {
        let tx = conn.transaction()?;
        {
            let mut update =
                tx.prepare_cached("UPDATE webhooks SET secret = ?2, previous_secret = ?3 WHERE id = ?1")?;
            for row in batch {
                let [secret, previous] = sealed(row, at_rest);
                update.execute(params![row.id, secret, previous])?;
            }
        }
        tx.commit().context("sealing webhook secrets")?;
    }
    // A row rewritten in place can leave an earlier plain value (a secret
    // rotated away before the key was set) in its page's free space.
    // Emptying the table with secure_delete on zeroes every page it had;
    // the table is small beside the deliveries, so rebuilding it is cheap.
    let tx = conn.transaction()?;
    tx.execute_batch(
        "CREATE TEMP TABLE webhooks_resealed AS SELECT * FROM webhooks;
         DELETE FROM webhooks;
         INSERT INTO webhooks SELECT * FROM temp.webhooks_resealed;
         DROP TABLE temp.webhooks_resealed;",
    )?;
    tx.commit().context("rewriting the webhooks table")?;
    conn.execute_batch("PRAGMA secure_delete = OFF")?;
    // The WAL still holds the pages as they were; moving what it has into
    // the main file and truncating it leaves the plain values nowhere.
    let busy: bool =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).context("checkpointing after sealing")?;
    if busy {
        // Another process holds the database open: SQLite moves the pages
        // over in a later checkpoint instead.
        tracing::warn!("the wal could not be truncated after sealing: plain secrets stay in it until a checkpoint");
    }
    tracing::info!(
        secrets = n_plain,
        webhooks = plain.len(),
        key = key.id(),
        "encrypted webhook secrets stored in the clear"
    );
    Ok(())
}
