//! Integration tests: the real app, real SQLite and PostgreSQL, the real
//! Slack client against a fake Slack Web API. One test binary keeps link
//! time down on small machines.

mod support;

mod abuse;
mod alert_storm;
mod alerts;
mod approvals;
mod catalog_sql;
mod cli;
mod console;
mod console_browser;
mod could_not_check;
mod deploy;
mod diagnostics;
mod edge;
mod engine;
mod first_run;
mod followups;
mod harness;
mod incidents;
mod limits;
mod metrics;
mod operations;
mod outbox;
mod reset_password;
mod retention;
mod rls_blindness;
mod rooms;
mod socket;
