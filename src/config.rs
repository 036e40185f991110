//! Configuration: command-line flags, `HERALD_*` environment variables and
//! an optional TOML file, parsed once into a typed `ServeConfig`. A flag or
//! variable wins over the file; the file wins over the defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;

use crate::delivery::EngineConfig;
use crate::listener::ListenerConfig;
use crate::metrics::MetricsConfig;
use crate::sealing::SecretKey;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE: &str = "sqlite://herald.db";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// `herald serve` flags. Each is optional so that the config file can
/// supply what they leave out.
#[derive(Debug, Args, Default, Clone)]
pub struct ServeArgs {
    /// A TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address the API listens on [default: 127.0.0.1:8080].
    #[arg(long, env = "HERALD_LISTEN")]
    pub listen: Option<String>,
    /// Where Herald keeps its data [default: sqlite://herald.db].
    #[arg(long, env = "HERALD_DATABASE")]
    pub database: Option<String>,
    /// Allow webhook URLs on private, loopback and link-local addresses
    /// (for local development and tests; never on a shared gateway).
    #[arg(long, env = "HERALD_ALLOW_PRIVATE_TARGETS")]
    pub allow_private_targets: bool,
    /// Refuse webhook URLs that are not https (certificates are verified
    /// whatever this says).
    #[arg(long, env = "HERALD_REQUIRE_HTTPS")]
    pub require_https: bool,
    /// Multiply every retry wait by this (0.001 turns hours into seconds).
    #[arg(long, env = "HERALD_TIME_SCALE")]
    pub time_scale: Option<f64>,
    /// Largest request body the API accepts, in bytes [default: 1048576].
    #[arg(long, env = "HERALD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Concurrent requests to one webhook [default: 16].
    #[arg(long, env = "HERALD_PER_WEBHOOK_CONCURRENCY")]
    pub per_webhook_concurrency: Option<usize>,
    /// Deliveries in flight across all webhooks [default: 1024].
    #[arg(long, env = "HERALD_MAX_IN_FLIGHT")]
    pub max_in_flight: Option<usize>,
    /// Seconds shutdown waits for attempts in flight [default: 10].
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE_SECONDS")]
    pub shutdown_grace_seconds: Option<u64>,
    /// Open API connections at most; at the limit a new connection closes
    /// the one idle longest. Lowered at start to half of what the open-file
    /// limit leaves [default: 1024].
    #[arg(long, env = "HERALD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request's head (from connecting, or
    /// from its first byte on a keep-alive connection) [default: 10].
    #[arg(long, env = "HERALD_HEADER_TIMEOUT_SECONDS")]
    pub header_timeout_seconds: Option<u64>,
    /// Seconds a client has to send a request's body, from its head
    /// [default: 30].
    #[arg(long, env = "HERALD_BODY_TIMEOUT_SECONDS")]
    pub body_timeout_seconds: Option<u64>,
    /// Seconds a keep-alive connection may wait for its next request
    /// [default: 60].
    #[arg(long, env = "HERALD_IDLE_TIMEOUT_SECONDS")]
    pub idle_timeout_seconds: Option<u64>,
    /// The operator token (creates accounts). Generated and printed once
    /// on first start when not set.
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The local address outgoing deliveries leave from (for receivers that
    /// allow-list senders); `GET /v1/egress` reports it.
    #[arg(long, env = "HERALD_BIND_ADDRESS")]
    pub bind_address: Option<IpAddr>,
    /// A one-webhook deployment configured by environment alone (the
    /// WhatsApp Web API's variables): deliver every event of the default
    /// account to this URL with the `wwebjs` profile.
    #[arg(long, env = "WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// With WEBHOOK_URL: attempts in all [default: 3].
    #[arg(long, env = "WEBHOOK_RETRY_ATTEMPTS")]
    pub webhook_retry_attempts: Option<u32>,
    /// With WEBHOOK_URL: the first wait in ms, doubling after [default: 5000].
    #[arg(long, env = "WEBHOOK_RETRY_DELAY")]
    pub webhook_retry_delay: Option<u64>,
    /// With WEBHOOK_URL: the HMAC secret of `X-Webhook-Signature`.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// A file holding the key that encrypts webhook signing secrets at
    /// rest: 32 bytes, raw or in base64. Or HERALD_SECRET_KEY: the key
    /// itself, in base64.
    #[arg(long, env = "HERALD_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// The key itself, from HERALD_SECRET_KEY only (`secret_key_from_env`):
    /// a flag's value would show in the process list.
    #[arg(skip)]
    pub secret_key: Option<SecretText>,
    /// Also serve `/metrics` without a token on this separate address
    /// (for a Prometheus scraper); on the API listener it takes the
    /// operator token.
    #[arg(long, env = "HERALD_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Label deliveries and attempts with their webhook id too (one series
    /// per webhook: mind the number of webhooks).
    #[arg(long, env = "HERALD_METRICS_PER_WEBHOOK")]
    pub metrics_per_webhook: bool,
    /// Count nothing and serve no `/metrics` (the bench's baseline).
    #[arg(long, env = "HERALD_NO_METRICS")]
    pub no_metrics: bool,
}

/// Text that is a secret: its `Debug` never shows it.
#[derive(Clone, Default)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(..)")
    }
}

