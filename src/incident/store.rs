//! SQL for incidents and their timeline. State changes are single
//! conditional updates (`... WHERE state <> 'resolved'`), so two clicks or
//! two replicas cannot both win.

use sqlx::{AnyConnection, FromRow, Row};

use super::model::{Incident, Severity, TimelineEvent};
use crate::store::group::LazyPersonTx;
pub use crate::store::timeline::add_event;

/// The incident columns, as a macro so queries stay `&'static str` literals
/// (sqlx refuses runtime-built SQL without an audit marker).
macro_rules! columns {
    () => {
        "id, channel, title, severity, state, status_text, commander, declared_by, declared_at, \
         acknowledged_by, acknowledged_at, resolved_by, resolved_at, summary, room_state, room_channel"
    };
}

pub async fn insert(
    conn: &mut AnyConnection,
    channel: &str,
    title: &str,
    severity: Severity,
    by: &str,
    service: Option<&str>,
    now: i64,
) -> anyhow::Result<Incident> {
    let row = sqlx::query(concat!(
        "INSERT INTO incidents (channel, title, severity, state, commander, declared_by, declared_at, updated_at, service)
         VALUES ($1, $2, $3, 'declared', $4, $4, $5, $5, $6) RETURNING ",
        columns!()
    ))
    .bind(channel)
    .bind(title)
    .bind(severity.as_str())
    .bind(by)
    .bind(now)
    .bind(service.map(str::to_string))
    .fetch_one(&mut *conn)
    .await?;
    Ok(Incident::from_row(&row)?)
}

pub async fn get(conn: &mut AnyConnection, id: i64) -> anyhow::Result<Option<Incident>> {
    let row = sqlx::query(concat!("SELECT ", columns!(), " FROM incidents WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(Incident::from_row).transpose()?)
}

pub async fn newest_open_in_channel(conn: &mut AnyConnection, channel: &str) -> anyhow::Result<Option<Incident>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM incidents WHERE channel = $1 AND state <> 'resolved' ORDER BY id DESC LIMIT 1"
    ))
    .bind(channel)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(Incident::from_row).transpose()?)
}

/// The newest open incident for a service (alerts attach to it).
pub async fn newest_open_for_service(conn: &mut AnyConnection, service: &str) -> anyhow::Result<Option<Incident>> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM incidents WHERE service = $1 AND state <> 'resolved' ORDER BY id DESC LIMIT 1"
    ))
    .bind(service)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(Incident::from_row).transpose()?)
}

/// Incidents nobody has acknowledged yet (escalation candidates).
pub async fn unacknowledged(conn: &mut AnyConnection) -> anyhow::Result<Vec<Incident>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM incidents WHERE state = 'declared' ORDER BY id"
    ))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(Incident::from_row).collect::<Result<_, _>>()?)
}

/// Acknowledged incidents with the time of their last human update.
pub async fn acknowledged_with_last_update(conn: &mut AnyConnection) -> anyhow::Result<Vec<(Incident, i64)>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        ", (SELECT MAX(e.occurred_at) FROM incident_events e WHERE e.incident_id = incidents.id
             AND e.kind IN ('declared', 'acknowledged', 'status', 'severity', 'assigned')) AS last_update
         FROM incidents WHERE state = 'acknowledged' ORDER BY id"
    ))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            let last: Option<i64> = r.try_get("last_update")?;
            let i = Incident::from_row(r)?;
            let at = last.unwrap_or(i.declared_at);
            Ok((i, at))
        })
        .collect()
}

pub async fn list_open(conn: &mut AnyConnection, limit: i64) -> anyhow::Result<Vec<Incident>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM incidents WHERE state <> 'resolved' ORDER BY severity ASC, id DESC LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(Incident::from_row).collect::<Result<_, _>>()?)
}

/// A conditional change.
pub enum Change<'a> {
    Acknowledge { by: &'a str },
    Status { text: &'a str },
    Severity { to: Severity },
    Assign { commander: &'a str },
    Resolve { by: &'a str, summary: Option<&'a str> },
}

/// Make `change` if the incident is in a state that allows it; returns the
/// incident as changed (`RETURNING`, so no second read), or `None` when this
/// call did not make it (no such incident, or its state forbids it).
pub async fn apply(tx: &mut LazyPersonTx, id: i64, change: Change<'_>, now: i64) -> anyhow::Result<Option<Incident>> {
    let sql = match change {
        Change::Acknowledge { .. } => concat!(
            "UPDATE incidents SET state = 'acknowledged', acknowledged_by = $1, acknowledged_at = $2, updated_at = $2
             WHERE id = $3 AND state = 'declared' RETURNING ",
            columns!()
        ),
        Change::Status { .. } => concat!(
            "UPDATE incidents SET status_text = $1, updated_at = $2 WHERE id = $3 AND state <> 'resolved' RETURNING ",
            columns!()
        ),
        Change::Severity { .. } => concat!(
            "UPDATE incidents SET severity = $1, updated_at = $2 WHERE id = $3 AND state <> 'resolved' RETURNING ",
            columns!()
        ),
        Change::Assign { .. } => concat!(
            "UPDATE incidents SET commander = $1, updated_at = $2 WHERE id = $3 AND state <> 'resolved' RETURNING ",
            columns!()
        ),
        Change::Resolve { .. } => concat!(
            "UPDATE incidents SET state = 'resolved', resolved_by = $1, resolved_at = $2, summary = $4, updated_at = $2
             WHERE id = $3 AND state <> 'resolved' RETURNING ",
            columns!()
        ),
    };
    // Often a person's first statement: it carries the prelude, if any.
    let rows = tx
        .fetch_all(sql, |q| {
            let q = match change {
                Change::Acknowledge { by } => q.bind(by.to_string()),
                Change::Status { text } => q.bind(text.to_string()),
                Change::Severity { to } => q.bind(to.as_str()),
                Change::Assign { commander } => q.bind(commander.to_string()),
                Change::Resolve { by, .. } => q.bind(by.to_string()),
            };
            let q = q.bind(now).bind(id);
            match change {
                Change::Resolve { summary, .. } => q.bind(summary.map(str::to_string)),
                _ => q,
            }
        })
        .await?;
    Ok(rows.first().map(Incident::from_row).transpose()?)
}

pub async fn timeline(conn: &mut AnyConnection, incident_id: i64) -> anyhow::Result<Vec<TimelineEvent>> {
    let rows = sqlx::query(
        "SELECT occurred_at, actor, kind, text FROM incident_events WHERE incident_id = $1 ORDER BY occurred_at, id",
    )
    .bind(incident_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(TimelineEvent::from_row).collect::<Result<_, _>>()?)
}

/// Reopen a resolved incident: back to acknowledged (or declared, if nobody
/// had acknowledged it), and a scheduled archive of its room is cancelled.
/// Returns the incident as reopened, or `None` when it was not resolved.
pub async fn reopen(conn: &mut AnyConnection, id: i64, now: i64) -> anyhow::Result<Option<Incident>> {
    let row = sqlx::query(concat!(
        "UPDATE incidents SET state = CASE WHEN acknowledged_at IS NULL THEN 'declared' ELSE 'acknowledged' END,
           resolved_by = NULL, resolved_at = NULL, archive_at = NULL, updated_at = $1
         WHERE id = $2 AND state = 'resolved' RETURNING ",
        columns!()
    ))
    .bind(now)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(Incident::from_row).transpose()?)
}
