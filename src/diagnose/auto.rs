//! Diagnostics alert routes run on their own, threaded where the alert is,
//! before anyone arrives, within a budget so that a storm cannot turn into
//! a storm of queries against the application's database:
//!
//! - once per incident (or alert thread) per diagnostic per window: claimed
//!   by one conditional upsert in the alert's transaction, so the sixty
//!   alerts of one notification, or two replicas, start it once;
//! - at most `alerts.auto_diagnose.max_concurrent` running bot-wide (a
//!   semaphore in `AppState`): a run that finds no permit is skipped,
//!   counted and said in the thread, not queued without bound;
//! - and, below that, every target connection through the target's pool
//!   (`targets::slots`).
//!
//! Only read-only catalog diagnostics: actions never run without approval,
//! and config validation refuses them in routes.

use std::sync::Arc;

use sqlx::AnyConnection;
use tokio::sync::OwnedSemaphorePermit;

use super::Place;
use crate::catalog::schema::Kind;
use crate::outbox::{self, Outgoing};
use crate::slack::ids::ChannelId;
use crate::state::AppState;

/// Diagnostics an alert route asks for, and where their results go.
#[derive(Debug, Clone)]
pub struct AutoDiagnose {
    pub names: Vec<String>,
    pub channel: ChannelId,
    pub incident_id: Option<i64>,
    pub thread_key: String,
}

impl AutoDiagnose {
    /// What "once per incident" counts by: the incident, else the thread.
    fn scope(&self) -> String {
        match self.incident_id {
            Some(i) => crate::incident::root_key(i),
            None => self.thread_key.clone(),
        }
    }
}

fn count(state: &AppState, name: &str, outcome: &'static str) {
    state.metrics.auto_diagnose(name, outcome);
}

/// Keep the diagnostics that have not started in this scope within the
/// window, and mark them started, in the caller's transaction.
pub async fn claim(
    tx: &mut AnyConnection,
    state: &AppState,
    mut d: AutoDiagnose,
    now: i64,
) -> anyhow::Result<Option<AutoDiagnose>> {
    let window_ms = i64::try_from(state.config.alerts.auto_diagnose.window.as_millis()).unwrap_or(i64::MAX);
    let scope = d.scope();
    let mut kept = Vec::new();
    for name in std::mem::take(&mut d.names) {
        let done = sqlx::query(
            "INSERT INTO auto_diagnose_runs (scope, diagnostic, started_at) VALUES ($1, $2, $3)
             ON CONFLICT (scope, diagnostic) DO UPDATE SET started_at = excluded.started_at
             WHERE auto_diagnose_runs.started_at <= $4",
        )
        .bind(&scope)
        .bind(&name)
        .bind(now)
        .bind(now.saturating_sub(window_ms))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            kept.push(name);
        } else {
            count(state, &name, "deduplicated");
        }
    }
    d.names = kept;
    Ok((!d.names.is_empty()).then_some(d))
}

/// Start each claimed diagnostic under a permit of the bot-wide cap; those
/// that find none are skipped, and the thread says so once.
pub async fn start(state: &Arc<AppState>, d: AutoDiagnose) {
    let mut skipped = Vec::new();
    for name in &d.names {
        match state.auto_diagnose.clone().try_acquire_owned() {
            Ok(permit) => {
                count(state, name, "started");
                let (state2, d2, name) = (state.clone(), d.clone(), name.clone());
                state
                    .tasks
                    .spawn(async move { run_one(state2, d2, name, permit).await });
            }
            Err(_) => {
                count(state, name, "skipped");
                skipped.push(name.as_str());
            }
        }
    }
    if !skipped.is_empty()
        && let Err(e) = say_skipped(state, &d, &skipped).await
    {
        tracing::warn!(error = ?e, "could not record skipped automatic diagnostics");
    }
}

async fn say_skipped(state: &AppState, d: &AutoDiagnose, names: &[&str]) -> anyhow::Result<()> {
    let list: Vec<String> = names.iter().map(|n| format!("`/diagnose {n}`")).collect();
    let cap = state.config.alerts.auto_diagnose.max_concurrent;
    let text = format!(
        ":hourglass: Not run automatically: {}. {cap} automatic diagnostics were already running \
         (`alerts.auto_diagnose.max_concurrent`); run it by hand if it is still needed.",
        list.join(", ")
    );
    let now = state.clock.now_ms();
    let mut tx = state.store.begin_in_background().await?;
    let msg = Outgoing::post_keyed(
        &d.channel,
        Some(d.thread_key.clone()),
        None,
        crate::incident::render::reply(text),
    )
    .automated();
    outbox::enqueue(&mut tx, &[msg], None, now).await?;
    state.outbox.commit(tx).await?;
    Ok(())
}

/// One diagnostic, holding its permit until its result is queued.
async fn run_one(state: Arc<AppState>, d: AutoDiagnose, name: String, _permit: OwnedSemaphorePermit) {
    let Some(entry) = state
        .catalog
        .get("/diagnose", &name)
        .filter(|e| e.def.kind == Kind::Diagnostic)
    else {
        tracing::warn!(diagnostic = %name, "alert route names a diagnostic the catalog lacks");
        return;
    };
    let result = async {
        let values = crate::catalog::args::bind_args(&entry.def.args, &[]).map_err(|e| anyhow::anyhow!("{e}"))?;
        let target = state.target_for(&entry, None).map_err(|e| anyhow::anyhow!("{e}"))?;
        let outcome = super::run_on(&state, &entry, &values, &target.name).await?;
        let mut tx = state.store.begin_in_background().await?;
        let place = Place {
            channel: &d.channel,
            thread_key: Some(d.thread_key.clone()),
            incident_id: d.incident_id,
            automated: true,
        };
        super::publish(&mut tx, &state, &outcome, &place, "bot", None).await?;
        state.outbox.commit(tx).await?;
        anyhow::Ok(())
    };
    if let Err(e) = result.await {
        tracing::warn!(diagnostic = %name, error = %e, "automatic diagnostic failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_incident_else_per_thread() {
        let mut d = AutoDiagnose {
            names: vec!["orphans".into()],
            channel: ChannelId::parse("C0INCIDENTS").unwrap(),
            incident_id: Some(4),
            thread_key: "incident:4".into(),
        };
        assert_eq!(d.scope(), "incident:4");
        d.incident_id = None;
        d.thread_key = "alertgroup:9".into();
        assert_eq!(d.scope(), "alertgroup:9");
    }
}
