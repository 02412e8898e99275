//! Slack's Events API retries a delivery (with `X-Slack-Retry-Num`) when we
//! are slow or fail; `event_id` is stable across retries, so claiming it with
//! an insert that can only succeed once makes handling idempotent, across
//! replicas too.

use super::Store;

/// Returns true the first time an event id is seen.
pub async fn claim(store: &Store, event_id: &str, now_ms: i64) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO slack_events (event_id, received_at) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(now_ms)
    .execute(&store.pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
