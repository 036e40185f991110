//! Webhook secrets at rest in PostgreSQL: the start-up pass (shared with
//! SQLite in `store::secrets`) over every webhook row, sealing plain
//! secrets when there is a key, in one transaction. PostgreSQL keeps a
//! row's earlier version until VACUUM reclaims it, so the pass vacuums the
//! table afterwards; the WAL and backups the operator keeps are theirs to
//! age out.

use crate::sealing::AtRest;
use crate::store::secrets::{StoredSecrets, check, sealed};

pub(super) async fn seal_at_start(client: &mut tokio_postgres::Client, at_rest: &AtRest) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    // Under a row lock: nodes starting at once seal each secret once.
    let rows = tx
        .query("SELECT id, secret, previous_secret FROM webhooks FOR UPDATE", &[])
        .await?
        .iter()
        .map(|r| StoredSecrets { id: r.get(0), values: [Some(r.get(1)), r.get(2)] })
        .collect();
    let plain = check(rows, at_rest)?;
    let Some(key) = at_rest.key().filter(|_| !plain.rows.is_empty()) else { return Ok(()) };
    let update = tx.prepare("UPDATE webhooks SET secret = $2, previous_secret = $3 WHERE id = $1").await?;
    for row in &plain.rows {
        let [secret, previous] = sealed(row, at_rest);
        tx.execute(&update, &[&row.id, &secret, &previous]).await?;
    }
    tx.commit().await?;
    client.batch_execute("VACUUM webhooks").await?;
    tracing::info!(
        secrets = plain.n_secrets,
        webhooks = plain.rows.len(),
        key = key.id(),
        "encrypted webhook secrets stored in the clear"
    );
    Ok(())
}
