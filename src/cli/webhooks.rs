//! `herald webhooks list|show|create|update|delete|rotate-secret|test`:
//! the webhook endpoints of `/v1/webhooks`, with flags for the common
//! fields and `--body` for the rest.

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::client::{Api, ClientArgs, print_json, segment};
use super::table::{Table, line, print_details, text, time};

#[derive(Debug, Args)]
pub struct WebhooksArgs {
    #[command(subcommand)]
    pub command: WebhooksCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// List the account's webhooks.
    List,
    /// One webhook: its settings and its circuit breaker.
    Show { id: String },
    /// Create a webhook and print it with its secret.
    Create {
        #[command(flatten)]
        fields: WebhookFields,
        /// The signing secret [default: generated for the profile].
        #[arg(long)]
        secret: Option<String>,
        /// `standard` only: `hmac-sha256` (`v1`) or `ed25519` (`v1a`, with a
        /// `whpk_` public key for receivers).
        #[arg(long, value_parser = ["hmac-sha256", "ed25519"])]
        signing: Option<String>,
    },
    /// Change a webhook: only what is given changes.
    Update {
        id: String,
        #[command(flatten)]
        fields: WebhookFields,
        /// Send every event again (clears the event-type filter).
        #[arg(long, conflicts_with = "event_types")]
        all_events: bool,
    },
    /// Delete a webhook; its deliveries still waiting are dropped.
    Delete { id: String },
    /// A new signing secret; the old one keeps signing beside it for a grace period.
    RotateSecret {
        id: String,
        /// The new secret [default: generated].
        #[arg(long)]
        secret: Option<String>,
        /// How long the old secret keeps signing [server default: 86400].
        #[arg(long)]
        grace_seconds: Option<u64>,
    },
    /// Send this webhook a `webhook.test` event.
    Test { id: String },
}

