//! The console's reads, each bounded (a page, a limit) and answered from an
//! index: the incident list walks the primary key newest first from its
//! cursor and stops at a page; a timeline by `(incident_id, occurred_at,
//! id)`, an incident's approvals by `incident_id`, MTTA/MTTR by declaration
//! time (migration 0015).

use sqlx::{AnyPool, FromRow, Row};

use super::filters::IncidentFilter;
use crate::config::Level;
use crate::incident::model::Incident;

macro_rules! incident_columns {
    () => {
        "id, channel, title, severity, state, status_text, commander, declared_by, declared_at, \
         acknowledged_by, acknowledged_at, resolved_by, resolved_at, summary, room_state, room_channel, service"
    };
}

/// An incident with the service it is about, if any.
#[derive(Debug, Clone, FromRow)]
pub struct IncidentRow {
    #[sqlx(flatten)]
    pub incident: Incident,
    pub service: Option<String>,
}

/// One page of the incident list, newest first: `limit + 1` rows are read
/// so the page knows whether there is a next one.
pub async fn incidents(pool: &AnyPool, f: &IncidentFilter, limit: i64) -> anyhow::Result<Vec<IncidentRow>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        incident_columns!(),
        " FROM incidents
         WHERE ($1 IS NULL OR severity = $1) AND ($2 IS NULL OR state = $2) AND ($3 IS NULL OR service = $3)
           AND ($4 IS NULL OR declared_at >= $4) AND ($5 IS NULL OR declared_at < $5) AND id < $6
         ORDER BY id DESC LIMIT $7"
    ))
    .bind(f.severity.map(|s| s.as_str()))
    .bind(f.state.map(|s| s.as_str()))
    .bind(f.service.as_deref())
    .bind(f.from)
    .bind(f.to)
    // Always bound, so the cursor is a range on the primary key.
    .bind(f.before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(IncidentRow::from_row).collect::<Result<_, _>>()?)
}

pub async fn incident(pool: &AnyPool, id: i64) -> anyhow::Result<Option<IncidentRow>> {
    let row = sqlx::query(concat!("SELECT ", incident_columns!(), " FROM incidents WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(IncidentRow::from_row).transpose()?)
}

#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub occurred_at: i64,
    pub actor: String,
    pub kind: String,
    pub text: String,
}

impl EventRow {
    /// An approval's events (`action_requested`, `action_applied`, …) carry
    /// its detail: arguments, plan hash, the full result. Below the audit
    /// level they say only what happened, on the page, the chart and the
    /// Markdown alike.
    pub fn hide_approval_detail(events: &mut [EventRow], audit: Level) {
        for e in events.iter_mut().filter(|e| e.kind.starts_with("action_")) {
            let what = e.kind.replacen("action_", "Action ", 1).replace('_', " ");
            e.text = format!("{what} — details in the approvals audit ({audit})");
        }
    }
}

/// A page of the timeline, oldest first.
pub async fn timeline_page(pool: &AnyPool, id: i64, offset: i64, limit: i64) -> anyhow::Result<Vec<EventRow>> {
    let rows = sqlx::query(
        "SELECT occurred_at, actor, kind, text FROM incident_events WHERE incident_id = $1
         ORDER BY occurred_at, id LIMIT $2 OFFSET $3",
    )
    .bind(id)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(EventRow::from_row).collect::<Result<_, _>>()?)
}

pub async fn timeline_count(pool: &AnyPool, id: i64) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM incident_events WHERE incident_id = $1")
            .bind(id)
            .fetch_one(pool)
            .await?,
    )
}

/// An approval request in a list.
#[derive(Debug, Clone, FromRow)]
pub struct ApprovalRow {
    pub id: i64,
    pub command: String,
    pub name: String,
    pub target: String,
    pub incident_id: Option<i64>,
    pub requested_by: String,
    pub requested_at: i64,
    pub state: String,
    pub plan_hash: String,
    pub decided_by: Option<String>,
}

macro_rules! approval_columns {
    () => {
        "id, command, name, target, incident_id, requested_by, requested_at, state, plan_hash, decided_by"
    };
}

pub async fn approvals_of(pool: &AnyPool, incident: i64) -> anyhow::Result<Vec<ApprovalRow>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        approval_columns!(),
        " FROM approval_requests WHERE incident_id = $1 ORDER BY id LIMIT 200"
    ))
    .bind(incident)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(ApprovalRow::from_row).collect::<Result<_, _>>()?)
}

