//! `herald stats`: deliveries by status, the success rate and attempt
//! latency (p50, p99) over a window, for the account and per webhook.

use clap::Args;
use serde_json::Value;

use super::client::{Api, ClientArgs, print_json};
use super::table::{Table, line, text, time};
use crate::clock::{Clock, SystemClock};

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// From: RFC 3339, or a duration ago (30m, 2h, 7d) [server default: a day before --until].
    #[arg(long)]
    since: Option<String>,
    /// Until: RFC 3339, or a duration ago [server default: now].
    #[arg(long)]
    until: Option<String>,
    /// This webhook only.
    #[arg(long, visible_alias = "webhook-id")]
    webhook: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: StatsArgs) -> anyhow::Result<()> {
    let now = SystemClock::new(1.0).now();
    let mut query = Vec::new();
    if let Some(since) = &args.since {
        query.push(("since", super::when::parse(since, now).map_err(|e| e.context("--since"))?));
    }
    if let Some(until) = &args.until {
        query.push(("until", super::when::parse(until, now).map_err(|e| e.context("--until"))?));
    }
    query.extend(args.webhook.clone().map(|w| ("webhook_id", w)));
    let api = Api::new(&args.client)?;
    let stats = api.get(&format!("/v1/stats?{}", serde_urlencoded::to_string(&query)?)).await?;
    if args.client.json {
        print_json(&stats);
        return Ok(());
    }
    let urls = super::webhooks::urls_by_id(&api).await?;
    line(format_args!("from {} to {} (UTC)", time(&stats["since"]), time(&stats["until"])));
    line("");
    let mut table = Table::new(&[
        "WEBHOOK",
        "DELIVERIES",
        "PENDING",
        "RETRYING",
        "SUCCESS",
        "FAILED",
        "SUCCESS RATE",
        "P50",
        "P99",
        "URL",
    ]);
    let empty = Vec::new();
    for summary in stats["webhooks"].as_array().unwrap_or(&empty) {
        let id = text(&summary["webhook_id"]);
        // A deleted webhook's deliveries still count; it has no URL now.
        let url = urls.get(&id).cloned().unwrap_or_else(|| "(deleted)".to_owned());
        table.row(row(id, summary, url));
    }
    table.row(row("all".to_owned(), &stats["overall"], String::new()));
    table.print();
    Ok(())
}

fn row(name: String, summary: &Value, url: String) -> Vec<String> {
    let by_status = &summary["by_status"];
    let rate = match summary["success_rate"].as_f64() {
        Some(rate) => format!("{:.1} %", rate * 100.0),
        None => "-".to_owned(),
    };
    let latency = |p: &str| match summary["latency_ms"][p].as_u64() {
        Some(ms) => format!("{ms} ms"),
        None => "-".to_owned(),
    };
    vec![
        name,
        text(&summary["deliveries"]),
        text(&by_status["pending"]),
        text(&by_status["retrying"]),
        text(&by_status["success"]),
        text(&by_status["failed"]),
        rate,
        latency("p50"),
        latency("p99"),
        url,
    ]
}
