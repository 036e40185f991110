//! `GET /v1/egress`: the addresses Herald's deliveries leave from, for
//! receivers that allow-list their senders (Routee's callbacks, seed 003).

use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::{AppState, Caller};
use crate::error::{ApiError, ErrorBody};

/// The addresses deliveries leave from.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Egress {
    /// `--bind-address`, when set.
    #[schema(value_type = Option<String>)]
    bind_address: Option<IpAddr>,
    /// That address, or else every non-loopback interface's.
    #[schema(value_type = Vec<String>)]
    addresses: Vec<IpAddr>,
    note: &'static str,
}

#[utoipa::path(
    get,
    path = "/egress",
    tag = "operations",
    security(("bearer" = [])),
    responses((status = 200, body = Egress), (status = "default", description = "an error", body = ErrorBody))
)]
pub async fn get(State(state): State<AppState>, Caller(_): Caller) -> Result<Json<Egress>, ApiError> {
    let addresses: Vec<IpAddr> = match state.bind_address {
        Some(bound) => vec![bound],
        None => if_addrs::get_if_addrs()
            .map(|interfaces| interfaces.into_iter().filter(|i| !i.is_loopback()).map(|i| i.ip()).collect())
            .unwrap_or_default(),
    };
    Ok(Json(Egress {
        bind_address: state.bind_address,
        addresses,
        note: "behind NAT, the public address is the gateway's; allow-list that one",
    }))
}
