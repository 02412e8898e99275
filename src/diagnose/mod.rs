//! Read-only diagnostics from the catalog: resolve the target, run the
//! steps, thread the result under the channel's open incident (or post it in
//! the channel), and record it on the incident's timeline.

pub mod render;
pub mod run;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::app::AppState;
use crate::catalog::Entry;
use crate::catalog::args::Value;
use crate::dispatch::{Origin, Reply, Via};
use crate::error::CommandError;
use crate::incident::store as incidents;
use crate::outbox::{self, Outgoing};

pub async fn start(
    state: &Arc<AppState>,
    origin: &Origin,
    entry: Arc<Entry>,
    values: BTreeMap<String, Value>,
    target: Option<String>,
) -> Result<Reply, CommandError> {
    let t = crate::dispatch::target_for(state, &entry, target.as_deref())?;
    let target_name = t.name.clone();
    let label = format!("{} {}", entry.def.command, entry.def.name);
    match origin.via {
        Via::Terminal => {
            let outcome = execute(state, origin, &entry, &values, &target_name).await?;
            Ok(Reply::new(render::text(&outcome)))
        }
        Via::Slack => {
            let (state, origin) = (state.clone(), origin.clone());
            let name = label.clone();
            state.clone().tasks.spawn(async move {
                if let Err(e) = execute(&state, &origin, &entry, &values, &target_name).await {
                    let text = e.into_user_text(&name);
                    if let Some(url) = &origin.response_url {
                        let _ = outbox::respond(&state, url, text).await;
                    }
                }
            });
            Ok(Reply::new(format!(
                ":mag: Running `{label}` on *{}*; the result will be posted here.",
                t.name
            )))
        }
    }
}

/// Run and deliver: result message and timeline event in one transaction.
async fn execute(
    state: &AppState,
    origin: &Origin,
    entry: &Entry,
    values: &BTreeMap<String, Value>,
    target_name: &str,
) -> Result<run::Outcome, CommandError> {
    let target = state
        .targets
        .get(target_name)
        .ok_or_else(|| anyhow::anyhow!("target vanished"))?;
    let env = run::Env {
        http: &state.http,
        health_checks: &state.config.health_checks,
    };
    let outcome = run::run(entry, values, target, &env).await;
    tracing::info!(
        command.name = %entry.def.name,
        target = target_name,
        verdict = outcome.verdict.as_str(),
        elapsed_ms = outcome.elapsed.as_millis() as u64,
        "diagnostic finished"
    );
    state.metrics.inc(
        "runbook_bot_diagnostics_total",
        format!("name=\"{}\",verdict=\"{}\"", entry.def.name, outcome.verdict.as_str()),
    );
    let now = state.clock.now_ms();
    let mut tx = state.store.begin().await?;
    let content = render::blocks(&outcome);
    let msg = match incidents::newest_open_in_channel(&mut tx, origin.channel.as_str()).await? {
        Some(i) => {
            let text = format!(
                "{} ({} findings)",
                render::headline(&outcome),
                render::findings(&outcome)
            );
            incidents::add_event(&mut tx, i.id, now, origin.user.as_str(), "diagnostic", &text).await?;
            Outgoing::thread(i.id, &origin.channel, content)
        }
        None => Outgoing::post(&origin.channel, None, content),
    };
    outbox::enqueue(&mut tx, &[msg], origin.response_url.as_deref(), now).await?;
    tx.commit().await?;
    state.outbox_wake.notify_one();
    Ok(outcome)
}
