//! Accounts and tokens in PostgreSQL: the rows bootstrap and the account
//! verbs write, and the start-up check for webhooks that sign with an API
//! token.

use deadpool_postgres::GenericClient;

use crate::model::{Account, DEFAULT_DISABLE_AFTER_SECONDS, Timestamp, new_id};
use crate::sealing::AtRest;
use crate::signing;
use crate::store::tokens::API_TOKEN;
use crate::store::{StoreError, StoreResult};

pub(super) async fn insert_token(
    client: &impl GenericClient,
    hash: &str,
    account_id: Option<&str>,
    kind: &str,
    now: Timestamp,
) -> StoreResult<()> {
    client
        .execute(
            "INSERT INTO tokens (hash, account_id, created_at, kind) VALUES ($1, $2, $3, $4)",
            &[&hash, &account_id, &now.0, &kind],
        )
        .await?;
    Ok(())
}

pub(super) async fn insert_account(
    client: &impl GenericClient,
    name: &str,
    token_hash: &str,
    now: Timestamp,
) -> StoreResult<Account> {
    let account = Account {
        id: new_id("acc"),
        name: name.to_owned(),
        created_at: now,
        strict_event_types: false,
        disable_after_seconds: DEFAULT_DISABLE_AFTER_SECONDS,
    };
    client
        .execute(
            "INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)",
            &[&account.id, &account.name, &now.0],
        )
        .await?;
    insert_token(client, token_hash, Some(&account.id), API_TOKEN, now).await?;
    Ok(account)
}

/// Webhooks whose secret is an API token, as `(account id, webhook id)`.
pub(super) async fn webhooks_keyed_by_api_tokens(
    client: &impl GenericClient,
    at_rest: &AtRest,
) -> StoreResult<Vec<(String, String)>> {
    let rows =
        client.query("SELECT account_id, id, secret FROM webhooks WHERE NOT deleted AND secret <> ''", &[]).await?;
    let mut hashes = Vec::with_capacity(rows.len());
    for row in &rows {
        let (id, stored): (String, String) = (row.get(1), row.get(2));
        let secret = at_rest.load_webhook_secret(stored, &id, "secret").map_err(|e| StoreError::Internal(e.into()))?;
        hashes.push(signing::token_hash(&secret));
    }
    let api: std::collections::HashSet<String> = client
        .query("SELECT hash FROM tokens WHERE hash = ANY($1) AND kind = $2", &[&hashes, &API_TOKEN])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(rows.iter().zip(&hashes).filter(|(_, h)| api.contains(*h)).map(|(r, _)| (r.get(0), r.get(1))).collect())
}
