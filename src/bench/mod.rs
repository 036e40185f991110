//! `herald bench`: measures the whole path on this machine. It starts a
//! real `herald serve` (fresh SQLite database, default durable settings) as
//! a child process per scenario, a loopback receiver and a load generator
//! in this process, and reports throughput, latency, and Herald's own CPU
//! time and peak memory. Speed is measured here, never asserted in tests.

mod load;
mod process;
mod receiver;
mod scenarios;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A reduced run, under a minute, for development.
    #[arg(long)]
    pub quick: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Run only these scenarios (repeat or separate with commas).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// A token run that only shows the instrument works (the test suite's).
    #[arg(long, hide = true)]
    pub smoke: bool,
}

/// How much work each scenario does.
pub struct Sizes {
    pub baseline: usize,
    pub ingest_single: usize,
    pub ingest_batch: usize,
    pub end_to_end: usize,
    pub latency_seconds: u64,
    pub latency_rate: u64,
    pub fan_out_events: usize,
    pub fan_out_webhooks: usize,
    pub failing_events: usize,
    pub backlog: usize,
    pub idle_seconds: u64,
}

impl Sizes {
    /// A tenth of `--quick`: figures mean nothing, every path runs.
    fn smoke() -> Sizes {
        let quick = Sizes::new(true);
        Sizes {
            baseline: quick.baseline / 10,
            ingest_single: quick.ingest_single / 10,
            ingest_batch: quick.ingest_batch / 10,
            end_to_end: quick.end_to_end / 10,
            latency_seconds: 1,
            latency_rate: 100,
            fan_out_events: quick.fan_out_events / 10,
            fan_out_webhooks: 10,
            failing_events: quick.failing_events / 10,
            backlog: quick.backlog / 10,
            idle_seconds: 1,
        }
    }

    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                baseline: 20_000,
                ingest_single: 10_000,
                ingest_batch: 50_000,
                end_to_end: 20_000,
                latency_seconds: 5,
                latency_rate: 1000,
                fan_out_events: 200,
                fan_out_webhooks: 100,
                failing_events: 2_000,
                backlog: 20_000,
                idle_seconds: 3,
            }
        } else {
            Sizes {
                baseline: 100_000,
                ingest_single: 50_000,
                ingest_batch: 500_000,
                end_to_end: 100_000,
                latency_seconds: 30,
                latency_rate: 1000,
                fan_out_events: 1000,
                fan_out_webhooks: 100,
                failing_events: 10_000,
                backlog: 1_000_000,
                idle_seconds: 10,
            }
        }
    }
}

/// One figure, with the bar it must reach where the project set one.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    pub name: &'static str,
    pub value: f64,
    /// `value >= bar` passes (or `<=` when `lower_is_better`).
    pub bar: Option<f64>,
    pub lower_is_better: bool,
}

impl Metric {
    pub fn new(name: &'static str, value: f64, at_least: Option<f64>) -> Metric {
        Metric { name, value, bar: at_least, lower_is_better: false }
    }

    pub fn at_most(name: &'static str, value: f64, bar: f64) -> Metric {
        Metric { name, value, bar: Some(bar), lower_is_better: true }
    }

    fn verdict(&self) -> &'static str {
        match self.bar {
            None => "",
            Some(bar)
                if (self.lower_is_better && self.value <= bar) || (!self.lower_is_better && self.value >= bar) =>
            {
                "pass"
            }
            Some(_) => "MISS",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: &'static str,
    pub metrics: Vec<Metric>,
    pub herald_cpu_seconds: Option<f64>,
    pub herald_peak_rss_mb: Option<f64>,
}

const SCENARIOS: &[&str] = &[
    "baseline",
    "ingest-single",
    "ingest-batch",
    "end-to-end",
    "latency",
    "fan-out",
    "failing-receiver",
    "scheduled-backlog",
];

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    crate::http_client::install_tls_provider();
    for name in &args.only {
        if !SCENARIOS.contains(&name.as_str()) {
            anyhow::bail!("unknown scenario `{name}` (known: {})", SCENARIOS.join(", "));
        }
    }
    let sizes = if args.smoke { Sizes::smoke() } else { Sizes::new(args.quick) };
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let mut results: Vec<ScenarioResult> = Vec::new();
    let mut baseline_rate = None;
    for name in SCENARIOS.iter().copied().filter(|n| wanted(n)) {
        let pb = ProgressBar::new_spinner();
        pb.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}").expect("a valid template"));
        pb.enable_steady_tick(Duration::from_millis(120));
        pb.set_message(name.to_owned());
        let result = match name {
            "baseline" => scenarios::baseline(&sizes, &pb).await?,
            "ingest-single" => scenarios::ingest_single(&sizes, &pb).await?,
            "ingest-batch" => scenarios::ingest_batch(&sizes, &pb).await?,
            "end-to-end" => scenarios::end_to_end(&sizes, &pb, baseline_rate).await?,
            "latency" => scenarios::latency(&sizes, &pb).await?,
            "fan-out" => scenarios::fan_out(&sizes, &pb).await?,
            "failing-receiver" => scenarios::failing_receiver(&sizes, &pb).await?,
            _ => scenarios::scheduled_backlog(&sizes, &pb).await?,
        };
        if name == "baseline" {
            baseline_rate = result.metrics.first().map(|m| m.value);
        }
        pb.finish_and_clear();
        eprintln!("{name}: done");
        results.push(result);
    }
    print_table(&results, args.quick);
    if let Some(path) = args.json {
        let report = serde_json::json!({
            "herald_version": env!("CARGO_PKG_VERSION"),
            "quick": args.quick,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "scenarios": results,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

fn print_table(results: &[ScenarioResult], quick: bool) {
    println!();
    println!(
        "herald bench{} on {} cores",
        if quick { " --quick" } else { "" },
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "{:<18} {:<34} {:>14} {:>10} {:>5} {:>9} {:>9}",
        "scenario", "metric", "value", "bar", "", "CPU s", "RSS MB"
    );
    for result in results {
        for (i, metric) in result.metrics.iter().enumerate() {
            let bar = metric
                .bar
                .map(|b| format!("{}{b}", if metric.lower_is_better { "<=" } else { ">=" }))
                .unwrap_or_default();
            let (cpu, rss) = if i == 0 {
                (
                    result.herald_cpu_seconds.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into()),
                    result.herald_peak_rss_mb.map(|r| format!("{r:.1}")).unwrap_or_else(|| "-".into()),
                )
            } else {
                (String::new(), String::new())
            };
            let scenario = if i == 0 { result.name } else { "" };
            println!(
                "{:<18} {:<34} {:>14} {:>10} {:>5} {:>9} {:>9}",
                scenario,
                metric.name,
                format_value(metric.value),
                bar,
                metric.verdict(),
                cpu,
                rss
            );
        }
    }
}

fn format_value(value: f64) -> String {
    if value >= 100.0 { format!("{value:.0}") } else { format!("{value:.3}") }
}
