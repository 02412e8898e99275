//! Follow-ups in the state store. Each transition is one conditional
//! update, so two instances never run one follow-up twice at once and a
//! cancelled one never runs.

use sqlx::{AnyConnection, FromRow};

#[derive(Debug, Clone, FromRow)]
pub struct Followup {
    pub id: i64,
    pub request_id: i64,
    pub title: String,
    pub due_at: i64,
    pub state: String,
    pub attempts: i64,
    pub result: Option<String>,
}

macro_rules! columns {
    () => {
        "id, request_id, title, due_at, state, attempts, result"
    };
}

/// Schedule a request's follow-up (once per request); its id.
pub async fn schedule(
    conn: &mut AnyConnection,
    request_id: i64,
    title: &str,
    due_at: i64,
    now: i64,
) -> anyhow::Result<Option<i64>> {
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO followups (request_id, title, due_at, state, created_at) VALUES ($1, $2, $3, 'scheduled', $4)
         ON CONFLICT (request_id) DO NOTHING RETURNING id",
    )
    .bind(request_id)
    .bind(title)
    .bind(due_at)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(id)
}

/// Follow-ups due now, or running under a lease that lapsed (the instance
/// running them stopped; running one again is safe: it is keyed).
pub async fn due(conn: &mut AnyConnection, now: i64) -> anyhow::Result<Vec<Followup>> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM followups WHERE (state = 'scheduled' AND due_at <= $1) OR (state = 'running' AND lease_until < $1)
          ORDER BY due_at, id LIMIT 20"
    ))
    .bind(now)
    .fetch_all(&mut *conn)
    .await?)
}

/// Take a due follow-up for `lease_ms`; false when another instance has it.
pub async fn claim(conn: &mut AnyConnection, id: i64, now: i64, lease_ms: i64) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE followups SET state = 'running', lease_until = $1, attempts = attempts + 1
         WHERE id = $2 AND ((state = 'scheduled' AND due_at <= $3) OR (state = 'running' AND lease_until < $3))",
    )
    .bind(now + lease_ms)
    .bind(id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `running → done | failed`.
pub async fn finish(conn: &mut AnyConnection, id: i64, state: &str, result: &str, now: i64) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE followups SET state = $1, result = $2, finished_at = $3, lease_until = NULL
         WHERE id = $4 AND state = 'running'",
    )
    .bind(state)
    .bind(result)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `running → scheduled` again, later (the target could not be reached).
pub async fn retry_at(conn: &mut AnyConnection, id: i64, due_at: i64, why: &str) -> anyhow::Result<()> {
    sqlx::query("UPDATE followups SET state = 'scheduled', due_at = $1, result = $2, lease_until = NULL WHERE id = $3 AND state = 'running'")
        .bind(due_at)
        .bind(why)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// `scheduled → cancelled`; false when it already ran or was cancelled.
pub async fn cancel(conn: &mut AnyConnection, id: i64, by: &str, now: i64) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE followups SET state = 'cancelled', cancelled_by = $1, finished_at = $2 WHERE id = $3 AND state = 'scheduled'",
    )
    .bind(by)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn get(conn: &mut AnyConnection, id: i64) -> anyhow::Result<Option<Followup>> {
    Ok(
        sqlx::query_as(concat!("SELECT ", columns!(), " FROM followups WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// What is still to run, soonest first.
pub async fn scheduled(conn: &mut AnyConnection, limit: i64) -> anyhow::Result<Vec<Followup>> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM followups WHERE state IN ('scheduled', 'running') ORDER BY due_at, id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}
