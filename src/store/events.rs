//! Slack's Events API retries a delivery (with `X-Slack-Retry-Num`) when we
//! are slow or fail; `event_id` is stable across retries, so claiming it with
//! an insert that can only succeed once makes handling idempotent, across
//! replicas too.

/// Returns true the first time an event id is seen. Call it in the same
/// transaction as the event's effects, so a failure leaves the id unclaimed
/// and Slack's retry is handled.
pub async fn claim(conn: &mut sqlx::AnyConnection, event_id: &str, now_ms: i64) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO slack_events (event_id, received_at) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
