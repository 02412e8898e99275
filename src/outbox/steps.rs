//! Outbox rows that are not messages: the steps of an incident's dedicated
//! channel. They are queued like messages (same transaction as the state
//! change, in the incident channel's lane under the incident's order key),
//! so they are ordered before the messages meant for the room, retried,
//! paced and resumed after a restart. What a step does is up to the
//! `RoomSteps` the app gives the worker (the incident feature implements
//! it), so the outbox stays below the features that use it.

use futures_util::future::BoxFuture;
use sqlx::AnyConnection;

use super::{Kind, OutboxRow, Outcome, incident_root_key};
use crate::slack::ids::ChannelId;

/// The thread key of messages meant for an incident's room (see `Outgoing::to_room`).
pub fn room_thread_key(incident_id: i64) -> String {
    format!("room:{incident_id}")
}

/// The incident a room thread key names.
pub fn room_of_key(key: &str) -> Option<i64> {
    key.strip_prefix("room:")?.parse().ok()
}

/// Runs one room step (`row.payload` is the step, as its owner wrote it).
pub trait RoomSteps: Send + Sync {
    fn deliver<'a>(&'a self, row: &'a OutboxRow) -> BoxFuture<'a, Outcome>;
}

/// Queue a room step for `incident_id`, in the caller's transaction.
/// `notify_url` is the declarer's response_url, for a room that cannot be made.
pub async fn enqueue_step(
    conn: &mut AnyConnection,
    incident_id: i64,
    channel: &ChannelId,
    step: &serde_json::Value,
    notify_url: Option<&str>,
    now_ms: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO outbox (lane, kind, channel, incident_id, notify_url, payload, status, attempts,
           next_attempt_at, created_at, sensitive, priority, order_key)
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, 0, 0, $8)",
    )
    .bind(format!("ch:{channel}"))
    .bind(Kind::Room.as_str())
    .bind(channel.as_str().to_string())
    .bind(incident_id)
    .bind(notify_url.map(str::to_string))
    .bind(step.to_string())
    .bind(now_ms)
    .bind(incident_root_key(incident_id))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A room step records how far it got in its own row (it holds the row's
/// lease), so its retry resumes there instead of starting over.
pub async fn save_step(store: &crate::store::Store, row_id: i64, step: &serde_json::Value) -> anyhow::Result<()> {
    sqlx::query("UPDATE outbox SET payload = $1 WHERE id = $2 AND status = 'pending'")
        .bind(step.to_string())
        .bind(row_id)
        .execute(&store.writer)
        .await?;
    Ok(())
}
