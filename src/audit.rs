//! The bot's own audit log. Every approval request, decision, refusal,
//! application and verification is recorded here, in the same transaction
//! as the change it describes, and mirrored onto the incident's timeline so
//! `/incident timeline` and the postmortem show it. Each row says where the
//! act came from: Slack, or a terminal and the operating-system user at it.

use sqlx::AnyConnection;

use crate::origin::Origin;
use crate::store::timeline;

pub struct Event<'a> {
    pub actor: &'a str,
    pub kind: &'a str,
    pub request_id: Option<i64>,
    pub incident_id: Option<i64>,
    pub detail: &'a str,
    /// `slack`, `terminal (os user …)`, or `bot` for the bot's own acts.
    pub via: String,
}

impl<'a> Event<'a> {
    /// Something a person did, from where they did it.
    pub fn new(origin: &'a Origin, kind: &'a str, detail: &'a str) -> Event<'a> {
        Event {
            actor: origin.user.as_str(),
            kind,
            request_id: None,
            incident_id: None,
            detail,
            via: origin.via.describe(),
        }
    }

    /// Something the bot did on its own (a worker, an executor).
    pub fn bot(kind: &'a str, detail: &'a str) -> Event<'a> {
        Event {
            actor: "bot",
            kind,
            request_id: None,
            incident_id: None,
            detail,
            via: "bot".into(),
        }
    }

    pub fn about(mut self, request_id: Option<i64>, incident_id: Option<i64>) -> Self {
        self.request_id = request_id;
        self.incident_id = incident_id;
        self
    }
}

pub async fn record(conn: &mut AnyConnection, e: Event<'_>, now: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (at, actor, kind, request_id, incident_id, detail, via) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(now)
    .bind(e.actor)
    .bind(e.kind)
    .bind(e.request_id)
    .bind(e.incident_id)
    .bind(e.detail)
    .bind(&e.via)
    .execute(&mut *conn)
    .await?;
    if let Some(incident) = e.incident_id {
        timeline::add_event(conn, incident, now, e.actor, e.kind, e.detail).await?;
    }
    Ok(())
}