/// `%text%` for LIKE, with LIKE's own wildcards taken literally.
pub fn like_pattern(q: &str) -> String {
    let escaped = q
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// The approvals audit, newest first, searched (case-insensitively) in the
/// requester, approvers, command, plan rows, plan hash, what ran (the
/// stored definition), the result and the audit trail.
pub async fn approvals(pool: &AnyPool, q: Option<&str>, offset: i64, limit: i64) -> anyhow::Result<Vec<ApprovalRow>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        approval_columns!(),
        " FROM approval_requests r WHERE $1 IS NULL
           OR LOWER(r.requested_by) LIKE $1 ESCAPE '\\' OR LOWER(r.command) LIKE $1 ESCAPE '\\'
           OR LOWER(r.name) LIKE $1 ESCAPE '\\' OR LOWER(r.words) LIKE $1 ESCAPE '\\'
           OR LOWER(r.plan_hash) LIKE $1 ESCAPE '\\' OR LOWER(r.plan) LIKE $1 ESCAPE '\\'
           OR LOWER(COALESCE(r.result, '')) LIKE $1 ESCAPE '\\' OR LOWER(COALESCE(r.snapshot, '')) LIKE $1 ESCAPE '\\'
           OR LOWER(COALESCE(r.decided_by, '')) LIKE $1 ESCAPE '\\'
           OR EXISTS (SELECT 1 FROM approval_votes v WHERE v.request_id = r.id AND LOWER(v.approver) LIKE $1 ESCAPE '\\')
           OR EXISTS (SELECT 1 FROM audit_events a WHERE a.request_id = r.id AND LOWER(a.detail) LIKE $1 ESCAPE '\\')
         ORDER BY r.id DESC LIMIT $2 OFFSET $3"
    ))
    .bind(q.map(like_pattern))
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(ApprovalRow::from_row).collect::<Result<_, _>>()?)
}

/// A vote on a request.
pub struct Vote {
    pub approver: String,
    pub at: i64,
}

pub async fn votes(pool: &AnyPool, request: i64) -> anyhow::Result<Vec<Vote>> {
    let rows =
        sqlx::query("SELECT approver, voted_at FROM approval_votes WHERE request_id = $1 ORDER BY voted_at, approver")
            .bind(request)
            .fetch_all(pool)
            .await?;
    rows.iter()
        .map(|r| {
            Ok(Vote {
                approver: r.try_get("approver")?,
                at: r.try_get("voted_at")?,
            })
        })
        .collect()
}

#[derive(Debug, Clone, FromRow)]
pub struct AuditRow {
    pub at: i64,
    pub actor: String,
    pub kind: String,
    pub detail: String,
    pub via: Option<String>,
}

pub async fn audit_of(pool: &AnyPool, request: i64) -> anyhow::Result<Vec<AuditRow>> {
    let rows = sqlx::query(
        "SELECT at, actor, kind, detail, via FROM audit_events WHERE request_id = $1 ORDER BY id LIMIT 500",
    )
    .bind(request)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(AuditRow::from_row).collect::<Result<_, _>>()?)
}

/// One week of incidents declared in it: how many, and the summed and
/// counted times to acknowledge and to resolve (ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Week {
    pub index: i64,
    pub declared: i64,
    pub ack_sum: i64,
    pub acked: i64,
    pub resolve_sum: i64,
    pub resolved: i64,
}

pub async fn weeks(pool: &AnyPool, since: i64) -> anyhow::Result<Vec<Week>> {
    let rows = sqlx::query(
        "SELECT (declared_at - $1) / 604800000 AS w, COUNT(*) AS declared,
                CAST(COALESCE(SUM(acknowledged_at - declared_at), 0) AS BIGINT) AS ack_sum,
                COUNT(acknowledged_at) AS acked,
                CAST(COALESCE(SUM(resolved_at - declared_at), 0) AS BIGINT) AS resolve_sum,
                COUNT(resolved_at) AS resolved
         FROM incidents WHERE declared_at >= $1 GROUP BY (declared_at - $1) / 604800000 ORDER BY w",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Week {
                index: r.try_get("w")?,
                declared: r.try_get("declared")?,
                ack_sum: r.try_get("ack_sum")?,
                acked: r.try_get("acked")?,
                resolve_sum: r.try_get("resolve_sum")?,
                resolved: r.try_get("resolved")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_events_lose_their_detail_below_the_audit() {
        let event = |kind: &str, text: &str| EventRow {
            occurred_at: 0,
            actor: "U0LEAD".into(),
            kind: kind.into(),
            text: text.into(),
        };
        let mut events = vec![
            event("action_requested", "/rollback flag x plan 1a2b3c"),
            event("action_applied", "UPDATE flags SET … 3 rows"),
            event("status", "rolling back"),
        ];
        EventRow::hide_approval_detail(&mut events, Level::L3);
        let texts: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Action requested — details in the approvals audit (l3)",
                "Action applied — details in the approvals audit (l3)",
                "rolling back",
            ]
        );
    }

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(like_pattern("AbC"), "%abc%");
        assert_eq!(like_pattern("50%_off\\"), "%50\\%\\_off\\\\%");
    }
}
