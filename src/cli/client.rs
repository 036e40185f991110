//! The CLI's connection to the API: which server and token (flags,
//! `HERALD_URL` / `HERALD_TOKEN`, or the credentials file beside the local
//! database), one call whose failure reads as the server's `{code,
//! message}`, and `--json`, which prints what the server answered.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use reqwest::Method;
use serde_json::Value;

use super::table::line;
use crate::config::DEFAULT_DATABASE;
use crate::credentials;
use crate::store::credentials_path;

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
    /// Print the server's JSON instead of a table, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A whole API call never takes longer than this: the CLI should not hang
/// on a server that accepted the connection and went quiet.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Api {
    http: reqwest::Client,
    server: String,
    token: String,
}

impl Api {
    pub fn new(args: &ClientArgs) -> anyhow::Result<Api> {
        crate::http_client::install_tls_provider();
        let stored = credentials_path(&args.database).map(|p| credentials::load(&p));
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
            http: reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(Duration::from_secs(10))
                .timeout(CALL_TIMEOUT)
                .build()?,
            server: server.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.call(Method::POST, path, body).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::DELETE, path, None).await
    }

    /// One call. A non-2xx answer becomes an error reading `code: message`
    /// as the server wrote it; an empty 2xx body is `null`.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.server);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.map_err(|err| {
            let what = if err.is_timeout() { "no answer from" } else { "cannot reach" };
            anyhow::Error::new(err).context(format!("{what} herald at {} (is `herald serve` running?)", self.server))
        })?;
        let status = response.status();
        let text = response.text().await.with_context(|| format!("reading the answer from {url}"))?;
        let value: Value = match text.is_empty() {
            true => Value::Null,
            false => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        };
        if !status.is_success() {
            return Err(
                match (value.get("code").and_then(Value::as_str), value.get("message").and_then(Value::as_str)) {
                    (Some(code), Some(message)) => anyhow!("{code}: {message}"),
                    _ => anyhow!("{status}: {}", super::table::cut(&super::table::text(&value), 200)),
                },
            );
        }
        Ok(value)
    }
}

/// One path segment, percent-encoded: ids come from the command line.
pub fn segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

pub fn print_json(value: &Value) {
    line(serde_json::to_string_pretty(value).unwrap_or_default());
}
