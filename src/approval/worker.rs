//! Background duties of the approval flow, safe with several instances
//! (each transition is a conditional update whose rows go to one caller):
//! expire requests nobody approved, and approvals nobody applied, before
//! their expiry; resolve applies whose instance stopped renewing its lease
//! (never re-applied: the target is asked whether its transaction
//! committed); and start approved requests whose approving instance stopped
//! before applying.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::store::{self, Request, State};
use super::{executor, notify, render};
use crate::audit::{self, Event};
use crate::state::AppState;

const TICK: Duration = Duration::from_secs(1);
/// An approval nobody started within this long is started by the worker.
const APPROVED_GRACE_MS: i64 = 30_000;

pub async fn run(state: Arc<AppState>, cancel: CancellationToken) {
    loop {
        if let Err(e) = tick(&state).await {
            tracing::warn!(error = ?e, "approval worker step failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

pub async fn tick(state: &Arc<AppState>) -> anyhow::Result<()> {
    let now = state.clock.now_ms();
    let mut tx = state
        .store
        .begin()
        .await
        .context("starting the approval worker's transaction")?;
    let expired = store::expire_due(&mut tx, now).await.context("expiring requests")?;
    for id in &expired {
        report(&mut tx, state, *id, "approval_expired", now, |r| {
            let why = if r.decided_by.is_some() {
                "was approved, but no instance applied it before it expired; nothing was changed"
            } else {
                render::state_words(r.state)
            };
            let detail = format!("#{id} {} {why}", r.label());
            let reply = format!("{} Approval #{id} {} {why}.", render::emoji(r.state), r.label_md());
            (detail, reply)
        })
        .await?;
    }
    let unstarted = store::approved_unstarted(&mut tx, now - APPROVED_GRACE_MS, now)
        .await
        .context("finding approved requests nobody started")?;
    let abandoned = store::abandoned(&mut tx, now)
        .await
        .context("finding abandoned applies")?;
    state
        .outbox
        .commit(tx)
        .await
        .context("committing the approval worker's reports")?;
    for _ in &expired {
        state.metrics.approval("expired");
    }
    for r in abandoned {
        resolve_abandoned(state, &r).await?;
    }
    for id in unstarted {
        state.tasks.spawn(executor::run_approved(state.clone(), id));
    }
    Ok(())
}

/// How an abandoned apply ended, asked of the target where it can be.
pub async fn outcome_of(state: &AppState, r: &Request) -> Option<(State, String)> {
    let has_effects = r
        .snapshot
        .as_deref()
        .and_then(|s| serde_json::from_str::<super::snapshot::Snapshot>(s).ok())
        .is_some_and(|s| !s.def.effects.is_empty() || s.hook.is_some() || !s.def.auth_admin.is_empty());
    let effects = if has_effects {
        " Its irreversible steps may have run for some keys; check the target."
    } else {
        ""
    };
    let Some(xid) = &r.target_xid else {
        return Some((
            State::Interrupted,
            format!(
                "the bot stopped before its transaction was ready to commit; the target rolled it back, so its statements changed nothing.{effects}"
            ),
        ));
    };
    match xact_status(state, &r.target, xid).await {
        Ok(Some(s)) if s == "committed" => Some((
            State::Applied,
            "applied: the target confirms the transaction committed (the bot stopped before it could report it)".into(),
        )),
        Ok(Some(s)) if s == "aborted" => Some((
            State::RolledBack,
            "the bot stopped while committing; the target rolled the transaction back, so nothing was changed".into(),
        )),
        // Still open on the target: ask again on the next tick.
        Ok(Some(s)) if s == "in progress" => None,
        Ok(_) => Some((
            State::Interrupted,
            "the bot stopped and the target no longer knows the transaction's outcome; check the target before requesting again".into(),
        )),
        Err(why) => {
            tracing::warn!(request.id = r.id, error = %why, "cannot ask the target how an abandoned apply ended");
            None
        }
    }
}

async fn xact_status(state: &AppState, target: &str, xid: &str) -> Result<Option<String>, String> {
    let t = state
        .targets
        .get(target)
        .ok_or_else(|| format!("no target `{target}`"))?;
    let mut conn = t.acquire().await.map_err(|e| e.to_string())?;
    sqlx::query_scalar("SELECT pg_xact_status($1::text::xid8)::text")
        .bind(xid)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| e.to_string())
}

/// Record and report the outcome of an apply whose instance stopped.
async fn resolve_abandoned(state: &AppState, r: &Request) -> anyhow::Result<()> {
    let Some((to, mut text)) = outcome_of(state, r).await else {
        return Ok(());
    };
    let now = state.clock.now_ms();
    let mut tx = state.store.begin().await?;
    if !store::finish_abandoned(&mut tx, r.id, to, &text, now).await? {
        return Ok(());
    }
    if to == State::Applied
        && let Some((id, _)) = crate::approval::followup::schedule_for(&mut tx, r, now).await?
    {
        text.push_str(&format!("; scheduled follow-up #{id} (`/scheduled list`)"));
    }
    if to == State::Interrupted {
        tracing::error!(request.id = r.id, "an action was interrupted while applying");
    }
    let id = r.id;
    let verb = match to {
        State::Interrupted => "was interrupted while applying",
        other => render::state_words(other),
    };
    let kind = match to {
        State::Applied => "action_applied",
        State::RolledBack => "action_rolled_back",
        _ => "action_interrupted",
    };
    report(&mut tx, state, id, kind, now, |r| {
        let detail = format!("#{id} {} {verb}: {text}", r.label());
        let reply = format!("{} {} {verb}: {text}", render::emoji(to), r.label_md());
        (detail, reply)
    })
    .await?;
    state.outbox.commit(tx).await?;
    state.metrics.approval(to.as_str());
    Ok(())
}

/// Audit a transition the worker made and tell the thread (and the card).
async fn report(
    tx: &mut sqlx::AnyConnection,
    state: &AppState,
    id: i64,
    kind: &str,
    now: i64,
    words: impl FnOnce(&Request) -> (String, String),
) -> anyhow::Result<()> {
    let r = store::get(tx, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("request {id} vanished"))?;
    let (detail, reply) = words(&r);
    audit::record(tx, Event::bot(kind, &detail).about(Some(id), r.incident_id), now).await?;
    notify::card_and_reply(tx, state, id, Some(reply), None).await
}
