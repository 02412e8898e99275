//! The outbox's SQL: which rows are due, claiming one with a lease, and
//! recording how its delivery ended.

use sqlx::AnyConnection;

use super::Kind;
use crate::store::Store;

/// How long a claimed row stays ours before another worker may take it.
pub const LEASE_MS: i64 = 30_000;

/// What a sensitive row's payload becomes once it is delivered or given up:
/// still a message (so every stored payload decodes), without the secret.
const SCRUBBED: &str = r#"{"text":"(sensitive message: removed from the outbox once delivered or given up)"}"#;

/// One row to deliver, as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub lane: String,
    #[sqlx(try_from = "String")]
    pub kind: Kind,
    pub channel: Option<String>,
    pub incident_id: Option<i64>,
    pub thread_ts: Option<String>,
    pub thread_key: Option<String>,
    pub message_key: Option<String>,
    pub response_url: Option<String>,
    pub notify_url: Option<String>,
    pub payload: String,
    pub attempts: i64,
    pub created_at: i64,
    /// 0 for what a person caused, 1 for automated posts.
    pub priority: i64,
    /// When the alert whose own post this is was received.
    pub intake_at: Option<i64>,
}

/// Stored kinds read back. One unreadable row must not stop every lane
/// (the whole batch is decoded at once), so an unknown kind reads as a post,
/// as the first versions' kinds (`post_root`, `post_thread`) were.
impl From<String> for Kind {
    fn from(s: String) -> Self {
        Kind::parse(&s).unwrap_or(Kind::Post)
    }
}

/// Rows due now. Only the oldest pending row of each order key of a lane
/// is eligible: that is what keeps an incident's messages in order. What a
/// person caused comes first (priority 0), then automated posts; the worker
/// paces each lane in this order, so people take a channel's tokens first.
/// A row goes with the best priority waiting behind it under its order key,
/// so a person's reply is never stuck behind an alert post of its thread.
/// Each lane offers at most 16 posts and 16 other rows per look: a channel
/// in an alert storm holds thousands of paced heads, which would otherwise
/// fill the batch and keep every other channel, and its own unpaced
/// updates, waiting until its backlog drained at Slack's pace.
pub async fn due(store: &Store, now: i64) -> anyhow::Result<Vec<OutboxRow>> {
    let rows = sqlx::query_as(
        "WITH heads AS (
           SELECT lane, min(id) AS id, min(priority) AS priority FROM outbox
           WHERE status = 'pending' GROUP BY lane, order_key
         ),
         ranked AS (
           SELECT h.id, h.priority,
                  ROW_NUMBER() OVER (PARTITION BY h.lane, o.kind = 'post' ORDER BY h.priority, h.id) AS place
           FROM heads h JOIN outbox o ON o.id = h.id
           WHERE o.next_attempt_at <= $1 AND (o.lease_until IS NULL OR o.lease_until < $1)
         )
         SELECT o.id, o.lane, o.kind, o.channel, o.incident_id, o.thread_ts, o.thread_key, o.message_key,
                o.response_url, o.notify_url, o.payload, o.attempts, o.created_at, o.priority, o.intake_at
         FROM ranked r JOIN outbox o ON o.id = r.id
         WHERE r.place <= 16
         ORDER BY r.priority, o.id
         LIMIT 64",
    )
    .bind(now)
    .fetch_all(&store.pool)
    .await?;
    Ok(rows)
}

/// Lease a row for `owner`; false when another worker holds it.
pub async fn claim(store: &Store, owner: &str, id: i64, now: i64) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE outbox SET lease_owner = $1, lease_until = $2
         WHERE id = $3 AND status = 'pending' AND (lease_until IS NULL OR lease_until < $4)",
    )
    .bind(owner)
    .bind(now + LEASE_MS)
    .bind(id)
    .bind(now)
    .execute(&store.writer)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sent: remember the posted message's `ts` (and the channel it went to,
