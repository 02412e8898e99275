//! Read-only diagnostics from the catalog: resolve the target, run the
//! steps, thread the result under the channel's open incident (or post it in
//! the channel), and record it on the incident's timeline.

pub mod auto;
mod checks;
pub mod render;
mod rls;
pub mod run;
pub mod verdict;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::catalog::Entry;
use crate::catalog::args::Value;
use crate::error::CommandError;
use crate::incident::store as incidents;
use crate::origin::{Origin, Reply, Via};
use crate::outbox::{self, Outgoing};
use crate::slack::ids::ChannelId;
use crate::state::AppState;
use sqlx::AnyConnection;
use tracing::Instrument;

pub async fn start(
    state: &Arc<AppState>,
    origin: &Origin,
    entry: Arc<Entry>,
    values: BTreeMap<String, Value>,
    target: Option<String>,
) -> Result<Reply, CommandError> {
    let t = state.target_for(&entry, target.as_deref())?;
    let target_name = t.name.clone();
    let label = format!("{} {}", entry.def.command, entry.def.name);
    match origin.via {
        Via::Terminal { .. } => {
            let outcome = execute(state, origin, &entry, &values, &target_name).await?;
            Ok(Reply::new(render::text(&outcome)))
        }
        Via::Slack => {
            let (state, origin) = (state.clone(), origin.clone());
            let name = label.clone();
            // The work outlives the request; its log lines keep the command's span.
            let tasks = state.tasks.clone();
            let work = async move {
                if let Err(e) = execute(&state, &origin, &entry, &values, &target_name).await {
                    let text = e.into_user_text(&name);
                    if let Some(url) = &origin.response_url {
                        let _ = state.outbox.respond(url, text).await;
                    }
                }
            };
            tasks.spawn(work.instrument(tracing::Span::current()));
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
    let outcome = run_on(state, entry, values, target_name).await?;
    let mut tx = state.store.begin_for_person().await?;
    // In (or about) an incident with its own channel, the result goes there.
    let incident = crate::incident::room::incident_for_channel(&mut tx, origin.channel.as_str()).await?;
    if let Some(i) = &incident {
        crate::telemetry::record_incident(i.id);
    }
    let place = Place {
        channel: &origin.channel,
        thread_key: incident.as_ref().map(|i| match i.has_room() {
            true => crate::outbox::room_thread_key(i.id),
            false => crate::incident::root_key(i.id),
        }),
        incident_id: incident.map(|i| i.id),
        automated: false,
    };
    publish(
        &mut tx,
        state,
        &outcome,
        &place,
        origin.user.as_str(),
        origin.response_url.as_deref(),
    )
    .await?;
    state.outbox.commit_person(tx).await?;
    Ok(outcome)
}

async fn run_on(
    state: &AppState,
    entry: &Entry,
    values: &BTreeMap<String, Value>,
    target_name: &str,
) -> anyhow::Result<run::Outcome> {
    let target = state
        .targets
        .get(target_name)
        .ok_or_else(|| anyhow::anyhow!("target vanished"))?;
    let env = run::Env {
        http: &state.http,
        health_checks: &state.config.health_checks,
        targets: &state.targets,
        catalog_reads: state.catalog.reads(),
    };
    let outcome = run::run(entry, values, target, &env).await;
    tracing::info!(
        command.name = %entry.def.name,
        target = target_name,
        verdict = outcome.verdict.as_str(),
        elapsed_ms = outcome.elapsed.as_millis() as u64,
        "diagnostic finished"
    );
    count(&state.metrics, &entry.def.name, &outcome);
    Ok(outcome)
}

/// One count per diagnostic and one per step, by verdict, and each step's
/// duration by target. Names come from the catalog, targets from the config
/// and verdicts are four, so the label sets stay bounded.
fn count(metrics: &crate::metrics::Metrics, name: &str, outcome: &run::Outcome) {
    metrics.diagnostic(name, outcome.verdict.as_str());
    for s in &outcome.steps {
        // A step not run (its target already proved down) took no time.
        let took = (!s.elapsed.is_zero()).then_some(s.elapsed);
        metrics.diagnostic_step(name, &outcome.target, s.verdict.as_str(), took);
    }
    if outcome.steps.iter().any(|s| s.unreachable) {
        metrics.target_unreachable(&outcome.target, "diagnostic");
    }
}

/// Where a result goes: a channel, in a thread when there is one.
struct Place<'a> {
    channel: &'a ChannelId,
    thread_key: Option<String>,
    incident_id: Option<i64>,
    /// Run for an alert, not a person: yields to people's messages.
    automated: bool,
}

async fn publish(
    tx: &mut AnyConnection,
    state: &AppState,
    outcome: &run::Outcome,
    place: &Place<'_>,
    actor: &str,
    notify_url: Option<&str>,
) -> anyhow::Result<()> {
    let now = state.clock.now_ms();
    if let Some(i) = place.incident_id {
        let text = format!("{} ({})", render::headline(outcome), render::tally(outcome));
        incidents::add_event(tx, i, now, actor, "diagnostic", &text).await?;
    }
    let mut msg = Outgoing::post_keyed(place.channel, place.thread_key.clone(), None, render::blocks(outcome));
    if place.automated {
        msg = msg.automated();
    }
    outbox::enqueue(tx, &[msg], notify_url, now).await
}
