//! Tokens as every backend keeps them: by hash, with a kind, and a cache
//! of those seen valid. Tokens are never revoked while Herald runs, so a
//! hit needs no trip to the database.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{StoreError, StoreResult};
use crate::model::Principal;

/// The `tokens.kind` of API tokens (the operator's and accounts').
pub(crate) const API_TOKEN: &str = "api";
/// The `tokens.kind` of an account's Viber bot auth tokens.
pub(crate) const VIBER_BOT_TOKEN: &str = "viber-bot";

/// Who a stored token row (its account, none for the operator, and kind)
/// speaks for.
pub(crate) fn principal_of(account: Option<String>, kind: &str) -> StoreResult<Principal> {
    Ok(match (account, kind) {
        (None, API_TOKEN) => Principal::Operator,
        (Some(id), API_TOKEN) => Principal::Account(id),
        (Some(id), VIBER_BOT_TOKEN) => Principal::ViberBot(id),
        (account, kind) => {
            return Err(StoreError::Internal(anyhow::anyhow!(
                "token of kind `{kind}` for account {account:?} is not one herald knows"
            )));
        }
    })
}

/// Tokens remembered at most; past it the cache starts over.
const MAX_KNOWN_TOKENS: usize = 10_000;

/// Tokens seen valid, by hash, with who they are.
#[derive(Default)]
pub(crate) struct KnownTokens(Mutex<HashMap<String, Principal>>);

impl KnownTokens {
    pub(crate) fn get(&self, token_hash: &str) -> Option<Principal> {
        self.0.lock().unwrap().get(token_hash).cloned()
    }

    pub(crate) fn remember(&self, token_hash: &str, principal: &Principal) {
        let mut known = self.0.lock().unwrap();
        if known.len() >= MAX_KNOWN_TOKENS {
            known.clear();
        }
        known.insert(token_hash.to_owned(), principal.clone());
    }
}
