//! The deployment seed 004 describes: one webhook, configured only by
//! environment (`WEBHOOK_URL`, `WEBHOOK_RETRY_ATTEMPTS`, `WEBHOOK_RETRY_DELAY`,
//! `WEBHOOK_SECRET`), delivering every event of the default account with
//! the `wwebjs` profile. Applied at every start, so changing a variable and
//! restarting is all it takes; no API call is needed.

use anyhow::Context;

use crate::api::validate_url;
use crate::config::EnvWebhook;
use crate::model::{TargetPolicy, Timestamp, Webhook};
use crate::profile::Profile;
use crate::retry::{Exponential, MAX_WAIT, RetryPolicy};
use crate::store::Store;

/// Marks the webhook this module manages.
pub const DESCRIPTION: &str = "configured by WEBHOOK_URL";

/// WEBHOOK_RETRY_ATTEMPTS tries in all, the first wait WEBHOOK_RETRY_DELAY
/// ms, doubling.
pub fn retry_policy(env: &EnvWebhook) -> RetryPolicy {
    RetryPolicy::Exponential(Exponential {
        first: env.first_delay_ms as f64 / 1000.0,
        factor: 2.0,
        cap: MAX_WAIT.as_secs_f64(),
        attempts: env.attempts,
        jitter: 0.0,
    })
}

/// Creates or updates the account's environment-configured webhook.
pub async fn apply(
    store: &dyn Store,
    account_id: &str,
    env: &EnvWebhook,
    targets: TargetPolicy,
    now: Timestamp,
) -> anyhow::Result<()> {
    validate_url(&env.url, targets).map_err(|e| anyhow::anyhow!("WEBHOOK_URL: {}", e.message))?;
    let retry = retry_policy(env);
    retry.validate().map_err(|e| anyhow::anyhow!("WEBHOOK_RETRY_DELAY / WEBHOOK_RETRY_ATTEMPTS: {e}"))?;
    let secret = env.secret.clone().unwrap_or_default();
    if !secret.is_empty() {
        Profile::Wwebjs.validate_secret(&secret).map_err(|e| anyhow::anyhow!("WEBHOOK_SECRET: {e}"))?;
    }
    let existing = store.list_webhooks(account_id).await?.into_iter().find(|w| w.description == DESCRIPTION);
    let webhook = Webhook {
        url: env.url.clone(),
        enabled: true,
        event_types: None,
        profile: Profile::Wwebjs,
        retry: Some(retry),
        secret,
        previous_secret: None,
        updated_at: now,
        // A restart with the variable set means the operator wants it on.
        disabled: None,
        ..existing.clone().unwrap_or_else(|| Webhook {
            description: DESCRIPTION.to_owned(),
            ..Webhook::new(account_id, "", Profile::Wwebjs, String::new(), now)
        })
    };
    match existing {
        Some(read) => store.update_webhook(webhook, read.updated_at).await,
        None => store.create_webhook(webhook).await,
    }
    .context("saving the WEBHOOK_URL webhook")?;
    tracing::info!(url = %env.url, attempts = env.attempts, "delivering every event to WEBHOOK_URL (wwebjs profile)");
    Ok(())
}
