//! Wires the store, the clock, the outbound client, the delivery engine and
//! the API together. The only place that does. `Application::build` binds
//! its own listener (port 0 works, which is how tests run many at once);
//! `run` serves until the shutdown token is cancelled.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::clock::SharedClock;
use crate::config::ServeConfig;
use crate::credentials::{self, Credentials};
use crate::delivery::Engine;
use crate::http_client::Outbound;
use crate::listener::{self, ListenerConfig};
use crate::store::{self, Bootstrap};

pub struct Application {
    listener: TcpListener,
    /// `--metrics-listen`: `/metrics` without a token, on its own address.
    metrics_listener: Option<TcpListener>,
    router: axum::Router,
    listener_config: ListenerConfig,
    engine: Arc<Engine>,
    pub state: AppState,
    /// What this start created (the operator token, the default account).
    pub bootstrap: Bootstrap,
}

impl Application {
    pub async fn build(config: ServeConfig, clock: SharedClock) -> anyhow::Result<Application> {
        let metrics = Arc::new(crate::metrics::Metrics::new(config.metrics));
        let at_rest = crate::sealing::AtRest::new(config.secret_key.clone());
        let store = store::open(&config.database, at_rest, metrics.commits()).await?;
        let now = clock.now();
        let bootstrap = store.bootstrap(config.admin_token.clone(), now).await.context("bootstrapping the database")?;
        for (account_id, webhook_id) in &bootstrap.webhooks_keyed_by_api_tokens {
            tracing::warn!(
                account_id,
                webhook_id,
                "this webhook signs with an api token (as /pa/set_webhook did before viber bot tokens), which gives \
                 whoever verifies it the account's whole api: make a token with POST /v1/viber/auth-tokens, register \
                 it with /pa/set_webhook, switch the bot to it, then delete this webhook"
            );
        }
        let listener =
            TcpListener::bind(config.listen).await.with_context(|| format!("listening on {}", config.listen))?;
        let local_addr = listener.local_addr()?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => {
                Some(TcpListener::bind(addr).await.with_context(|| format!("metrics_listen: listening on {addr}"))?)
            }
            None => None,
        };
        if let Some(path) = &config.credentials_file {
            record_credentials(path, &bootstrap, local_addr)?;
        }
        if let Some(env) = &config.env_webhook {
            crate::env_webhook::apply(&*store, &bootstrap.first_account_id, env, config.targets(), now).await?;
        }
        let outbound = Outbound::new(config.allow_private_targets, config.bind_address)?;
        let mut engine_config = crate::delivery::EngineConfig { metrics, ..config.engine.clone() };
        if let Some(budget) = listener::descriptor_budget()
            && engine_config.max_in_flight > budget
        {
            // Outbound requests get the half of the descriptors the API
            // listener leaves them, no more.
            tracing::warn!(
                wanted = engine_config.max_in_flight,
                allowed = budget,
                "max_in_flight lowered to fit the open-file limit"
            );
            engine_config.max_in_flight = budget;
        }
        let engine = Engine::new(store.clone(), clock.clone(), outbound.clone(), engine_config);
        // A store one node owns: anything leased was in flight when the
        // previous process stopped, so send it again now. (On a shared
        // store this node is new and holds nothing yet.)
        let released = store.release_leases(engine.node(), now).await.context("releasing leases")?;
        if released > 0 {
            tracing::info!(released, "resuming deliveries that were in flight at the last stop");
        }
        let n_due = engine.load_schedule().await.context("loading the delivery schedule")?;
        if n_due > 0 {
            tracing::info!(webhooks = n_due, "webhooks with unfinished deliveries");
        }
        let state = AppState {
            store,
            clock,
            engine: engine.clone(),
            targets: config.targets(),
            outbound,
            bind_address: config.bind_address,
        };
        let router = api::router(state.clone(), config.max_body_bytes);
        Ok(Application {
            listener,
            metrics_listener,
            router,
            listener_config: config.listener,
            engine,
            state,
            bootstrap,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Where `--metrics-listen` serves `/metrics`, if it is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves `/metrics` on its own listener, if one is configured.
    fn spawn_metrics_listener(&mut self, shutdown: &CancellationToken) {
        if let Some(listener) = self.metrics_listener.take() {
            let router = api::metrics_router(self.state.clone());
            tokio::spawn(listener::serve(listener, router, self.listener_config.clone(), shutdown.clone()));
        }
    }

    /// The delivery engine, for a caller that drives it by hand (tests,
    /// with `run_api`).
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// Serves the API only: the engine sends nothing until the caller
    /// drives it (`Engine::run_until_idle`), so a test can assert what was
    /// sent, and that nothing more was.
    pub async fn run_api(mut self, shutdown: CancellationToken) {
        self.spawn_metrics_listener(&shutdown);
        listener::serve(self.listener, self.router, self.listener_config, shutdown).await;
    }

    /// A feed of attempts as the engine records them.
    pub fn attempts(&self) -> tokio::sync::broadcast::Receiver<crate::model::AttemptRecord> {
        self.engine.subscribe()
    }

    /// Serves the API and runs the engine until `shutdown`; then stops
    /// taking requests and lets attempts in flight finish within the grace.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.spawn_metrics_listener(&shutdown);
        let engine = tokio::spawn(self.engine.run(shutdown.clone()));
        listener::serve(self.listener, self.router, self.listener_config, shutdown.clone()).await;
        engine.await?;
        Ok(())
    }
}

/// Writes the credentials file on first start, and keeps its server
/// address current on later ones.
fn record_credentials(path: &std::path::Path, bootstrap: &Bootstrap, addr: SocketAddr) -> anyhow::Result<()> {
    let server = format!("http://{addr}");
    if let Some((account, token)) = &bootstrap.default_account {
        let credentials = Credentials {
            server,
            account_id: account.id.clone(),
            token: token.clone(),
            operator_token: bootstrap.generated_operator_token.clone(),
        };
        credentials::save(path, &credentials)?;
        tracing::info!(path = %path.display(), "created the default account; its token is in the credentials file");
    } else if let Ok(mut credentials) = credentials::load(path)
        && credentials.server != server
    {
        credentials.server = server;
        credentials::save(path, &credentials)?;
    }
    Ok(())
}
