//! `herald send`: ingest one event, as the platform's backend would.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};

use super::client::{Api, ClientArgs, print_json};
use super::table::line;

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The event type, e.g. `whatsapp:message:status`.
    #[arg(long = "type")]
    pub event_type: String,
    /// The payload: JSON text, or @FILE to read it from a file.
    #[arg(long)]
    pub payload: String,
    /// An id that makes the send idempotent.
    #[arg(long)]
    pub id: Option<String>,
    /// Send to this webhook only.
    #[arg(long)]
    pub webhook_id: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let text = match args.payload.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(PathBuf::from(path)).with_context(|| format!("reading {path}"))?,
        None => args.payload.clone(),
    };
    let payload: Value = serde_json::from_str(&text).context("--payload is not JSON")?;
    let mut event = json!({ "type": args.event_type, "payload": payload });
    if let Some(id) = args.id {
        event["id"] = Value::String(id);
    }
    if let Some(webhook_id) = args.webhook_id {
        event["webhook_id"] = Value::String(webhook_id);
    }
    let api = Api::new(&args.client)?;
    let outcome = api.post("/v1/events", Some(event)).await?;
    if args.client.json {
        print_json(&outcome);
    } else {
        print_outcome("event", &outcome);
    }
    Ok(())
}

/// `accepted event evt_…: 2 deliveries`, or that it was sent before.
pub fn print_outcome(what: &str, outcome: &Value) {
    let id = outcome["id"].as_str().unwrap_or("?");
    let n = outcome["deliveries"].as_u64().unwrap_or(0);
    let plural = if n == 1 { "delivery" } else { "deliveries" };
    if outcome["duplicate"] == true {
        line(format_args!("{what} {id} was sent before: nothing new ({n} {plural})"));
    } else {
        line(format_args!("accepted {what} {id}: {n} {plural}"));
    }
}
