//! The bot's own audit log. Every approval request, decision, refusal,
//! application and verification is recorded here, in the same transaction
//! as the change it describes, and mirrored onto the incident's timeline so
//! `/incident timeline` and the postmortem show it.

use sqlx::AnyConnection;

use crate::store::timeline;

pub struct Event<'a> {
    pub actor: &'a str,
    pub kind: &'a str,
    pub request_id: Option<i64>,
    pub incident_id: Option<i64>,
    pub detail: &'a str,
}

pub async fn record(conn: &mut AnyConnection, e: Event<'_>, now: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (at, actor, kind, request_id, incident_id, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(now)
    .bind(e.actor)
    .bind(e.kind)
    .bind(e.request_id)
    .bind(e.incident_id)
    .bind(e.detail)
    .execute(&mut *conn)
    .await?;
    if let Some(incident) = e.incident_id {
        timeline::add_event(conn, incident, now, e.actor, e.kind, e.detail).await?;
    }
    Ok(())
}