/// when not the row's own) under its key, in one transaction.
pub async fn mark_sent(
    store: &Store,
    owner: &str,
    row: &OutboxRow,
    sent_in: Option<&str>,
    ts: Option<String>,
    now: i64,
) -> anyhow::Result<()> {
    let mut tx = store.begin().await?;
    sqlx::query(
        "UPDATE outbox SET status = 'sent', sent_ts = $1, finished_at = $2, attempts = attempts + 1,
         lease_owner = NULL, lease_until = NULL, payload = CASE WHEN sensitive = 1 THEN $5 ELSE payload END
         WHERE id = $3 AND lease_owner = $4",
    )
    .bind(ts.clone())
    .bind(now)
    .bind(row.id)
    .bind(owner)
    .bind(SCRUBBED)
    .execute(&mut *tx)
    .await?;
    let channel = sent_in.or(row.channel.as_deref());
    if let (Kind::Post, Some(key), Some(channel), Some(ts)) = (row.kind, &row.message_key, channel, ts) {
        sqlx::query("INSERT INTO slack_messages (key, channel, ts) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(channel)
            .bind(ts)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Put a row back to be tried again at `at_ms`, recording `error` when there
/// is one; `counts_as_attempt` uses up one of the row's attempts.
pub async fn retry_at(
    store: &Store,
    owner: &str,
    id: i64,
    at_ms: i64,
    error: Option<&str>,
    counts_as_attempt: bool,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE outbox SET attempts = attempts + $1, next_attempt_at = $2, last_error = COALESCE($3, last_error),
         lease_owner = NULL, lease_until = NULL WHERE id = $4 AND lease_owner = $5",
    )
    .bind(i64::from(counts_as_attempt))
    .bind(at_ms)
    .bind(error.map(str::to_string))
    .bind(id)
    .bind(owner)
    .execute(&store.writer)
    .await?;
    Ok(())
}

/// A newer update of the same message is queued: this one is not sent.
pub async fn mark_superseded(store: &Store, owner: &str, id: i64, now: i64) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE outbox SET status = 'superseded', last_error = NULL, finished_at = $1,
         lease_owner = NULL, lease_until = NULL, payload = CASE WHEN sensitive = 1 THEN $4 ELSE payload END
         WHERE id = $2 AND lease_owner = $3",
    )
    .bind(now)
    .bind(id)
    .bind(owner)
    .bind(SCRUBBED)
    .execute(&store.writer)
    .await?;
    Ok(())
}

/// Failed for good, inside the caller's transaction (which also reports it).
pub async fn mark_failed(conn: &mut AnyConnection, owner: &str, id: i64, error: &str, now: i64) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE outbox SET status = 'failed', last_error = $1, finished_at = $2, attempts = attempts + 1,
         lease_owner = NULL, lease_until = NULL, payload = CASE WHEN sensitive = 1 THEN $5 ELSE payload END
         WHERE id = $3 AND lease_owner = $4",
    )
    .bind(error)
    .bind(now)
    .bind(id)
    .bind(owner)
    .bind(SCRUBBED)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What is known of the message a row depends on.
pub enum KnownTs {
    /// The channel it was posted in, and its ts.
    Known(String, String),
    /// Its post is still queued.
    NotYet,
    /// Its post failed or was never queued.
    Lost,
}

pub async fn known_ts(store: &Store, key: &str) -> anyhow::Result<KnownTs> {
    let known: Option<(String, String)> = sqlx::query_as("SELECT channel, ts FROM slack_messages WHERE key = $1")
        .bind(key)
        .fetch_optional(&store.pool)
        .await?;
    if let Some((channel, ts)) = known {
        return Ok(KnownTs::Known(channel, ts));
    }
    let post: Option<String> =
        sqlx::query_scalar("SELECT status FROM outbox WHERE message_key = $1 AND kind = 'post' ORDER BY id LIMIT 1")
            .bind(key)
            .fetch_optional(&store.pool)
            .await?;
    Ok(match post.as_deref() {
        Some("pending") => KnownTs::NotYet,
        _ => KnownTs::Lost,
    })
}

/// Where a message meant for an incident's room goes now.
pub enum RoomDest {
    Room(String),
    /// The room is being made.
    NotYet,
    /// No room (never wanted, could not be made, or archived): the incident's thread.
    Thread,
}

pub async fn room_of(store: &Store, incident_id: i64) -> anyhow::Result<RoomDest> {
    let row: Option<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT room_state, room_channel FROM incidents WHERE id = $1")
            .bind(incident_id)
            .fetch_optional(&store.pool)
            .await?;
    Ok(match row {
        Some((Some(state), Some(_))) if state == "archived" => RoomDest::Thread,
        Some((Some(state), Some(_))) if state == "failed" => RoomDest::Thread,
        Some((_, Some(channel))) => RoomDest::Room(channel),
        Some((Some(state), None)) if state == "pending" && creating(store, incident_id).await? => RoomDest::NotYet,
        _ => RoomDest::Thread,
    })
}

/// Whether a create step of the incident's room is still queued. A room
/// left pending without one (its step given up, or lost) would hold every
/// message meant for it, and the incident's order key, for ever.
async fn creating(store: &Store, incident_id: i64) -> anyhow::Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE incident_id = $1 AND kind = 'room' AND status = 'pending'
         AND payload LIKE '%\"step\":\"create\"%'",
    )
    .bind(incident_id)
    .fetch_one(&store.pool)
    .await?;
    Ok(n > 0)
}

pub async fn newer_update_exists(store: &Store, row: &OutboxRow) -> anyhow::Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE lane = $1 AND kind = 'update' AND message_key = $2 AND status = 'pending' AND id > $3",
    )
    .bind(&row.lane)
    .bind(row.message_key.clone())
    .bind(row.id)
    .fetch_one(&store.pool)
    .await?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_stored_kind_reads_as_a_post_instead_of_stalling_the_batch() {
        assert_eq!(Kind::from("update".to_string()), Kind::Update);
        assert_eq!(Kind::from("post_thread".to_string()), Kind::Post);
    }
}
