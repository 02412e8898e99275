//! Archiving rooms of resolved incidents, `archive_after_hours` after the
//! resolve. The time is a column (`incidents.archive_at`), set by resolve
//! and cleared by reopen, so a restart keeps the schedule. Like escalation
//! steps, each archive is claimed by one conditional update in the same
//! transaction as its outbox row: with several instances exactly one
//! queues it, and it is queued once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::Step;
use crate::incident::store as db;
use crate::state::AppState;

const TICK: Duration = Duration::from_secs(1);
/// Rooms queued per tick: a backlog (after downtime) drains over a few ticks.
const BATCH: i64 = 50;

pub async fn run(state: Arc<AppState>, cancel: CancellationToken) {
    loop {
        if let Err(e) = tick(&state).await {
            tracing::warn!(error = ?e, "room archive step failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Queue the archive of every room that is due; returns how many.
pub async fn tick(state: &AppState) -> anyhow::Result<usize> {
    let now = state.clock.now_ms();
    let due: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM incidents WHERE archive_at IS NOT NULL AND archive_at <= $1 AND state = 'resolved'
         ORDER BY archive_at LIMIT $2",
    )
    .bind(now)
    .bind(BATCH)
    .fetch_all(&state.store.pool)
    .await
    .context("listing rooms due for archive")?;
    let mut queued = 0;
    for id in due {
        let mut tx = state.store.begin_in_background().await?;
        let claimed = sqlx::query(
            "UPDATE incidents SET archive_at = NULL
             WHERE id = $1 AND archive_at IS NOT NULL AND archive_at <= $2 AND state = 'resolved'",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let Some(i) = db::get(&mut tx, id).await? else { continue };
        if !claimed {
            continue;
        }
        super::queue(&mut tx, &i, Step::Archive { channel: None }, None, now).await?;
        state.outbox.commit(tx).await?;
        tracing::info!(incident.id = id, "incident channel archive queued");
        queued += 1;
    }
    Ok(queued)
}

/// Schedule the archive of a resolved incident's room (resolve's transaction).
pub async fn schedule(conn: &mut sqlx::AnyConnection, incident_id: i64, at: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE incidents SET archive_at = $1 WHERE id = $2 AND room_state IN ('pending', 'made')")
        .bind(at)
        .bind(incident_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
