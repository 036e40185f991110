//! The `routee` profile (seed 003): the campaign status object delivered as
//! it is, unsigned (Routee's receivers allow-list the sender's addresses;
//! see `GET /v1/egress`), with a 2 s timeout and twelve retries over a day.

use super::{OutgoingRequest, ProfileSpec, SecretKind, push_default_user_agent, push_json_body};
use crate::model::DueDelivery;

pub(super) const SPEC: ProfileSpec =
    ProfileSpec { name: "routee", retry_preset: "routee", timeout_ms: 2_000, secret: SecretKind::Unsigned };

pub(super) fn render(due: &DueDelivery, request: &mut OutgoingRequest) {
    push_default_user_agent(request, super::USER_AGENT);
    push_json_body(request, due.payload.to_string());
}
