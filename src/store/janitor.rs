//! Housekeeping: forget old Events API ids (Slack retries for at most about
//! an hour), delivered outbox rows and processed alert payloads, so the state
//! store does not grow without bound. Failed rows are kept for inspection.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::Store;
use crate::clock::Clock;

const EVERY: Duration = Duration::from_secs(600);
const KEEP_EVENTS_MS: i64 = 24 * 3_600_000;
const KEEP_SENT_MS: i64 = 7 * 24 * 3_600_000;

pub async fn run(store: Store, clock: Arc<dyn Clock>, cancel: CancellationToken) {
    loop {
        if let Err(e) = sweep(&store, clock.now_ms()).await {
            tracing::warn!(error = ?e, "state-store housekeeping failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

pub async fn sweep(store: &Store, now: i64) -> anyhow::Result<(u64, u64)> {
    let events = sqlx::query("DELETE FROM slack_events WHERE received_at < $1")
        .bind(now - KEEP_EVENTS_MS)
        .execute(&store.writer)
        .await
        .context("forgetting old Events API ids")?
        .rows_affected();
    let sent = sqlx::query("DELETE FROM outbox WHERE status IN ('sent', 'superseded') AND finished_at < $1")
        .bind(now - KEEP_SENT_MS)
        .execute(&store.writer)
        .await
        .context("deleting delivered outbox rows")?
        .rows_affected();
    sqlx::query("DELETE FROM alert_inbox WHERE processed_at < $1 AND error IS NULL")
        .bind(now - KEEP_SENT_MS)
        .execute(&store.writer)
        .await
        .context("deleting processed alert payloads")?;
    Ok((events, sent))
}
