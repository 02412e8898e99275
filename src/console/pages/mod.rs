//! One file per console page (or pair of routes), each a handler that
//! reads what it shows with `queries` and renders it with maud.

pub mod approvals;
pub mod catalog;
pub mod incident;
pub mod incidents;
pub mod layout;
pub mod login;
pub mod metrics;
pub mod postmortem;

use chrono::{TimeZone, Utc};

/// A stored time as the tables show it (UTC, to the second).
pub fn when(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "?".into())
}

/// The query string's pairs, or a 400 saying why not.
pub fn query_pairs(raw: Option<String>) -> Result<Vec<(String, String)>, super::ConsoleError> {
    super::filters::pairs(raw.as_deref()).map_err(super::ConsoleError::BadInput)
}
