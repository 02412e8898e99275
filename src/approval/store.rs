//! Approval requests in the state store. Every transition is one
//! conditional UPDATE (`... WHERE state = 'pending'`), so double clicks,
//! concurrent approvers and several bot instances cannot both win:
//! `pending → approved → applying → applied | failed | rolled_back`, or
//! `pending → denied | expired`, and `applying → interrupted` after a crash.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, FromRow, Row};

use crate::config::Level;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Approved,
    Applying,
    Applied,
    Failed,
    RolledBack,
    Denied,
    Expired,
    Interrupted,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Applying => "applying",
            State::Applied => "applied",
            State::Failed => "failed",
            State::RolledBack => "rolled_back",
            State::Denied => "denied",
            State::Expired => "expired",
            State::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "pending" => State::Pending,
            "approved" => State::Approved,
            "applying" => State::Applying,
            "applied" => State::Applied,
            "failed" => State::Failed,
            "rolled_back" => State::RolledBack,
            "denied" => State::Denied,
            "expired" => State::Expired,
            "interrupted" => State::Interrupted,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Request {
    pub id: i64,
    pub command: String,
    pub name: String,
    /// The words the requester typed after the command, re-parsed on apply.
    #[sqlx(try_from = "String")]
    pub words: Words,
    pub target: String,
    pub channel: String,
    pub incident_id: Option<i64>,
    pub requested_by: String,
    pub requested_at: i64,
    pub expires_at: i64,
    #[sqlx(try_from = "String")]
    pub approver_level: Level,
    pub approvals_needed: i64,
    pub plan: String,
    pub plan_hash: String,
    #[sqlx(try_from = "String")]
    pub state: State,
    pub decided_by: Option<String>,
    pub result: Option<String>,
    /// The action's definition when requested (JSON of `Snapshot`).
    pub snapshot: Option<String>,
    pub lease_until: Option<i64>,
    /// The apply transaction's id on the target, recorded just before COMMIT.
    pub target_xid: Option<String>,
}

/// The words typed after the command, stored as a JSON array.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Words(pub Vec<String>);

impl std::ops::Deref for Words {
    type Target = Vec<String>;
    fn deref(&self) -> &Vec<String> {
        &self.0
    }
}

impl TryFrom<String> for Words {
    type Error = serde_json::Error;
    fn try_from(json: String) -> Result<Self, Self::Error> {
        serde_json::from_str(&json).map(Words)
    }
}

impl TryFrom<String> for State {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        State::parse(&s).ok_or_else(|| format!("stored approval state `{s}`"))
    }
}

impl Request {
    /// The command as a safe mrkdwn code span (the words may hold a typed
    /// reason, which must not mention or format).
    pub fn label_md(&self) -> String {
        format!(
            "`{}`",
            crate::slack::text::escape_entities(&self.label()).replace('`', "'")
        )
    }

    /// `/rollback flag`: for log lines, which never carry typed words.
    pub fn kind_name(&self) -> String {
        format!("{} {}", self.command, self.name).trim_end().to_string()
    }

    pub fn label(&self) -> String {
        let words = self.words.join(" ");
        let sub = if self.name.is_empty() {
            String::new()
        } else {
            format!(" {}", self.name)
        };
        format!("{}{sub} {words}", self.command).trim_end().to_string()
    }
}

/// A request that this caller moved from `approved` to `applying`. Only
/// `claim_for_apply` can make one, and the executor accepts nothing else:
/// no path applies an action without an approval row in `approved`.
#[derive(Debug)]
pub struct ApprovedRequest(Request);

impl ApprovedRequest {
    pub fn request(&self) -> &Request {
        &self.0
    }
}

macro_rules! columns {
    () => {
        "id, command, name, words, target, channel, incident_id, requested_by, requested_at, expires_at, \
         approver_level, approvals_needed, plan, plan_hash, state, decided_by, result, snapshot, lease_until, target_xid"
    };
}

pub struct NewRequest<'a> {
    pub command: &'a str,
    pub name: &'a str,
    pub words: &'a [String],
    pub target: &'a str,
    pub channel: &'a str,
    pub incident_id: Option<i64>,
    pub requested_by: &'a str,
    pub expires_at: i64,
    pub approver_level: Level,
    pub approvals_needed: i64,
    pub plan: &'a str,
    pub snapshot: &'a str,
    pub plan_hash: &'a str,
}

pub async fn insert(conn: &mut AnyConnection, n: NewRequest<'_>, now: i64) -> anyhow::Result<Request> {
    let row = sqlx::query(concat!(
        "INSERT INTO approval_requests (command, name, words, target, channel, incident_id, requested_by, requested_at,
           expires_at, approver_level, approvals_needed, plan, plan_hash, state, updated_at, snapshot)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'pending', $8, $14) RETURNING ",
        columns!()
    ))
    .bind(n.command)
    .bind(n.name)
    .bind(serde_json::to_string(n.words)?)
    .bind(n.target)
    .bind(n.channel)
    .bind(n.incident_id)
    .bind(n.requested_by)
    .bind(now)
    .bind(n.expires_at)
    .bind(n.approver_level.to_string())
    .bind(n.approvals_needed)
    .bind(n.plan)
    .bind(n.plan_hash)
    .bind(n.snapshot)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Request::from_row(&row)?)
}