/// `HERALD_SECRET_KEY`, if set. A value that is not UTF-8 cannot be
/// base64, so it comes through as one that fails to parse.
pub fn secret_key_from_env() -> Option<SecretText> {
    match std::env::var("HERALD_SECRET_KEY") {
        Ok(text) => Some(SecretText(text)),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => Some(SecretText("?".into())),
    }
}

/// The single webhook of an environment-configured deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvWebhook {
    pub url: String,
    pub attempts: u32,
    pub first_delay_ms: u64,
    pub secret: Option<String>,
}

/// The config file's shape: the same settings, all optional.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    database: Option<String>,
    allow_private_targets: Option<bool>,
    require_https: Option<bool>,
    time_scale: Option<f64>,
    max_body_bytes: Option<usize>,
    per_webhook_concurrency: Option<usize>,
    max_in_flight: Option<usize>,
    shutdown_grace_seconds: Option<u64>,
    max_connections: Option<usize>,
    header_timeout_seconds: Option<u64>,
    body_timeout_seconds: Option<u64>,
    idle_timeout_seconds: Option<u64>,
    admin_token: Option<String>,
    bind_address: Option<IpAddr>,
    secret_key_file: Option<PathBuf>,
    metrics_listen: Option<String>,
    metrics_per_webhook: Option<bool>,
    no_metrics: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub database: String,
    pub allow_private_targets: bool,
    pub require_https: bool,
    pub time_scale: f64,
    pub max_body_bytes: usize,
    pub admin_token: Option<String>,
    pub bind_address: Option<IpAddr>,
    pub env_webhook: Option<EnvWebhook>,
    pub engine: EngineConfig,
    pub listener: ListenerConfig,
    /// Seals webhook secrets at rest when set.
    pub secret_key: Option<SecretKey>,
    /// Where the first start writes the default account's token for the
    /// CLI (`store::credentials_path` of the database); none for none.
    pub credentials_file: Option<std::path::PathBuf>,
    /// Where `/metrics` is also served, without a token.
    pub metrics_listen: Option<SocketAddr>,
    pub metrics: MetricsConfig,
}

