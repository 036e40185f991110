//! Due notices between nodes: `NOTIFY herald_due` when deliveries become
//! due that the notifying node does not hold (ingest's un-handed
//! deliveries, a manual retry, leases handed back), sent by PostgreSQL when
//! the transaction commits; and the `LISTEN` side, one connection outside
//! the pool that feeds every notice from another node to the engine. It
//! reconnects by itself, and after each (re)connection reports every
//! webhook with unfinished deliveries, which covers what it missed while
//! away.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

use crate::model::Timestamp;
use crate::store::{DueNotice, StoreResult};

/// The channel every node listens on.
const CHANNEL: &str = "herald_due";

/// The longest wait between attempts to connect again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Tells the other nodes, on commit, that `webhook_ids` have deliveries due
/// at `at` that no node holds. `from` is the telling store's own id (one
/// store handle is one node), so that its own listener skips the notice.
pub(super) async fn notify_due(
    client: &impl GenericClient,
    webhook_ids: Vec<String>,
    at: Timestamp,
    from: &str,
) -> StoreResult<()> {
    notify_due_at(client, webhook_ids.into_iter().map(|w| (w, at.0)).collect(), from).await
}

/// `notify_due` with a due time per webhook. The payload is
/// `webhook_id due_ms from`.
pub(super) async fn notify_due_at(client: &impl GenericClient, due: Vec<(String, i64)>, from: &str) -> StoreResult<()> {
    if due.is_empty() {
        return Ok(());
    }
    let payloads: Vec<String> = due.iter().map(|(webhook_id, at)| format!("{webhook_id} {at} {from}")).collect();
    let notify = client.prepare_cached("SELECT pg_notify($1, p) FROM UNNEST($2::text[]) AS p").await?;
    client.execute(&notify, &[&CHANNEL, &payloads]).await?;
    Ok(())
}

/// A notice's payload, unless it is this store's own (or not Herald's).
fn parse(payload: &str, own: &str) -> Option<DueNotice> {
    let mut parts = payload.split(' ');
    let (webhook_id, at, from) = (parts.next()?, parts.next()?.parse().ok()?, parts.next()?);
    (from != own).then(|| DueNotice { webhook_id: webhook_id.to_owned(), at: Timestamp(at) })
}

/// Listens until `stop` is cancelled or the receiver is dropped.
pub(super) fn listen(
    config: tokio_postgres::Config,
    own: String,
    stop: CancellationToken,
) -> mpsc::UnboundedReceiver<DueNotice> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let outcome = tokio::select! {
                _ = stop.cancelled() => return,
                _ = tx.closed() => return,
                outcome = listen_once(&config, &own, &tx) => outcome,
            };
            match outcome {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(err) => tracing::warn!(error = %err, "postgresql: the due-notice listener lost its connection"),
            }
            // Network bounds, not Herald's schedule: how soon to try again.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
    rx
}

/// One connection's life: LISTEN, report what is due (what may have been
/// missed), then pass on notices until the connection ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    own: &str,
    tx: &mpsc::UnboundedSender<DueNotice>,
) -> anyhow::Result<()> {
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    let (messages_tx, mut messages) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if messages_tx.send(n.payload().to_owned()).is_err() {
                        return Ok(());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err),
                None => return Ok(()),
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    let rows = client.query(super::claims::DUE_WEBHOOKS, &[&None::<i64>]).await?;
    for row in rows {
        let _ = tx.send(DueNotice { webhook_id: row.get(0), at: Timestamp(row.get(1)) });
    }
    while let Some(payload) = messages.recv().await {
        if let Some(notice) = parse(&payload, own) {
            let _ = tx.send(notice);
        }
    }
    drop(client);
    driver.await??;
    anyhow::bail!("the connection closed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_names_its_webhook_and_time_and_a_node_ignores_its_own() {
        let me = "node_a";
        assert_eq!(
            parse("wh_1 1700000000000 node_b", me),
            Some(DueNotice { webhook_id: "wh_1".into(), at: Timestamp(1_700_000_000_000) })
        );
        assert_eq!(parse("wh_1 1700000000000 node_a", me), None);
        assert_eq!(parse("wh_1 soon node_b", me), None);
        assert_eq!(parse("", me), None);
    }
}
