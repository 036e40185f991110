//! `herald deliveries list|show|retry`: the delivery log with the API's
//! filters and cursor paging (`--all` follows `next_cursor` to the end),
//! one delivery with every attempt, and a manual retry.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{Api, ClientArgs, print_json, segment};
use super::table::{Table, cut, line, print_details, text, time};
use crate::clock::{Clock, SystemClock};

#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    #[command(subcommand)]
    pub command: DeliveriesCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// The newest deliveries first, optionally filtered.
    List(ListArgs),
    /// One delivery with every attempt.
    Show { id: String },
    /// One more attempt for a failed (or succeeded) delivery.
    Retry { id: String },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// pending, retrying, success or failed.
    #[arg(long)]
    status: Option<String>,
    /// Only this webhook's deliveries.
    #[arg(long, visible_alias = "webhook-id")]
    webhook: Option<String>,
    /// Only this event type.
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Made at or after: RFC 3339, or a duration ago (30m, 2h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Made before: RFC 3339, or a duration ago (30m, 2h, 7d).
    #[arg(long)]
    until: Option<String>,
    /// Deliveries per page (1 to 250).
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Start after this cursor (a `next_cursor` from an earlier page).
    #[arg(long)]
    cursor: Option<String>,
    /// Follow `next_cursor` to the last page.
    #[arg(long)]
    all: bool,
}

pub async fn run(args: DeliveriesArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.client)?;
    let json = args.client.json;
    match args.command {
        DeliveriesCommand::List(list) => {
            let page = list_pages(&api, list).await?;
            match json {
                true => print_json(&page),
                false => print_list(&page),
            }
        }
        DeliveriesCommand::Show { id } => {
            let delivery = api.get(&format!("/v1/deliveries/{}", segment(&id))).await?;
            match json {
                true => print_json(&delivery),
                false => print_delivery(&delivery),
            }
        }
        DeliveriesCommand::Retry { id } => {
            let delivery = api.post(&format!("/v1/deliveries/{}/retry", segment(&id)), None).await?;
            match json {
                true => print_json(&delivery),
                false => line(format_args!(
                    "retrying delivery {}: now {}, attempt {} next",
                    text(&delivery["id"]),
                    text(&delivery["status"]),
                    delivery["n_attempts"].as_u64().unwrap_or(0) + 1
                )),
            }
        }
    }
    Ok(())
}

/// One page, or with `--all` every page from the cursor on, joined into
/// one `{data, next_cursor}` as the server shapes a page.
async fn list_pages(api: &Api, args: ListArgs) -> anyhow::Result<Value> {
    let now = SystemClock::new(1.0).now();
    let mut query = vec![("limit", args.limit.to_string())];
    query.extend(args.status.map(|s| ("status", s)));
    query.extend(args.webhook.map(|w| ("webhook_id", w)));
    query.extend(args.event_type.map(|t| ("type", t)));
    if let Some(since) = args.since {
        query.push(("since", super::when::parse(&since, now).map_err(|e| e.context("--since"))?));
    }
    if let Some(until) = args.until {
        query.push(("until", super::when::parse(&until, now).map_err(|e| e.context("--until"))?));
    }
    let mut cursor = args.cursor;
    let mut data = Vec::new();
    loop {
        let mut page_query = query.clone();
        page_query.extend(cursor.clone().map(|c| ("cursor", c)));
        let path = format!("/v1/deliveries?{}", serde_urlencoded::to_string(&page_query)?);
        let mut page = api.get(&path).await?;
        if let Some(rows) = page["data"].as_array_mut() {
            data.append(rows);
        }
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if !args.all || cursor.is_none() {
            break;
        }
    }
    Ok(json!({ "data": data, "next_cursor": cursor }))
}

fn print_list(page: &Value) {
    let deliveries = page["data"].as_array().map(Vec::as_slice).unwrap_or_default();
    if deliveries.is_empty() {
        line("no deliveries");
    } else {
        let mut table =
            Table::new(&["ID", "STATUS", "TYPE", "WEBHOOK", "ATTEMPTS", "CODE", "CREATED (UTC)", "LAST ERROR"]);
        for delivery in deliveries {
            table.row(vec![
                text(&delivery["id"]),
                text(&delivery["status"]),
                text(&delivery["event_type"]),
                text(&delivery["webhook_id"]),
                text(&delivery["n_attempts"]),
                text(&delivery["last_status_code"]),
                time(&delivery["created_at"]),
                text(&delivery["last_error"]),
            ]);
        }
        table.print();
    }
    // On stderr, so the table alone can be piped on.
    if let Some(cursor) = page["next_cursor"].as_str() {
        eprintln!("more: --cursor {cursor} (or --all)");
    }
}

fn print_delivery(delivery: &Value) {
    let mut rows = vec![
        ("id", text(&delivery["id"])),
        ("status", text(&delivery["status"])),
        ("event", format!("{} ({})", text(&delivery["event_id"]), text(&delivery["event_type"]))),
        ("webhook", format!("{} ({})", text(&delivery["webhook_id"]), text(&delivery["webhookUrl"]))),
        ("attempts", text(&delivery["n_attempts"])),
        ("created", time(&delivery["created_at"])),
        ("updated", time(&delivery["updated_at"])),
    ];
    if !delivery["next_attempt_at"].is_null() {
        rows.push(("next attempt", time(&delivery["next_attempt_at"])));
    }
    rows.push(("payload", cut(&delivery["payload"].to_string(), 200)));
    print_details(&rows);
    let attempts = delivery["attempts"].as_array().map(Vec::as_slice).unwrap_or_default();
    line("");
    if attempts.is_empty() {
        line("no attempts yet");
        return;
    }
    let mut table = Table::new(&["#", "STARTED (UTC)", "DURATION", "CODE", "ERROR", "RESPONSE"]);
    for (n, attempt) in attempts.iter().enumerate() {
        let error = match (&attempt["error_class"], &attempt["error_message"]) {
            (Value::Null, _) => "-".to_owned(),
            (class, Value::Null) => text(class),
            (class, message) => format!("{}: {}", text(class), text(message)),
        };
        table.row(vec![
            (n + 1).to_string(),
            time(&attempt["started_at"]),
            format!("{} ms", text(&attempt["duration_ms"])),
            text(&attempt["status_code"]),
            error,
            text(&attempt["response_body"]),
        ]);
    }
    table.print();
}