impl ServeConfig {
    pub fn from_args(args: ServeArgs) -> anyhow::Result<ServeConfig> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let listen_text = args.listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text.parse().with_context(|| format!("listen: `{listen_text}` is not an address:port"))?;
        let time_scale = args.time_scale.or(file.time_scale).unwrap_or(1.0);
        if !(time_scale.is_finite() && time_scale > 0.0) {
            anyhow::bail!("time_scale: must be a positive number");
        }
        let defaults = EngineConfig::default();
        let engine = EngineConfig {
            max_in_flight: args.max_in_flight.or(file.max_in_flight).unwrap_or(defaults.max_in_flight).max(1),
            per_webhook_concurrency: args
                .per_webhook_concurrency
                .or(file.per_webhook_concurrency)
                .unwrap_or(defaults.per_webhook_concurrency)
                .max(1),
            shutdown_grace: args
                .shutdown_grace_seconds
                .or(file.shutdown_grace_seconds)
                .map(Duration::from_secs)
                .unwrap_or(defaults.shutdown_grace),
            ..defaults
        };
        let max_body_bytes = args.max_body_bytes.or(file.max_body_bytes).unwrap_or(DEFAULT_MAX_BODY_BYTES);
        let engine = EngineConfig { max_rendered_body: max_body_bytes, ..engine };
        let metrics_listen = match args.metrics_listen.or(file.metrics_listen) {
            Some(text) => {
                Some(text.parse().with_context(|| format!("metrics_listen: `{text}` is not an address:port"))?)
            }
            None => None,
        };
        let metrics = MetricsConfig {
            disabled: args.no_metrics || file.no_metrics.unwrap_or(false),
            per_webhook: args.metrics_per_webhook || file.metrics_per_webhook.unwrap_or(false),
        };
        if metrics.disabled && metrics_listen.is_some() {
            anyhow::bail!("metrics_listen: metrics are turned off (no_metrics)");
        }
        let listener_defaults = ListenerConfig::default();
        let listener = ListenerConfig {
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(listener_defaults.max_connections)
                .max(1),
            header_timeout: timeout_seconds(
                "header_timeout_seconds",
                args.header_timeout_seconds.or(file.header_timeout_seconds),
                listener_defaults.header_timeout,
            )?,
            body_timeout: timeout_seconds(
                "body_timeout_seconds",
                args.body_timeout_seconds.or(file.body_timeout_seconds),
                listener_defaults.body_timeout,
            )?,
            idle_timeout: timeout_seconds(
                "idle_timeout_seconds",
                args.idle_timeout_seconds.or(file.idle_timeout_seconds),
                listener_defaults.idle_timeout,
            )?,
        };
        let database = args.database.or(file.database).unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        Ok(ServeConfig {
            listen,
            credentials_file: crate::store::credentials_path(&database),
            database,
            allow_private_targets: args.allow_private_targets || file.allow_private_targets.unwrap_or(false),
            require_https: args.require_https || file.require_https.unwrap_or(false),
            time_scale,
            max_body_bytes,
            admin_token: args.admin_token.or(file.admin_token).filter(|t| !t.is_empty()),
            bind_address: args.bind_address.or(file.bind_address),
            env_webhook: args.webhook_url.filter(|u| !u.is_empty()).map(|url| EnvWebhook {
                url,
                attempts: args.webhook_retry_attempts.unwrap_or(3).clamp(1, crate::retry::MAX_ATTEMPTS),
                first_delay_ms: args.webhook_retry_delay.unwrap_or(5000).max(1),
                secret: args.webhook_secret.filter(|s| !s.is_empty()),
            }),
            engine,
            listener,
            secret_key: secret_key(args.secret_key, args.secret_key_file.or(file.secret_key_file))?,
            metrics_listen,
            metrics,
        })
    }
}

/// A timeout given in whole seconds; zero would close every connection.
fn timeout_seconds(name: &str, seconds: Option<u64>, default: Duration) -> anyhow::Result<Duration> {
    match seconds {
        Some(0) => anyhow::bail!("{name}: must be at least 1"),
        Some(seconds) => Ok(Duration::from_secs(seconds)),
        None => Ok(default),
    }
}

impl ServeConfig {
    /// Which webhook URLs this configuration allows.
    pub fn targets(&self) -> crate::model::TargetPolicy {
        crate::model::TargetPolicy { allow_private: self.allow_private_targets, require_https: self.require_https }
    }
}

