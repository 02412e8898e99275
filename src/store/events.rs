//! Slack redelivers what it thinks we missed: the Events API retries (with
//! `X-Slack-Retry-Num`) when we are slow or fail, and Socket Mode sends an
//! envelope again, possibly over another connection or to another replica,
//! when its ack did not arrive. The ids Slack keeps across redeliveries
//! (`event_id`, a Socket Mode `envelope_id`, a command's or click's
//! `trigger_id`) are claimed with an insert that can only succeed once, so
//! handling is idempotent, across connections and replicas too.

use super::Store;

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

/// Whether any of the keys was claimed already (a redelivery), read
/// before work that need not be done twice; the claim itself decides.
pub async fn seen_any(conn: &mut sqlx::AnyConnection, keys: &[String]) -> anyhow::Result<bool> {
    for key in keys {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM slack_events WHERE event_id = $1")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        if n > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Claim every key, in the caller's transaction; true when none was seen
/// before. On false the caller rolls back (drops the transaction).
pub async fn claim_all(conn: &mut sqlx::AnyConnection, keys: &[String], now_ms: i64) -> anyhow::Result<bool> {
    for key in keys {
        if !claim(conn, key, now_ms).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Claim every key in a transaction of its own, committed before the work
/// it guards starts: a command or click runs its own transactions, so its
/// redelivery must already be refused while it runs. At most once: a crash
/// after the claim loses that one delivery rather than acting twice.
pub async fn claim_now(store: &Store, keys: &[String], now_ms: i64) -> anyhow::Result<bool> {
    if keys.is_empty() {
        return Ok(true);
    }
    // A person is waiting on the command or click it guards.
    let mut tx = store.begin_for_person().await?;
    if !claim_all(&mut tx, keys, now_ms).await? {
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}
