//! Runs follow-ups when they fall due, one instance at a time per
//! follow-up (a lease), and reports each in its request's thread.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::Connection;
use tokio_util::sync::CancellationToken;

use super::store::{self, Followup};
use crate::approval::executor::{Approved, stored};
use crate::approval::store as requests;
use crate::approval::{notify, plan};
use crate::audit::{self, Event};
use crate::slack::text::visible;
use crate::state::AppState;
use crate::targets::StepError;
use crate::targets::exact::execute_returning;

const TICK: Duration = Duration::from_secs(5);
const LEASE_MS: i64 = 10 * 60_000;
/// The lease is renewed this often while the statement runs, so a long run
/// is never taken over by another instance.
const RENEW: Duration = Duration::from_secs(200);
/// A run that could not start (target or state store unreachable) is tried
/// again after 5 minutes, doubling up to 6 hours…
const FIRST_RETRY_MS: i64 = 5 * 60_000;
const LONGEST_RETRY_MS: i64 = 6 * 3_600_000;
/// …this many times (about two days in all) before it is reported failed;
/// `/scheduled retry` starts it again.
pub const MAX_ATTEMPTS: i64 = 14;

pub async fn run(state: Arc<AppState>, cancel: CancellationToken) {
    // Leases name their holder, so an instance whose lease lapsed cannot
    // record over the one that took the follow-up over.
    let owner = uuid::Uuid::new_v4().to_string();
    loop {
        if let Err(e) = tick(&state, &owner).await {
            tracing::warn!(error = ?e, "follow-up step failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// How one run ended.
#[derive(Debug)]
enum Ran {
    /// Every approved key was handled (done, or already gone).
    Done(String),
    /// It ran, but some approved rows no longer qualified and were left.
    Incomplete(String),
    Failed(String),
    /// Nothing happened; try again later.
    Retry(String),
}

/// Run what is due now, as `owner`.
pub async fn tick(state: &AppState, owner: &str) -> anyhow::Result<()> {
    let due = {
        let mut conn = state.store.pool.acquire().await?;
        store::due(&mut conn, state.clock.now_ms())
            .await
            .context("reading due follow-ups")?
    };
    for f in due {
        // Each claim with the time it is made: a batch can take a while.
        let attempt = {
            let mut tx = state.store.begin().await?;
            let attempt = store::claim(&mut tx, f.id, owner, state.clock.now_ms(), LEASE_MS).await?;
            tx.commit().await?;
            attempt
        };
        let Some(attempt) = attempt else { continue };
        let ran = leased(state, f.id, owner, execute(state, &f)).await;
        record(state, &f, owner, attempt, ran)
            .await
            .with_context(|| format!("recording follow-up {}", f.id))?;
    }
    Ok(())
}

/// Run `work` while renewing the lease. A lapsed lease cannot stop a
/// statement midway; the run finishes, and `record` then finds the
/// follow-up is no longer its to record (the statement is keyed, so the
/// instance that took over changes nothing twice).
async fn leased(state: &AppState, id: i64, owner: &str, work: impl std::future::Future<Output = Ran>) -> Ran {
    tokio::pin!(work);
    loop {
        tokio::select! {
            ran = &mut work => return ran,
            _ = tokio::time::sleep(RENEW) => {
                let until = state.clock.now_ms() + LEASE_MS;
                let renewed = match state.store.writer.acquire().await {
                    Ok(mut conn) => store::renew(&mut conn, id, owner, until).await.unwrap_or(false),
                    Err(_) => false,
                };
                if !renewed {
                    tracing::warn!(followup.id = id, "follow-up lease could not be renewed");
                }
            }
        }
    }
}

/// A state-store problem: logged with a reference, retried, and shown in
/// Slack only as that reference.
fn internal(e: impl std::fmt::Debug, what: &str) -> Ran {
    let id = crate::error::correlation_id();
    tracing::error!(correlation_id = %id, error = ?e, "follow-up: {what}");
    Ran::Retry(format!("internal error (ref {id})"))
}

async fn execute(state: &AppState, f: &Followup) -> Ran {
    let r = match state.store.pool.acquire().await {
        Ok(mut conn) => requests::get(&mut conn, f.request_id).await,
        Err(e) => return internal(e, "reading its approval request"),
    };
    let r = match r {
        Ok(Some(r)) => r,
        Ok(None) => return Ran::Failed("its approval request is gone".into()),
        Err(e) => return internal(e, "reading its approval request"),
    };
    let a = match stored(&r) {
        Ok(a) => a,
        Err(e) => return Ran::Failed(e.to_string()),
    };
    let Some(target) = state.targets.get(&r.target) else {
        return Ran::Failed(format!("no target `{}` in the config", r.target));
    };
    if let Some(refused) = blind(target, &a).await {
        return refused;
    }
    let mut conn = match target.acquire().await {
        Ok(c) => c,
        Err(e) => return Ran::Retry(format!("target {} {e}", target.name)),
    };
    match keyed(&mut conn, &a).await {
        Ok(k) => k.ran(),
        Err(StepError::Unreachable(why)) => Ran::Retry(format!("target {}: {why}", target.name)),
        Err(e @ (StepError::Timeout(_) | StepError::Conflict)) => Ran::Retry(format!("target {}: {e}", target.name)),
        Err(e) => Ran::Failed(format!("target {}: {e}; nothing was changed", target.name)),
    }
}

/// Row-level security that hides rows of the table the follow-up writes
/// from the target's role would make it match nothing and report success:
/// checked now, not only when the action was requested a month ago.
async fn blind(target: &crate::targets::Target, a: &Approved) -> Option<Ran> {
    let f = a.snapshot.def.followup.as_ref()?;
    let relations = match crate::catalog::relations::relations(&f.sql) {
        Ok(r) => r,
        Err(e) => return Some(Ran::Failed(format!("its statement cannot be read: {e}"))),
    };
    match target.visibility(&relations).await {
        Ok(v) if v.hidden().is_empty() => None,
        Ok(v) => Some(Ran::Failed(format!(
            "role `{}` cannot see all rows of {}; nothing was changed",
            v.role,
            crate::targets::rls::some_of(&v.hidden(), 5)
        ))),
        Err(e) => Some(Ran::Retry(format!("target {} {e}", target.name))),
    }
}

/// What a keyed run did with each approved key.
struct Keyed {
    done: Vec<String>,
    /// Approved keys whose rows no longer exist.
    gone: Vec<String>,
    /// Approved keys whose rows exist but no longer qualify (a restored
    /// user, say): left as they are.
    left: Vec<String>,
}

impl Keyed {
    fn ran(self) -> Ran {
        let mut text = format!("done for {}: {}", self.done.len(), list(self.done.iter()));
        if !self.gone.is_empty() {
            text.push_str(&format!("; already gone: {}", list(self.gone.iter())));
        }
        if self.left.is_empty() {
            return Ran::Done(text);
        }
        text.push_str(&format!(
            "; left as they are, no longer qualifying: {}",
            list(self.left.iter())
        ));
        Ran::Incomplete(text)
    }
}

/// Run the follow-up's statement in one SERIALIZABLE transaction; every
/// row it returns must be an approved key. Approved keys it did not return
/// are looked up again: gone, or still there and no longer qualifying.
async fn keyed(conn: &mut sqlx::PgConnection, a: &Approved) -> Result<Keyed, StepError> {
    let Some(f) = &a.snapshot.def.followup else {
        return Err(StepError::other("the approved action has no follow-up"));
    };
    let table = a
        .plan
        .table(&f.plan)
        .ok_or_else(|| StepError::other(format!("the plan has no step `{}`", f.plan)))?;
    let key = table
        .key
        .clone()
        .ok_or_else(|| StepError::other(format!("plan step `{}` has no key", f.plan)))?;
    let approved = table.keys();
    let mut tx = conn
        .begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE")
        .await
        .map_err(|e| crate::targets::classify(&e, 0))?;
    let timeout = a.snapshot.def.apply_timeout_ms;
    let settings = format!("SET LOCAL statement_timeout = {timeout}; {}", plan::SESSION_SETTINGS);
    sqlx::raw_sql(sqlx::AssertSqlSafe(settings))
        .execute(&mut *tx)
        .await
        .map_err(|e| crate::targets::classify(&e, timeout))?;
    let returned = execute_returning(&mut tx, &f.sql, &a.params(&f.params, None), timeout).await?;
    let col = returned.columns.iter().position(|c| *c == key);
    let done: Vec<String> = returned
        .rows
        .iter()
        .filter_map(|r| col.and_then(|i| r[i].clone()))
        .collect();
    if let Some(stray) = done.iter().find(|k| !approved.contains(k)) {
        return Err(StepError::other(format!(
            "it returned a row the plan did not show ({key} {}); rolled back",
            visible(stray)
        )));
    }
    let missing: Vec<String> = approved.iter().filter(|k| !done.contains(k)).cloned().collect();
    let left = still_there(&mut tx, f, &missing, timeout).await?;
    tx.commit().await.map_err(|e| crate::targets::classify(&e, timeout))?;
    let gone = missing.into_iter().filter(|k| !left.contains(k)).collect();
    Ok(Keyed { done, gone, left })
}

/// Which of `keys` still have a row in the table the statement writes,
/// found by the column its `<col> = ANY($n)` filter restricts for the plan's
/// keys (the same rules `check` holds a follow-up to).
async fn still_there(
    tx: &mut sqlx::PgConnection,
    f: &crate::catalog::schema::FollowupDef,
    keys: &[String],
    timeout: u64,
) -> Result<Vec<String>, StepError> {
    use crate::catalog::sql_guard::{ApplyShape, apply_shape, written_table};
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let n = f
        .params
        .iter()
        .position(|p| *p == format!("plan.{}", f.plan))
        .map(|i| i + 1);
    let column = match apply_shape(&f.sql) {
        Ok(ApplyShape::Filtered { any_filters, .. }) => {
            any_filters.into_iter().find(|(_, k)| Some(*k) == n).map(|(c, _)| c)
        }
        _ => None,
    };
    let (Some(table), Some(column)) = (written_table(&f.sql), column) else {
        return Err(StepError::other("cannot tell which rows its statement writes"));
    };
    // Both names come from the catalog file, which `check` parsed; neither
    // is typed by a person.
    let sql = format!("SELECT {column}::text AS k FROM {table} WHERE {column}::text = ANY($1) ORDER BY 1");
    let rows = execute_returning(
        tx,
        &sql,
        &[crate::catalog::args::Bound::TextList(keys.to_vec())],
        timeout,
    )
    .await?;
    Ok(rows
        .rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect())
}

fn list<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<String> = keys.map(|k| visible(k)).collect();
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

/// How long to wait before attempt `attempt + 1`: doubling from 5 minutes,
/// at most 6 hours.
fn retry_delay_ms(attempt: i64) -> i64 {
    let doublings = u32::try_from(attempt.clamp(1, 20) - 1).unwrap_or(0);
    FIRST_RETRY_MS.saturating_mul(1 << doublings).min(LONGEST_RETRY_MS)
}

/// How a finished run is recorded: its state, audit kind, thread emoji.
fn outcome(ran: &Ran) -> (&'static str, &'static str, &'static str) {
    match ran {
        Ran::Done(_) => ("done", "followup_done", ":white_check_mark:"),
        Ran::Incomplete(_) => ("done", "followup_incomplete", ":warning:"),
        Ran::Failed(_) | Ran::Retry(_) => ("failed", "followup_failed", ":x:"),
    }
}

/// Record the outcome of attempt `attempt`, audit it and tell the
/// request's thread; nothing when the lease is no longer `owner`'s.
async fn record(state: &AppState, f: &Followup, owner: &str, attempt: i64, ran: Ran) -> anyhow::Result<()> {
    let now = state.clock.now_ms();
    let mut tx = state.store.begin().await?;
    if let Ran::Retry(why) = &ran
        && attempt < MAX_ATTEMPTS
    {
        if store::retry_at(&mut tx, f.id, owner, now + retry_delay_ms(attempt), why).await? {
            tx.commit().await?;
            tracing::warn!(followup.id = f.id, attempt, reason = %why, "follow-up postponed");
        }
        return Ok(());
    }
    let (state_word, kind, emoji) = outcome(&ran);
    let text = match ran {
        Ran::Retry(why) => format!(
            "failed after {attempt} attempts: {why}; `/scheduled retry {}` runs it again",
            f.id
        ),
        Ran::Failed(why) => format!("failed: {why}; `/scheduled retry {}` runs it again", f.id),
        Ran::Done(what) | Ran::Incomplete(what) => what,
    };
    if !store::finish(&mut tx, f.id, owner, state_word, &text, now).await? {
        return Ok(());
    }
    state.metrics.followup(&kind["followup_".len()..]);
    let detail = format!("follow-up #{} {} of approval #{}: {text}", f.id, f.title, f.request_id);
    let r = requests::get(&mut tx, f.request_id).await?;
    let incident = r.as_ref().and_then(|r| r.incident_id);
    audit::record(
        &mut tx,
        Event::bot(kind, &detail).about(Some(f.request_id), incident),
        now,
    )
    .await?;
    if let Some(r) = &r {
        let reply = format!(
            "{emoji} Follow-up #{} of approval #{} ({}): {}",
            f.id,
            f.request_id,
            crate::slack::text::escape(&f.title),
            crate::slack::text::escape_entities(&text)
        );
        notify::reply(&mut tx, state, r, reply).await?;
    }
    state.outbox.commit(tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_five_minutes_to_six_hours_over_about_two_days() {
        assert_eq!(retry_delay_ms(1), 5 * 60_000);
        assert_eq!(retry_delay_ms(2), 10 * 60_000);
        assert_eq!(retry_delay_ms(7), 320 * 60_000);
        assert_eq!(retry_delay_ms(8), 6 * 3_600_000);
        assert_eq!(retry_delay_ms(100), 6 * 3_600_000);
        let total: i64 = (1..MAX_ATTEMPTS).map(retry_delay_ms).sum();
        assert!((40 * 3_600_000..60 * 3_600_000).contains(&total), "{total}");
    }

    #[test]
    fn an_incomplete_run_is_done_but_warned_about() {
        let keyed = Keyed {
            done: vec!["a".into()],
            gone: vec!["b".into()],
            left: vec!["c".into()],
        };
        let ran = keyed.ran();
        assert!(
            matches!(&ran, Ran::Incomplete(t) if t == "done for 1: a; already gone: b; left as they are, no longer qualifying: c")
        );
        assert_eq!(outcome(&ran), ("done", "followup_incomplete", ":warning:"));
        let clean = Keyed {
            done: vec![],
            gone: vec!["b".into()],
            left: vec![],
        }
        .ran();
        assert!(matches!(&clean, Ran::Done(t) if t == "done for 0: none; already gone: b"));
    }
}