/// The fields `create` and `update` share. Flags win over `--body`.
#[derive(Debug, Args)]
pub struct WebhookFields {
    /// Where to send (a template with `@{{…}}` placeholders for `compose`).
    #[arg(long)]
    url: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// Event types or `prefix*` patterns; repeat or separate with commas [default: every event].
    #[arg(long = "event-type", value_delimiter = ',')]
    event_types: Vec<String>,
    /// standard, business, compose, viber-bot, routee or wwebjs.
    #[arg(long)]
    profile: Option<String>,
    /// A custom header, NAME=VALUE; repeat for more (on update they replace all headers).
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// The request timeout [default: the profile's].
    #[arg(long)]
    timeout_ms: Option<u64>,
    #[arg(long, conflicts_with = "disabled")]
    enabled: bool,
    /// Keep the webhook but send it nothing.
    #[arg(long)]
    disabled: bool,
    /// Any other fields as a JSON object, e.g. '{"retry": {"schedule": [10, 60]}}'.
    #[arg(long, value_name = "JSON")]
    body: Option<String>,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => Ok((name.trim().to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}

impl WebhookFields {
    /// The request body: `--body`, then each flag given on top of it.
    fn into_body(self) -> anyhow::Result<Map<String, Value>> {
        let mut body = match self.body {
            Some(text) => match serde_json::from_str(&text).context("--body is not JSON")? {
                Value::Object(map) => map,
                _ => bail!("--body must be a JSON object"),
            },
            None => Map::new(),
        };
        let mut set = |key: &str, value: Value| {
            body.insert(key.to_owned(), value);
        };
        if let Some(url) = self.url {
            set("url", Value::String(url));
        }
        if let Some(description) = self.description {
            set("description", Value::String(description));
        }
        if !self.event_types.is_empty() {
            set("event_types", json!(self.event_types));
        }
        if let Some(profile) = self.profile {
            set("profile", Value::String(profile));
        }
        if let Some(timeout_ms) = self.timeout_ms {
            set("timeout_ms", json!(timeout_ms));
        }
        if self.enabled || self.disabled {
            set("enabled", Value::Bool(self.enabled));
        }
        if !self.headers.is_empty() {
            let mut headers = match body.remove("headers") {
                Some(Value::Object(map)) => map,
                Some(_) => bail!("--body: headers must be an object"),
                None => Map::new(),
            };
            for (name, value) in self.headers {
                headers.insert(name, Value::String(value));
            }
            body.insert("headers".to_owned(), Value::Object(headers));
        }
        Ok(body)
    }
}

pub async fn run(args: WebhooksArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.client)?;
    let json = args.client.json;
    match args.command {
        WebhooksCommand::List => {
            let list = api.get("/v1/webhooks").await?;
            match json {
                true => print_json(&list),
                false => print_list(&list),
            }
        }
        WebhooksCommand::Show { id } => {
            let webhook = api.get(&format!("/v1/webhooks/{}", segment(&id))).await?;
            match json {
                true => print_json(&webhook),
                false => print_webhook(&webhook),
            }
        }
        WebhooksCommand::Create { fields, secret, signing } => {
            let mut body = fields.into_body()?;
            if let Some(secret) = secret {
                body.insert("secret".to_owned(), Value::String(secret));
            }
            if let Some(signing) = signing {
                body.insert("signing".to_owned(), Value::String(signing));
            }
            let webhook = api.post("/v1/webhooks", Some(Value::Object(body))).await?;
            match json {
                true => print_json(&webhook),
                false => print_webhook(&webhook),
            }
        }
        WebhooksCommand::Update { id, fields, all_events } => {
            let mut body = fields.into_body()?;
            if all_events {
                body.insert("event_types".to_owned(), Value::Null);
            }
            if body.is_empty() {
                bail!("nothing to change: give at least one flag (see `herald webhooks update --help`)");
            }
            let webhook = api.patch(&format!("/v1/webhooks/{}", segment(&id)), Value::Object(body)).await?;
            match json {
                true => print_json(&webhook),
                false => print_webhook(&webhook),
            }
        }
        WebhooksCommand::Delete { id } => {
            api.delete(&format!("/v1/webhooks/{}", segment(&id))).await?;
            // The server answers 204 with no body; scripts still get JSON.
            match json {
                true => print_json(&json!({ "id": id, "deleted": true })),
                false => line(format_args!("deleted webhook {id}")),
            }
        }
        WebhooksCommand::RotateSecret { id, secret, grace_seconds } => {
            let mut body = Map::new();
            if let Some(secret) = secret {
                body.insert("secret".to_owned(), Value::String(secret));
            }
            if let Some(grace) = grace_seconds {
                body.insert("grace_seconds".to_owned(), json!(grace));
            }
            let path = format!("/v1/webhooks/{}/rotate-secret", segment(&id));
            let rotated = api.post(&path, Some(Value::Object(body))).await?;
            if json {
                print_json(&rotated);
            } else {
                let mut rows = vec![("secret", text(&rotated["secret"]))];
                if let Some(key) = rotated.get("public_key") {
                    rows.push(("public key", text(key)));
                }
                if let Some(previous) = rotated["previous_secret"].as_object() {
                    let until = time(&previous["expires_at"]);
                    rows.push(("previous secret", format!("{} (signs until {until})", text(&previous["secret"]))));
                    if let Some(key) = previous.get("public_key") {
                        rows.push(("previous public key", text(key)));
                    }
                }
                print_details(&rows);
            }
        }
        WebhooksCommand::Test { id } => {
            let outcome = api.post(&format!("/v1/webhooks/{}/test", segment(&id)), None).await?;
            match json {
                true => print_json(&outcome),
                false => super::send::print_outcome("test event", &outcome),
            }
        }
    }
    Ok(())
}

fn print_list(list: &Value) {
    let webhooks = list["data"].as_array().map(Vec::as_slice).unwrap_or_default();
    if webhooks.is_empty() {
        line("no webhooks yet: `herald webhooks create --url URL` makes one");
        return;
    }
    let mut table = Table::new(&["ID", "PROFILE", "STATE", "EVENTS", "URL", "DESCRIPTION"]);
    for webhook in webhooks {
        table.row(vec![
            text(&webhook["id"]),
            text(&webhook["profile"]),
            state(webhook),
            event_types(webhook),
            text(&webhook["url"]),
            text(&webhook["description"]),
        ]);
    }
    table.print();
}

fn state(webhook: &Value) -> String {
    if webhook["enabled"] == false { "disabled" } else { "enabled" }.to_owned()
}

fn event_types(webhook: &Value) -> String {
    match webhook["event_types"].as_array() {
        None => "every event".to_owned(),
        Some(types) if types.is_empty() => "none".to_owned(),
        Some(types) => types.iter().map(text).collect::<Vec<_>>().join(", "),
    }
}

fn print_webhook(webhook: &Value) {
    let headers = webhook["headers"].as_object().map(|headers| {
        headers.iter().map(|(name, value)| format!("{name}: {}", text(value))).collect::<Vec<_>>().join("; ")
    });
    let default = |field: &str| if webhook[field].is_null() { " (profile default)" } else { "" };
    let mut rows = vec![
        ("id", text(&webhook["id"])),
        ("url", text(&webhook["url"])),
        ("description", text(&webhook["description"])),
        ("profile", text(&webhook["profile"])),
        ("state", state(webhook)),
        ("events", event_types(webhook)),
        ("headers", headers.filter(|h| !h.is_empty()).unwrap_or_else(|| "-".to_owned())),
        ("retry", format!("{}{}", webhook["effective_retry"], default("retry"))),
        ("timeout", format!("{} ms{}", text(&webhook["effective_timeout_ms"]), default("timeout_ms"))),
    ];
    if let Some(template) = webhook.get("template").filter(|t| !t.is_null()) {
        rows.push(("template", template.to_string()));
    }
    if let Some(circuit) = webhook.get("circuit") {
        let mut state = text(&circuit["state"]);
        if !circuit["open_until"].is_null() {
            state = format!("{state} until {}", time(&circuit["open_until"]));
        }
        rows.push(("circuit", state));
    }
    rows.push(("created", time(&webhook["created_at"])));
    rows.push(("updated", time(&webhook["updated_at"])));
    if let Some(secret) = webhook.get("secret") {
        rows.push(("secret", text(secret)));
    }
    if let Some(key) = webhook.get("public_key") {
        rows.push(("public key", text(key)));
    }
    if let Some(warnings) = webhook["warnings"].as_array() {
        for warning in warnings {
            rows.push(("warning", text(warning)));
        }
    }
    print_details(&rows);
}

/// Used by `deliveries` and `stats` to name a webhook by its URL.
pub async fn urls_by_id(api: &Api) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let list = api.get("/v1/webhooks").await?;
    let webhooks = list["data"].as_array().ok_or_else(|| anyhow!("the webhook list has no data"))?;
    Ok(webhooks.iter().map(|w| (text(&w["id"]), text(&w["url"]))).collect())
}
