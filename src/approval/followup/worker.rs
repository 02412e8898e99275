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
/// A target that cannot be reached is tried again this much later…
const RETRY_MS: i64 = 10 * 60_000;
/// …this many times before the follow-up is reported failed.
const MAX_ATTEMPTS: i64 = 6;

pub async fn run(state: Arc<AppState>, cancel: CancellationToken) {
    loop {
        if let Err(e) = tick(&state).await {
            tracing::warn!(error = ?e, "follow-up step failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// How one run ended.
enum Ran {
    Done(String),
    Failed(String),
    /// Nothing happened; try again later.
    Retry(String),
}

pub async fn tick(state: &AppState) -> anyhow::Result<()> {
    let now = state.clock.now_ms();
    let due = {
        let mut conn = state.store.pool.acquire().await?;
        store::due(&mut conn, now).await.context("reading due follow-ups")?
    };
    for f in due {
        let claimed = {
            let mut tx = state.store.begin().await?;
            let ok = store::claim(&mut tx, f.id, now, LEASE_MS).await?;
            tx.commit().await?;
            ok
        };
        if !claimed {
            continue;
        }
        let ran = execute(state, &f).await;
        record(state, &f, ran)
            .await
            .with_context(|| format!("recording follow-up {}", f.id))?;
    }
    Ok(())
}

async fn execute(state: &AppState, f: &Followup) -> Ran {
    let loaded = async {
        let mut conn = state.store.pool.acquire().await.map_err(|e| e.to_string())?;
        let r = requests::get(&mut conn, f.request_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("its approval request is gone")?;
        let approved = stored(&r).map_err(|e| e.to_string())?;
        Ok::<_, String>((r, approved))
    };
    let (r, a) = match loaded.await {
        Ok(x) => x,
        Err(why) => return Ran::Failed(why),
    };
    let Some(target) = state.targets.get(&r.target) else {
        return Ran::Failed(format!("no target `{}` in the config", r.target));
    };
    let mut conn = match target.acquire().await {
        Ok(c) => c,
        Err(e) => return Ran::Retry(format!("target {} {e}", target.name)),
    };
    match keyed(&mut conn, &a).await {
        Ok(text) => Ran::Done(text),
        Err(StepError::Unreachable(why)) => Ran::Retry(format!("target {}: {why}", target.name)),
        Err(e @ (StepError::Timeout(_) | StepError::Conflict)) => Ran::Retry(format!("target {}: {e}", target.name)),
        Err(e) => Ran::Failed(format!("target {}: {e}; nothing was changed", target.name)),
    }
}

/// Run the follow-up's statement in one SERIALIZABLE transaction; every
/// row it returns must be an approved key (keys already gone are fine: the
/// statement was approved for them, and they are reported).
async fn keyed(conn: &mut sqlx::PgConnection, a: &Approved) -> Result<String, StepError> {
    let Some(f) = &a.snapshot.def.followup else {
        return Err(StepError::other("the approved action has no follow-up"));
    };
    let table = a
        .plan
        .table(&f.plan)
        .ok_or_else(|| StepError::other(format!("the plan has no step `{}`", f.plan)))?;
    let key = table.key.clone().unwrap_or_default();
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
    tx.commit().await.map_err(|e| crate::targets::classify(&e, timeout))?;
    let gone: Vec<&String> = approved.iter().filter(|k| !done.contains(k)).collect();
    let mut text = format!("done for {}: {}", done.len(), list(done.iter()));
    if !gone.is_empty() {
        text.push_str(&format!("; already gone: {}", list(gone.into_iter())));
    }
    Ok(text)
}

fn list<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<String> = keys.map(|k| visible(k)).collect();
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

/// Record the outcome, audit it and tell the request's thread.
async fn record(state: &AppState, f: &Followup, ran: Ran) -> anyhow::Result<()> {
    let now = state.clock.now_ms();
    let mut tx = state.store.begin().await?;
    let (kind, text) = match ran {
        Ran::Retry(why) if f.attempts < MAX_ATTEMPTS => {
            store::retry_at(&mut tx, f.id, now + RETRY_MS, &why).await?;
            tx.commit().await?;
            tracing::warn!(followup.id = f.id, reason = %why, "follow-up postponed");
            return Ok(());
        }
        Ran::Retry(why) => (
            "followup_failed",
            format!("failed after {} attempts: {why}", f.attempts),
        ),
        Ran::Failed(why) => ("followup_failed", format!("failed: {why}")),
        Ran::Done(what) => ("followup_done", what),
    };
    let state_word = if kind == "followup_done" { "done" } else { "failed" };
    if !store::finish(&mut tx, f.id, state_word, &text, now).await? {
        return Ok(());
    }
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
        let emoji = if kind == "followup_done" {
            ":white_check_mark:"
        } else {
            ":x:"
        };
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
