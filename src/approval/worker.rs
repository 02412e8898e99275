//! Background duties of the approval flow, safe with several instances
//! (each transition is a conditional update whose rows go to one caller):
//! expire pending requests and update their cards; report requests a dead
//! instance left `applying` as `interrupted` (never re-applied); and start
//! approved requests whose approving instance stopped before applying.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{executor, notify, render, store};
use crate::app::AppState;
use crate::audit::{self, Event};

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
    let mut tx = state.store.begin().await?;
    let expired = store::expire_due(&mut tx, now).await?;
    for id in &expired {
        let r = store::get(&mut tx, *id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("request {id} vanished"))?;
        let detail = format!("#{id} {} expired without approval", r.label());
        audit::record(
            &mut tx,
            Event {
                actor: "bot",
                kind: "approval_expired",
                request_id: Some(*id),
                incident_id: r.incident_id,
                detail: &detail,
            },
            now,
        )
        .await?;
        let reply = format!(
            "{} Approval #{id} {} {}.",
            render::emoji(r.state),
            r.label_md(),
            render::state_words(r.state)
        );
        notify::card_and_reply(&mut tx, state, *id, Some(reply), None).await?;
    }
    let interrupted = store::interrupt_stale(&mut tx, now - APPLY_STALE_MS, now).await?;
    for id in &interrupted {
        let r = store::get(&mut tx, *id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("request {id} vanished"))?;
        tracing::error!(request.id = id, "an action was interrupted while applying");
        let detail = format!(
            "#{id} {} was interrupted while applying; it will not be retried",
            r.label()
        );
        audit::record(
            &mut tx,
            Event {
                actor: "bot",
                kind: "action_interrupted",
                request_id: Some(*id),
                incident_id: r.incident_id,
                detail: &detail,
            },
            now,
        )
        .await?;
        let reply = format!(
            ":x: {} was interrupted while applying (the bot stopped). It was rolled back by the database if its transaction had not committed; check the target, then request it again if needed.",
            r.label_md()
        );
        notify::card_and_reply(&mut tx, state, *id, Some(reply), None).await?;
    }
    let unstarted = store::approved_unstarted(&mut tx, now - APPROVED_GRACE_MS).await?;
    tx.commit().await?;
    if !expired.is_empty() || !interrupted.is_empty() {
        state.outbox_wake.notify_one();
    }
    for id in unstarted {
        state.tasks.spawn(executor::run_approved(state.clone(), id));
    }
    Ok(())
}
