//! `GET /v1/egress`: the addresses Herald's deliveries leave from, for
//! receivers that allow-list their senders (Routee's callbacks, seed 003).

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{AppState, Caller};
use crate::error::ApiError;

pub async fn get(State(state): State<AppState>, Caller(_): Caller) -> Result<Json<Value>, ApiError> {
    let addresses: Vec<IpAddr> = match state.bind_address {
        Some(bound) => vec![bound],
        None => if_addrs::get_if_addrs()
            .map(|interfaces| interfaces.into_iter().filter(|i| !i.is_loopback()).map(|i| i.ip()).collect())
            .unwrap_or_default(),
    };
    Ok(Json(json!({
        "bind_address": state.bind_address,
        "addresses": addresses,
        "note": "behind NAT, the public address is the gateway's; allow-list that one",
    })))
}
