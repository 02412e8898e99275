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
         approver_level, approvals_needed, plan, plan_hash, state, decided_by, result"
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
    pub plan_hash: &'a str,
}

pub async fn insert(conn: &mut AnyConnection, n: NewRequest<'_>, now: i64) -> anyhow::Result<Request> {
    let row = sqlx::query(concat!(
        "INSERT INTO approval_requests (command, name, words, target, channel, incident_id, requested_by, requested_at,
           expires_at, approver_level, approvals_needed, plan, plan_hash, state, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'pending', $8) RETURNING ",
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
pub async fn claim_for_apply(conn: &mut AnyConnection, id: i64, now: i64) -> anyhow::Result<Option<ApprovedRequest>> {
    let done = sqlx::query(
        "UPDATE approval_requests SET state = 'applying', applying_at = $1, updated_at = $1 WHERE id = $2 AND state = 'approved'",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(None);
    }
    Ok(get(conn, id).await?.map(ApprovedRequest))
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

/// Requests whose time ran out while pending: each returned id was moved to
/// `expired` by this call only.
pub async fn expire_due(conn: &mut AnyConnection, now: i64) -> anyhow::Result<Vec<i64>> {
    let rows = sqlx::query(
        "UPDATE approval_requests SET state = 'expired', updated_at = $1
         WHERE state = 'pending' AND expires_at <= $1 RETURNING id",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    ids(&rows)
}

/// Requests left `applying` longer than any apply can take: the instance
/// applying them died. They are reported, never re-applied.
pub async fn interrupt_stale(conn: &mut AnyConnection, started_before: i64, now: i64) -> anyhow::Result<Vec<i64>> {
    let rows = sqlx::query(
        "UPDATE approval_requests SET state = 'interrupted', finished_at = $1, updated_at = $1,
           result = 'the bot stopped while applying; check the target before requesting again'
         WHERE state = 'applying' AND applying_at < $2 RETURNING id",
    )
    .bind(now)
    .bind(started_before)
    .fetch_all(&mut *conn)
    .await?;
    ids(&rows)
}

/// Approved requests nobody started (the approving instance stopped first).
pub async fn approved_unstarted(conn: &mut AnyConnection, decided_before: i64) -> anyhow::Result<Vec<i64>> {
    let rows = sqlx::query("SELECT id FROM approval_requests WHERE state = 'approved' AND decided_at < $1 ORDER BY id")
        .bind(decided_before)
        .fetch_all(&mut *conn)
        .await?;
    ids(&rows)
}

fn ids(rows: &[AnyRow]) -> anyhow::Result<Vec<i64>> {
    rows.iter().map(|r| Ok(r.try_get::<i64, _>("id")?)).collect()
}
