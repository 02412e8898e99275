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

/// Take a due follow-up for `lease_ms` as `owner`; the attempt this is
/// (1 for the first), or `None` when another instance has it.
pub async fn claim(
    conn: &mut AnyConnection,
    id: i64,
    owner: &str,
    now: i64,
    lease_ms: i64,
) -> anyhow::Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "UPDATE followups SET state = 'running', lease_owner = $1, lease_until = $2, attempts = attempts + 1
         WHERE id = $3 AND ((state = 'scheduled' AND due_at <= $4) OR (state = 'running' AND lease_until < $4))
         RETURNING attempts",
    )
    .bind(owner)
    .bind(now + lease_ms)
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Extend `owner`'s lease; false when it lapsed and another instance took it.
pub async fn renew(conn: &mut AnyConnection, id: i64, owner: &str, until: i64) -> anyhow::Result<bool> {
    let done =
        sqlx::query("UPDATE followups SET lease_until = $1 WHERE id = $2 AND state = 'running' AND lease_owner = $3")
            .bind(until)
            .bind(id)
            .bind(owner)
            .execute(&mut *conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// `running → done | failed`, by the lease's owner only.
pub async fn finish(
    conn: &mut AnyConnection,
    id: i64,
    owner: &str,
    state: &str,
    result: &str,
    now: i64,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE followups SET state = $1, result = $2, finished_at = $3, lease_until = NULL, lease_owner = NULL
         WHERE id = $4 AND state = 'running' AND lease_owner = $5",
    )
    .bind(state)
    .bind(result)
    .bind(now)
    .bind(id)
    .bind(owner)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `running → scheduled` again, later (the target could not be reached),
/// by the lease's owner only.
pub async fn retry_at(conn: &mut AnyConnection, id: i64, owner: &str, due_at: i64, why: &str) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE followups SET state = 'scheduled', due_at = $1, result = $2, lease_until = NULL, lease_owner = NULL
         WHERE id = $3 AND state = 'running' AND lease_owner = $4",
    )
    .bind(due_at)
    .bind(why)
    .bind(id)
    .bind(owner)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `failed → scheduled`, due now, with its attempts counted afresh (a tech
/// lead fixed what made it fail); false unless it had failed.
pub async fn retry(conn: &mut AnyConnection, id: i64, now: i64) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE followups SET state = 'scheduled', due_at = $1, attempts = 0, finished_at = NULL
         WHERE id = $2 AND state = 'failed'",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
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

/// What is still to run, soonest first, then what failed (it needs a
/// person); at most `limit` of them, and how many there are in all.
pub async fn listed(conn: &mut AnyConnection, limit: i64) -> anyhow::Result<(Vec<Followup>, i64)> {
    let rows = sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM followups WHERE state IN ('scheduled', 'running', 'failed')
          ORDER BY CASE WHEN state = 'failed' THEN 1 ELSE 0 END, due_at, id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM followups WHERE state IN ('scheduled', 'running', 'failed')")
            .fetch_one(&mut *conn)
            .await?;
    Ok((rows, total))
}
