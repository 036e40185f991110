//! Herald: a self-hosted webhook delivery gateway.
//!
//! Layout: `app` wires everything together. Requests enter through the
//! `listener` (bounded connections, network timeouts) and `api` (one file
//! per resource), which validates them and calls the `store`
//! (every durable fact, behind one trait; only `store/` holds SQL;
//! `sealing` encrypts the secrets it keeps). The
//! `delivery` engine claims due deliveries from the store, renders each
//! through its webhook's `profile`, signs it (`signing`), sends it with the
//! one outbound client (`http_client`) and records the attempt; `retry`
//! decides the waits. Every wait reads the one `clock`; `metrics` names
//! what is counted for `/metrics`. `cli` holds the
//! subcommands of the `herald` binary.

pub mod api;
pub mod app;
pub mod bench;
pub mod catalogue;
pub mod cli;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod delivery;
pub mod env_webhook;
pub mod error;
pub mod fanout;
pub mod filter;
pub mod http_client;
pub mod js_json;
pub mod listener;
pub mod metrics;
pub mod model;
pub mod profile;
pub mod retry;
pub mod sealing;
pub mod signing;
pub mod stats;
pub mod store;
pub mod template;
