//! What the nodes sharing one database tell each other beyond deliveries:
//! heartbeats (who is alive, so that a limit that holds for the cluster
//! can be shared out) and each webhook's circuit breaker (so that a
//! receiver one node found failing is left alone by all).

use deadpool_postgres::GenericClient;

use crate::model::{NodeId, Timestamp};
use crate::store::{ClusterView, StoreResult};

/// Marks `node` alive until `until`, forgets nodes long gone, and answers
/// the nodes alive at `now` and this one's place among them.
pub(super) async fn heartbeat(
    client: &impl GenericClient,
    node: &NodeId,
    now: Timestamp,
    until: Timestamp,
) -> StoreResult<ClusterView> {
    let beat = client
        .prepare_cached(
            "INSERT INTO nodes (id, alive_until) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET alive_until = EXCLUDED.alive_until",
        )
        .await?;
    client.execute(&beat, &[&node.0, &until.0]).await?;
    // A node whose heartbeat lapsed a day ago is not coming back as itself
    // (node ids are new at every start).
    client.execute("DELETE FROM nodes WHERE alive_until < $1", &[&(now.0 - 86_400_000)]).await?;
    let alive = client.prepare_cached("SELECT id FROM nodes WHERE alive_until >= $1 ORDER BY id").await?;
    let ids: Vec<String> = client.query(&alive, &[&now.0]).await?.iter().map(|r| r.get(0)).collect();
    let rank = ids.iter().position(|id| *id == node.0).unwrap_or(0);
    Ok(ClusterView { nodes: ids.len().max(1), rank })
}

/// Shares a webhook's breaker: open until the time given, or closed.
pub(super) async fn set_circuit(
    client: &impl GenericClient,
    webhook_id: &str,
    open_until: Option<Timestamp>,
) -> StoreResult<()> {
    let set = client.prepare_cached("UPDATE webhooks SET circuit_open_until = $2 WHERE id = $1").await?;
    client.execute(&set, &[&webhook_id, &open_until.map(|t| t.0)]).await?;
    Ok(())
}