pub async fn get(conn: &mut AnyConnection, id: i64) -> anyhow::Result<Option<Request>> {
    let row = sqlx::query(concat!("SELECT ", columns!(), " FROM approval_requests WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(Request::from_row).transpose()?)
}

/// Take the request's row lock for the rest of the transaction.
pub async fn lock(conn: &mut AnyConnection, id: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE approval_requests SET updated_at = updated_at WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Record one approver's vote; false when this approver already voted.
pub async fn vote(conn: &mut AnyConnection, id: i64, approver: &str, now: i64) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO approval_votes (request_id, approver, voted_at) VALUES ($1, $2, $3) ON CONFLICT (request_id, approver) DO NOTHING",
    )
    .bind(id)
    .bind(approver)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn votes(conn: &mut AnyConnection, id: i64) -> anyhow::Result<Vec<String>> {
    let rows = sqlx::query("SELECT approver FROM approval_votes WHERE request_id = $1 ORDER BY voted_at, approver")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(|r| Ok(r.try_get::<String, _>("approver")?)).collect()
}

/// `pending → approved` once enough votes are in and it has not expired.
pub async fn approve(conn: &mut AnyConnection, id: i64, by: &str, now: i64) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE approval_requests SET state = 'approved', decided_by = $1, decided_at = $2, updated_at = $2
         WHERE id = $3 AND state = 'pending' AND expires_at > $2
           AND (SELECT COUNT(*) FROM approval_votes v WHERE v.request_id = $3) >= approvals_needed",
    )
    .bind(by)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `pending → denied`: final.
pub async fn deny(conn: &mut AnyConnection, id: i64, by: &str, now: i64) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE approval_requests SET state = 'denied', decided_by = $1, decided_at = $2, updated_at = $2
         WHERE id = $3 AND state = 'pending'",
    )
    .bind(by)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `approved → applying`, returning the only handle the executor accepts.
/// An approval that has expired meanwhile is not applied (the worker marks it).
pub async fn claim_for_apply(
    conn: &mut AnyConnection,
    id: i64,
    now: i64,
    lease_ms: i64,
) -> anyhow::Result<Option<ApprovedRequest>> {
    let done = sqlx::query(
        "UPDATE approval_requests SET state = 'applying', applying_at = $1, lease_until = $2, updated_at = $1
         WHERE id = $3 AND state = 'approved' AND expires_at > $1",
    )
    .bind(now)
    .bind(now + lease_ms)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(None);
    }
    Ok(get(conn, id).await?.map(ApprovedRequest))
}

/// The applying instance is still at work.
pub async fn renew_lease(conn: &mut AnyConnection, id: i64, now: i64, lease_ms: i64) -> anyhow::Result<bool> {
    let done = sqlx::query("UPDATE approval_requests SET lease_until = $1 WHERE id = $2 AND state = 'applying'")
        .bind(now + lease_ms)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Remember the target transaction about to commit; false when the request
/// is no longer ours to apply (then the caller must not commit).
pub async fn record_xid(conn: &mut AnyConnection, id: i64, xid: &str) -> anyhow::Result<bool> {
    let done = sqlx::query("UPDATE approval_requests SET target_xid = $1 WHERE id = $2 AND state = 'applying'")
        .bind(xid)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// `applying → applied | failed | rolled_back`.
pub async fn finish(conn: &mut AnyConnection, id: i64, to: State, result: &str, now: i64) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE approval_requests SET state = $1, result = $2, finished_at = $3, updated_at = $3
         WHERE id = $4 AND state = 'applying'",
    )
    .bind(to.as_str())
    .bind(result)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Requests whose time ran out before anyone applied them: pending ones
/// nobody approved, and approved ones no instance started. Each returned id
/// was moved to `expired` by this call only.
pub async fn expire_due(conn: &mut AnyConnection, now: i64) -> anyhow::Result<Vec<i64>> {
    let rows = sqlx::query(
        "UPDATE approval_requests SET state = 'expired', updated_at = $1,
           result = CASE WHEN state = 'approved' THEN 'approved, but not applied before it expired; nothing was changed'
                         ELSE result END
         WHERE state IN ('pending', 'approved') AND expires_at <= $1 RETURNING id",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    ids(&rows)
}

/// Requests left `applying` past their lease: the instance applying them
/// stopped renewing it. (Rows from before leases fall back to 10 minutes.)
pub async fn abandoned(conn: &mut AnyConnection, now: i64) -> anyhow::Result<Vec<Request>> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM approval_requests WHERE state = 'applying' AND COALESCE(lease_until, applying_at + 600000) < $1 ORDER BY id"
    ))
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(Request::from_row).collect::<Result<_, _>>()?)
}

/// Record how an abandoned apply ended, unless its instance came back.
pub async fn finish_abandoned(
    conn: &mut AnyConnection,
    id: i64,
    to: State,
    result: &str,
    now: i64,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE approval_requests SET state = $1, result = $2, finished_at = $3, updated_at = $3
         WHERE id = $4 AND state = 'applying' AND COALESCE(lease_until, applying_at + 600000) < $3",
    )
    .bind(to.as_str())
    .bind(result)
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Approved requests nobody started (the approving instance stopped first).
pub async fn approved_unstarted(conn: &mut AnyConnection, decided_before: i64, now: i64) -> anyhow::Result<Vec<i64>> {
    let rows = sqlx::query(
        "SELECT id FROM approval_requests WHERE state = 'approved' AND decided_at < $1 AND expires_at > $2 ORDER BY id",
    )
    .bind(decided_before)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    ids(&rows)
}

fn ids(rows: &[AnyRow]) -> anyhow::Result<Vec<i64>> {
    rows.iter().map(|r| Ok(r.try_get::<i64, _>("id")?)).collect()
}
