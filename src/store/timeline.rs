//! The incidents' timeline table (`incident_events`): written by incidents,
//! alerts, diagnostics, approvals and the outbox (a delivery that failed for
//! good), so it lives here, below all of them.

use sqlx::AnyConnection;

/// Append one event to an incident's timeline, in the caller's transaction.
pub async fn add_event(
    conn: &mut AnyConnection,
    incident_id: i64,
    at: i64,
    actor: &str,
    kind: &str,
    text: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO incident_events (incident_id, occurred_at, actor, kind, text) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(incident_id)
    .bind(at)
    .bind(actor)
    .bind(kind)
    .bind(text)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
