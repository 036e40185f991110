//! Herald's integration tests: one binary, one file per feature. Each test
//! runs a real Herald over loopback HTTP on a temp SQLite file, with a
//! manual clock, against real scripted receivers.

mod asymmetric;
mod attempt_log;
mod auth;
mod bad_input;
mod bench;
mod claims;
mod cli;
mod compose;
mod concurrency;
mod connections;
mod crash;
mod delivery;
mod engine;
mod hardening;
mod ingest;
mod metrics;
mod openapi;
mod operational;
mod profiles;
mod receivers;
mod retries;
mod safety;
mod schema;
mod schemathesis;
mod secrets;
mod seeds;
mod shutdown;
mod stats;
mod store_story;
mod support;
mod viber;
mod webhooks;
