//! The single dispatch point for slash commands, button clicks and
//! `runbook-bot exec`: parse → authorize → run → reply.

pub mod parse;
pub mod policy;

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use crate::catalog::schema::Kind;
use crate::error::{CommandError, UserError};
use crate::incident;
pub use crate::origin::{Origin, Reply, Via};
use crate::state::AppState;
use crate::throttle::Verdict;
use crate::{approval, diagnose};
use parse::Invocation;

/// Run one slash command end to end. Never fails: errors become the reply.
pub async fn dispatch(state: &Arc<AppState>, origin: &Origin, command: &str, text: &str) -> Reply {
    let started = Instant::now();
    let inv = match parse::parse(command, text, &state.catalog) {
        Ok(inv) => inv,
        Err(e) => {
            state.metrics.command("unparsed", "usage", started.elapsed());
            return Reply::new(e.0);
        }
    };
    let name = match &inv {
        Invocation::Incident(c) => c.name().to_string(),
        Invocation::IncidentHelp => "incident.help".to_string(),
        Invocation::Catalog { entry, .. } => {
            format!("{}.{}", entry.def.command.trim_start_matches('/'), entry.def.name)
        }
        Invocation::CatalogHelp { command } => format!("{}.help", command.trim_start_matches('/')),
        Invocation::Scheduled(c) => c.name().to_string(),
        Invocation::ScheduledHelp => "scheduled.help".to_string(),
    };
    let name = name.as_str();
    let result = run(state, origin, inv, name).instrument(span(name, origin)).await;
    record(state, name, &result, started);
    result.unwrap_or_else(|e| Reply::new(e.into_user_text(name)))
}

/// Every log line of a command's run carries the command and the user, and
/// the incident and approval request once the command knows them
/// (`telemetry::record_incident`, `telemetry::record_request`).
fn span(name: &str, origin: &Origin) -> tracing::Span {
    tracing::info_span!(
        "command",
        command.name = name,
        slack.user_id = %origin.user,
        incident.id = tracing::field::Empty,
        request.id = tracing::field::Empty,
    )
}

async fn run(state: &Arc<AppState>, origin: &Origin, inv: Invocation, name: &str) -> Result<Reply, CommandError> {
    authorize(state, origin, &inv, name).await?;
    execute(state, origin, inv).await
}

/// Whether this person's level allows the invocation.
async fn authorize(state: &AppState, origin: &Origin, inv: &Invocation, name: &str) -> Result<(), UserError> {
    let level = state
        .roles
        .level_of(&state.config.roles, &state.slack, origin.user.as_str())
        .await;
    policy::authorize(policy::required(inv), level, &display_name(name)).inspect_err(|_| {
        tracing::info!(slack.user_id = %origin.user, command.name = name, "refused: level too low");
    })
}

async fn execute(state: &Arc<AppState>, origin: &Origin, inv: Invocation) -> Result<Reply, CommandError> {
    match inv {
        Invocation::IncidentHelp => Ok(Reply::new(format!(
            "{}\n*Severities*\n{}",
            incident::cmd::USAGE,
            incident::render::severity_help()
        ))),
        Invocation::Incident(cmd) => cmd.run(state, origin).await,
        Invocation::CatalogHelp { command } => Ok(Reply::new(parse::catalog_help(&command, &state.catalog))),
        Invocation::ScheduledHelp => Ok(Reply::new(crate::approval::followup::cmd::USAGE)),
        Invocation::Scheduled(cmd) => cmd.run(state, origin).await,
        Invocation::Catalog {
            entry,
            values,
            words,
            target,
        } => match entry.def.kind {
            Kind::Diagnostic => diagnose::start(state, origin, entry, values, target).await,
            Kind::Action => approval::request(state, origin, entry, values, words, target).await,
        },
    }
}

fn display_name(name: &str) -> String {
    format!("/{}", name.replace('.', " "))
}

/// A button click: incident buttons follow the same rules as the equivalent
/// command; approval buttons follow the approval rules. `None`: the click
/// was refused again within the window in which this person was already
/// told why (`throttle`), so nothing is said.
pub async fn click(state: &Arc<AppState>, origin: &Origin, action_id: &str, value: &str) -> Option<Reply> {
    let started = Instant::now();
    let Some(id) = value.parse::<i64>().ok().filter(|id| *id > 0) else {
        return Some(Reply::new("This button carries no valid incident or request."));
    };
    let (name, result) = if let Some(cmd) = incident::cmd::IncidentCmd::from_button(action_id, id) {
        let name = cmd.name();
        let inv = Invocation::Incident(cmd);
        let result = async {
            match authorize(state, origin, &inv, name).await {
                Ok(()) => execute(state, origin, inv).await,
                Err(refused) => throttle_refusal(state, origin, refused),
            }
        }
        .instrument(span(name, origin))
        .await;
        (name, result)
    } else if matches!(
        action_id,
        approval::render::ACTION_APPROVE | approval::render::ACTION_DENY
    ) {
        let approve = action_id == approval::render::ACTION_APPROVE;
        let name = if approve { "approval.approve" } else { "approval.deny" };
        let span = span(name, origin);
        span.record("request.id", id);
        (
            name,
            approval::decide(state, origin, id, approve).instrument(span).await,
        )
    } else {
        return Some(Reply::new(
            "This button is not one of ours any more; run the command instead.",
        ));
    };
    record(state, name, &result, started);
    match result {
        Ok(reply) => Some(reply),
        Err(CommandError::Throttled) => None,
        Err(e) => Some(Reply::new(e.into_user_text(name))),
    }
}

/// A button refused for want of level is answered once per window per user.
fn throttle_refusal(state: &AppState, origin: &Origin, refused: UserError) -> Result<Reply, CommandError> {
    match state.refusals.check(origin.user.as_str(), state.clock.now_ms()) {
        Verdict::Allow { .. } => Err(refused.into()),
        Verdict::Suppress => {
            state.metrics.throttled("refused_click");
            Err(CommandError::Throttled)
        }
    }
}

fn record(state: &AppState, name: &str, result: &Result<Reply, CommandError>, started: Instant) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(CommandError::User(_)) => "refused",
        Err(CommandError::Throttled) => "throttled",
        Err(CommandError::Internal(_)) => "error",
    };
    state.metrics.command(name, outcome, started.elapsed());
}
