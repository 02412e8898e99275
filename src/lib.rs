//! runbook-bot: a ChatOps bot for Slack incident channels.
//!
//! Data flows one way: `http` (verify → decode → ack) → `dispatch` (parse →
//! authorize → run) → `incident` (state changes in the `store`) → `outbox`
//! (persisted Slack writes, drained by a worker).

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod http;
pub mod incident;
pub mod metrics;
pub mod outbox;
pub mod slack;
pub mod store;
pub mod telemetry;

pub use app::App;
pub use config::Config;
