//! Background duties of the approval flow, safe with several instances
//! (each transition is a conditional update whose rows go to one caller):
//! expire pending requests and update their cards; report requests a dead
//! instance left `applying` as `interrupted` (never re-applied); and start
//! approved requests whose approving instance stopped before applying.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{executor, notify, render, store};
use crate::audit::{self, Event};
use crate::state::AppState;

const TICK: Duration = Duration::from_secs(1);
/// Longer than any apply can run (its statement timeout, then a margin).
pub const APPLY_STALE_MS: i64 = 10 * 60_000;
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
    let expired = store::expire_due(&mut tx, now)
        .await
        .context("expiring pending requests")?;
    for id in &expired {
        report(&mut tx, state, *id, "approval_expired", now, |r| {
            let detail = format!("#{id} {} expired without approval", r.label());
            let reply = format!(
                "{} Approval #{id} {} {}.",
                render::emoji(r.state),
                r.label_md(),
                render::state_words(r.state)
            );
            (detail, reply)
        })
        .await?;
    }
    let interrupted = store::interrupt_stale(&mut tx, now - APPLY_STALE_MS, now)
        .await
        .context("marking stale applies interrupted")?;
    for id in &interrupted {
        tracing::error!(request.id = id, "an action was interrupted while applying");
        report(&mut tx, state, *id, "action_interrupted", now, |r| {
            let detail = format!("#{id} {} was interrupted while applying; it will not be retried", r.label());
            let reply = format!(
                ":x: {} was interrupted while applying (the bot stopped). It was rolled back by the database if its transaction had not committed; check the target, then request it again if needed.",
                r.label_md()
            );
            (detail, reply)
        })
        .await?;
    }
    let unstarted = store::approved_unstarted(&mut tx, now - APPROVED_GRACE_MS)
        .await
        .context("finding approved requests nobody started")?;
    state
        .outbox
        .commit(tx)
        .await
        .context("committing the approval worker's reports")?;
    for id in unstarted {
        state.tasks.spawn(executor::run_approved(state.clone(), id));
    }
    Ok(())
}

/// Audit a transition the worker made and tell the thread (and the card).
async fn report(
    tx: &mut sqlx::AnyConnection,
    state: &AppState,
    id: i64,
    kind: &str,
    now: i64,
    words: impl FnOnce(&store::Request) -> (String, String),
) -> anyhow::Result<()> {
    let r = store::get(tx, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("request {id} vanished"))?;
    let (detail, reply) = words(&r);
    audit::record(
        tx,
        Event {
            actor: "bot",
            kind,
            request_id: Some(id),
            incident_id: r.incident_id,
            detail: &detail,
        },
        now,
    )
    .await?;
    notify::card_and_reply(tx, state, id, Some(reply), None).await
}
