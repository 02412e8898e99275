//! runbook-bot: a ChatOps bot for Slack incident channels.
//!
//! Data flows one way: `http` (verify → decode → ack) or Socket Mode
//! (`slack::socket`), both through `inbound` → `dispatch` (parse →
//! authorize → run) → `incident` / `diagnose` (state changes in the `store`,
//! read-only queries on `targets`) → `outbox`
//! (persisted Slack writes, drained by a worker).

pub mod alerts;
pub mod app;
pub mod approval;
pub mod audit;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod diagnose;
pub mod dispatch;
pub mod error;
pub mod http;
pub mod inbound;
pub mod incident;
pub mod liveness;
pub mod metrics;
pub mod origin;
pub mod outbox;
pub mod probe;
pub mod readiness;
pub mod roles;
pub mod severity;
pub mod slack;
pub mod state;
pub mod store;
pub mod targets;
pub mod telemetry;
pub mod throttle;

pub use app::App;
pub use config::Config;