/// The key from `HERALD_SECRET_KEY` or a key file; never both, since
/// which one sealed the database would then be a guess. The errors never
/// repeat the key.
fn secret_key(text: Option<SecretText>, file: Option<PathBuf>) -> anyhow::Result<Option<SecretKey>> {
    match (text, file) {
        (Some(_), Some(path)) => {
            anyhow::bail!("HERALD_SECRET_KEY and secret_key_file ({}) are both set: set one", path.display())
        }
        (Some(text), None) => {
            Ok(Some(SecretKey::from_base64(&text.0).map_err(|e| anyhow::anyhow!("HERALD_SECRET_KEY: {e}"))?))
        }
        (None, Some(path)) => {
            let contents =
                std::fs::read(&path).with_context(|| format!("secret_key_file: reading {}", path.display()))?;
            let key = SecretKey::from_file_contents(&contents)
                .map_err(|e| anyhow::anyhow!("secret_key_file {}: {e}", path.display()))?;
            Ok(Some(key))
        }
        (None, None) => Ok(None),
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9999\"\ntime_scale = 0.5\nmax_in_flight = 7\n").unwrap();
        let args = ServeArgs { config: Some(path.clone()), time_scale: Some(0.001), ..Default::default() };
        let config = ServeConfig::from_args(args).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9999");
        assert_eq!(config.time_scale, 0.001);
        assert_eq!(config.engine.max_in_flight, 7);
        assert_eq!(config.database, DEFAULT_DATABASE);
        assert_eq!(config.max_body_bytes, DEFAULT_MAX_BODY_BYTES);

        std::fs::write(&path, "listn = \"x\"\n").unwrap();
        let err = ServeConfig::from_args(ServeArgs { config: Some(path), ..Default::default() }).unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"));
    }

    #[test]
    fn bad_values_are_refused() {
        #[track_caller]
        fn refused(args: ServeArgs, mentions: &str) {
            let err = format!("{:#}", ServeConfig::from_args(args).unwrap_err());
            assert!(err.contains(mentions), "{err:?} does not mention {mentions:?}");
        }
        refused(ServeArgs { time_scale: Some(0.0), ..Default::default() }, "time_scale");
        refused(ServeArgs { listen: Some("nowhere".into()), ..Default::default() }, "nowhere");
        refused(ServeArgs { idle_timeout_seconds: Some(0), ..Default::default() }, "idle_timeout_seconds");
    }

    #[test]
    fn the_secret_key_comes_from_the_variable_or_a_file_and_a_bad_one_is_refused() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
        let id = SecretKey::from_bytes(&[5u8; 32]).unwrap().id().to_owned();
        let from_env = ServeArgs { secret_key: Some(SecretText(b64.clone())), ..Default::default() };
        assert_eq!(ServeConfig::from_args(from_env).unwrap().secret_key.unwrap().id(), id);
        let path = dir.path().join("key");
        std::fs::write(&path, [5u8; 32]).unwrap();
        let config_path = dir.path().join("herald.toml");
        std::fs::write(&config_path, format!("secret_key_file = {:?}\n", path.display().to_string())).unwrap();
        let from_file = ServeArgs { config: Some(config_path), ..Default::default() };
        assert_eq!(ServeConfig::from_args(from_file).unwrap().secret_key.unwrap().id(), id);
        assert!(ServeConfig::from_args(ServeArgs::default()).unwrap().secret_key.is_none());

        let err = |args: ServeArgs| format!("{:#}", ServeConfig::from_args(args).unwrap_err());
        let short = base64::engine::general_purpose::STANDARD.encode([5u8; 31]);
        let e = err(ServeArgs { secret_key: Some(SecretText(short.clone())), ..Default::default() });
        assert_eq!(e, "HERALD_SECRET_KEY: 31 bytes long, not 32");
        let e = err(ServeArgs { secret_key: Some(SecretText("hunter2!".into())), ..Default::default() });
        assert!(e.starts_with("HERALD_SECRET_KEY: not base64") && !e.contains("hunter2"), "{e}");
        std::fs::write(&path, format!("{short}\n")).unwrap();
        let e = err(ServeArgs { secret_key_file: Some(path.clone()), ..Default::default() });
        assert!(e.contains("31 bytes long, not 32"), "{e}");
        let both = ServeArgs { secret_key: Some(SecretText(b64)), secret_key_file: Some(path), ..Default::default() };
        assert!(err(both).contains("both set"));
    }

    #[test]
    fn listener_limits_come_from_flags_the_file_or_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, "max_connections = 64\nbody_timeout_seconds = 5\n").unwrap();
        let args = ServeArgs { config: Some(path), header_timeout_seconds: Some(3), ..Default::default() };
        let listener = ServeConfig::from_args(args).unwrap().listener;
        assert_eq!(listener.max_connections, 64);
        assert_eq!(listener.header_timeout, Duration::from_secs(3));
        assert_eq!(listener.body_timeout, Duration::from_secs(5));
        assert_eq!(listener.idle_timeout, ListenerConfig::default().idle_timeout);
    }
}
