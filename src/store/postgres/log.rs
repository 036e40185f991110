//! The delivery log's reads on PostgreSQL: a page of an account's
//! deliveries under a filter, and the counts and attempt durations the
//! stats summarise. As in SQLite, both are ranges of the deliveries keyed
//! by (account, id): ids are ULIDs compared bytewise, so a time range is an
//! id range.

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use super::attempts::ATTEMPT_DURATIONS;
use super::rows::{DELIVERY_COLUMNS, DELIVERY_FROM, delivery_from_row};
use crate::model::{Delivery, DeliveryFilter, Timestamp};
use crate::stats::{Samples, WebhookSample};
use crate::store::StoreResult;
use crate::store::values::id_at;

/// One page of an account's deliveries, newest first.
pub(super) async fn list(
    client: &impl GenericClient,
    account_id: &str,
    filter: DeliveryFilter,
) -> StoreResult<Vec<Delivery>> {
    let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} WHERE d.account_id = $1");
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(account_id.to_owned())];
    let mut condition = |clause: &str, value: Box<dyn ToSql + Sync + Send>| {
        args.push(value);
        sql.push_str(&clause.replace('?', &format!("${}", args.len())));
    };
    if let Some(status) = filter.status {
        condition(" AND d.status = ?", Box::new(status.as_str().to_owned()));
    }
    if let Some(webhook_id) = filter.webhook_id {
        condition(" AND d.webhook_id = ?", Box::new(webhook_id));
    }
    if let Some(event_type) = filter.event_type {
        condition(" AND d.event_type = ?", Box::new(event_type));
    }
    if let Some(since) = filter.since {
        condition(" AND d.id >= ?", Box::new(id_at("dlv", since)));
    }
    if let Some(until) = filter.until {
        condition(" AND d.id < ?", Box::new(id_at("dlv", until)));
    }
    if let Some(before) = filter.before_id {
        condition(" AND d.id < ?", Box::new(before));
    }
    condition(" ORDER BY d.id DESC LIMIT ?", Box::new(filter.limit as i64));
    let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| &**a as &(dyn ToSql + Sync)).collect();
    client.query(&sql, &params).await?.iter().map(delivery_from_row).collect()
}

/// Delivery counts by webhook and status (deliveries created in
/// `[since, until)`) and the durations of attempts started then.
pub(super) async fn stats(
    client: &impl GenericClient,
    account_id: &str,
    since: Timestamp,
    until: Timestamp,
    webhook_id: Option<&str>,
) -> StoreResult<Vec<WebhookSample>> {
    let mut samples = Samples::default();
    let (from, to) = (id_at("dlv", since), id_at("dlv", until));
    let counts = client
        .prepare_cached(
            "SELECT webhook_id, status, COUNT(*) FROM deliveries WHERE account_id = $1 AND id >= $2 \
             AND id < $3 AND ($4::text IS NULL OR webhook_id = $4) GROUP BY webhook_id, status",
        )
        .await?;
    for row in client.query(&counts, &[&account_id, &from, &to, &webhook_id]).await? {
        let status: String = row.try_get(1)?;
        samples.add_count(row.try_get(0)?, &status, row.try_get(2)?);
    }
    let durations = client.prepare_cached(ATTEMPT_DURATIONS).await?;
    for row in client.query(&durations, &[&account_id, &from, &to, &webhook_id]).await? {
        samples.add_duration(row.try_get(0)?, row.try_get(1)?);
    }
    Ok(samples.into_vec())
}
