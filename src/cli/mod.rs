//! The subcommands of the `herald` binary: `serve` runs the gateway;
//! `listen` is a local receiver; `send`, `webhooks`, `deliveries` and
//! `stats` are API clients for the people who run it (tables by default,
//! `--json` for scripts); `bench` measures. `dotenv` reads `.env` before
//! any of them.

mod client;
mod deliveries;
pub mod dotenv;
mod listen;
mod send;
mod stats;
mod table;
mod webhooks;
mod when;

use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::app::Application;
use crate::clock::SystemClock;
use crate::config::{ServeArgs, ServeConfig};

pub use client::ClientArgs;
pub use listen::ListenArgs;

#[derive(Debug, Parser)]
#[command(name = "herald", version, about = "Self-hosted webhook delivery gateway")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: the HTTP API and the delivery engine.
    Serve(ServeArgs),
    /// Run a local receiver that prints each webhook and checks its signature.
    Listen(ListenArgs),
    /// Send one event to the gateway.
    Send(send::SendArgs),
    /// Manage webhooks.
    Webhooks(webhooks::WebhooksArgs),
    /// Read the delivery log and retry deliveries.
    Deliveries(deliveries::DeliveriesArgs),
    /// Deliveries by status, success rate and latency, overall and per webhook.
    Stats(stats::StatsArgs),
    /// Measure throughput, latency, CPU and memory on this machine.
    Bench(crate::bench::BenchArgs),
}

pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HERALD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Listen(args) => listen::run(args).await,
        Command::Send(args) => send::run(args).await,
        Command::Webhooks(args) => webhooks::run(args).await,
        Command::Deliveries(args) => deliveries::run(args).await,
        Command::Stats(args) => stats::run(args).await,
        Command::Bench(args) => crate::bench::run(args).await,
    }
}

async fn serve(mut args: ServeArgs) -> anyhow::Result<()> {
    args.secret_key = crate::config::secret_key_from_env();
    let config = ServeConfig::from_args(args)?;
    // Before anything opens descriptors, and before the listener reads the
    // limit to size its share.
    match crate::listener::raise_open_file_limit() {
        Ok(limit) => tracing::info!(limit, "open-file limit"),
        Err(err) => tracing::warn!(error = %err, "could not raise the open-file limit"),
    }
    let clock = Arc::new(SystemClock::new(config.time_scale));
    let app = Application::build(config.clone(), clock).await?;
    let addr = app.local_addr();
    println!("herald {} listening on http://{addr}", env!("CARGO_PKG_VERSION"));
    if let Some(metrics) = app.metrics_addr() {
        println!("metrics (no token) on http://{metrics}/metrics");
    }
    if let Some(token) = &app.bootstrap.generated_operator_token {
        println!("operator token (shown once; it creates accounts): {token}");
    }
    if let Some((account, _)) = &app.bootstrap.default_account {
        println!("created account {} (\"default\"); `herald send` and `herald webhooks` find its token", account.id);
    }
    if config.allow_private_targets {
        println!("private targets allowed: webhooks may point at loopback and private addresses");
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    app.run(shutdown).await
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down: finishing attempts in flight");
    shutdown.cancel();
}
