//! Alerts from monitoring: accepted webhook payloads are normalized and
//! persisted in the inbox before the 2xx (no Slack call on the request
//! path); one instance at a time turns them, in order, into posts, updates,
//! thread replies, incidents and read-only diagnostics.

mod batch;
pub mod group;
pub mod grouped;
pub mod health;
pub mod normalize;
mod place;
pub mod process;
pub mod render;
pub mod routes;
mod single;
pub mod storm;

use crate::state::AppState;
use normalize::{Alert, Source};

/// Persist one payload's alerts; returns the inbox id.
pub async fn accept(state: &AppState, source: Source, alerts: &[Alert]) -> anyhow::Result<i64> {
    let now = state.clock.now_ms();
    let id: i64 =
        sqlx::query_scalar("INSERT INTO alert_inbox (source, alerts, received_at) VALUES ($1, $2, $3) RETURNING id")
            .bind(source.as_str())
            .bind(serde_json::to_string(alerts)?)
            .bind(now)
            .fetch_one(&state.store.writer)
            .await?;
    state.alerts_wake.notify_one();
    Ok(id)
}
