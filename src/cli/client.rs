//! The CLI's side of the API: `send`, `webhooks …` and `deliveries …`. The
//! server and token come from flags, `HERALD_URL` / `HERALD_TOKEN`, or the
//! credentials file beside the local database.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::config::DEFAULT_DATABASE;
use crate::credentials;
use crate::store::sqlite_path;

#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// The gateway's base URL [default: from the credentials file].
    #[arg(long, env = "HERALD_URL", global = true)]
    pub server: Option<String>,
    /// An account token [default: from the credentials file].
    #[arg(long, env = "HERALD_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// The database whose credentials file to read.
    #[arg(long, env = "HERALD_DATABASE", default_value = DEFAULT_DATABASE, global = true)]
    pub database: String,
}

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

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Create a webhook and print it with its secret.
    Create {
        #[arg(long)]
        url: String,
        /// Event types or `prefix*` patterns; repeat or separate with commas. Absent: every event.
        #[arg(long = "event-type", value_delimiter = ',')]
        event_types: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the account's webhooks.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// The newest deliveries, optionally filtered.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        webhook_id: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One delivery with every attempt.
    Show {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

struct Api {
    http: reqwest::Client,
    server: String,
    token: String,
}

impl Api {
    fn new(args: &ClientArgs) -> anyhow::Result<Api> {
        crate::http_client::install_tls_provider();
        let stored =
            sqlite_path(&args.database).map(|p| credentials::path_for_database(&p)).map(|p| credentials::load(&p));
        let (server, token) = match (args.server.clone(), args.token.clone(), stored) {
            (Some(server), Some(token), _) => (server, token),
            (server, token, Some(Ok(stored))) => (server.unwrap_or(stored.server), token.unwrap_or(stored.token)),
            (_, _, Some(Err(err))) => {
                return Err(
                    err.context("no --server/--token given and no credentials file: is `herald serve` running here?")
                );
            }
            _ => bail!("give --server and --token (or HERALD_URL and HERALD_TOKEN)"),
        };
        Ok(Api {
            http: reqwest::Client::builder().no_proxy().build()?,
            server: server.trim_end_matches('/').to_owned(),
            token,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.server);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.with_context(|| format!("calling {url}"))?;
        let status = response.status();
        let text = response.text().await?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            bail!("{status}: {}", value.get("message").and_then(Value::as_str).unwrap_or(&value.to_string()));
        }
        Ok(value)
    }
}

fn print(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

pub async fn send(args: SendArgs) -> anyhow::Result<()> {
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
    print(&api.call(reqwest::Method::POST, "/v1/events", Some(event)).await?);
    Ok(())
}

pub async fn webhooks(command: WebhooksCommand) -> anyhow::Result<()> {
    match command {
        WebhooksCommand::Create { url, event_types, description, client } => {
            let mut body = json!({ "url": url });
            if !event_types.is_empty() {
                body["event_types"] = json!(event_types);
            }
            if let Some(description) = description {
                body["description"] = Value::String(description);
            }
            let api = Api::new(&client)?;
            print(&api.call(reqwest::Method::POST, "/v1/webhooks", Some(body)).await?);
        }
        WebhooksCommand::List { client } => {
            print(&Api::new(&client)?.call(reqwest::Method::GET, "/v1/webhooks", None).await?);
        }
    }
    Ok(())
}

pub async fn deliveries(command: DeliveriesCommand) -> anyhow::Result<()> {
    match command {
        DeliveriesCommand::List { status, webhook_id, limit, client } => {
            let mut query = vec![("limit", limit.to_string())];
            query.extend(status.map(|s| ("status", s)));
            query.extend(webhook_id.map(|w| ("webhook_id", w)));
            let path = format!("/v1/deliveries?{}", serde_urlencoded::to_string(&query)?);
            print(&Api::new(&client)?.call(reqwest::Method::GET, &path, None).await?);
        }
        DeliveriesCommand::Show { id, client } => {
            let path =
                format!("/v1/deliveries/{}", url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>());
            print(&Api::new(&client)?.call(reqwest::Method::GET, &path, None).await?);
        }
    }
    Ok(())
}
