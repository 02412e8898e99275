//! The single dispatch point for slash commands, button clicks and
//! `runbook-bot exec`: parse → authorize → run → reply.

pub mod parse;
pub mod policy;

use std::sync::Arc;

use tracing::Instrument;

use crate::app::AppState;
use crate::catalog::Entry;
use crate::catalog::schema::Kind;
use crate::error::{CommandError, UserError};
use crate::incident;
use crate::slack::ids::{ChannelId, UserId};
use crate::targets::Target;
use crate::{approval, diagnose};
use parse::Invocation;

/// Where a command came from.
#[derive(Debug, Clone)]
pub struct Origin {
    pub user: UserId,
    pub channel: ChannelId,
    /// Slack's `response_url`, when there is one (not for `exec`).
    pub response_url: Option<String>,
    pub via: Via,
}

/// Slack (answer fast, finish slow work in the background) or a terminal
/// (`runbook-bot exec`: wait and print the whole result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Slack,
    Terminal,
}

/// What the person who ran the command sees (ephemeral).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
}

impl Reply {
    pub fn new(text: impl Into<String>) -> Self {
        Reply { text: text.into() }
    }
}

/// Run one slash command end to end. Never fails: errors become the reply.
pub async fn dispatch(state: &Arc<AppState>, origin: &Origin, command: &str, text: &str) -> Reply {
    let span = tracing::info_span!("command", command.name = tracing::field::Empty, slack.user_id = %origin.user);
    let inv = match parse::parse(command, text, &state.catalog) {
        Ok(inv) => inv,
        Err(e) => {
            state.metrics.inc(
                "runbook_bot_commands_total",
                "command=\"unparsed\",outcome=\"usage\"".into(),
            );
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
    };
    let name = name.as_str();
    span.record("command.name", name);
    // Every log line of the run carries the command and the user.
    let result = run(state, origin, inv, name).instrument(span).await;
    record(state, name, &result);
    result.unwrap_or_else(|e| Reply::new(e.into_user_text(name)))
}

async fn run(state: &Arc<AppState>, origin: &Origin, inv: Invocation, name: &str) -> Result<Reply, CommandError> {
    let level = state
        .roles
        .level_of(&state.config.roles, &state.slack, origin.user.as_str())
        .await;
    if let Err(e) = policy::authorize(policy::required(&inv), level, &display_name(name)) {
        tracing::info!(slack.user_id = %origin.user, command.name = name, "refused: level too low");
        return Err(e.into());
    }
    match inv {
        Invocation::IncidentHelp => Ok(Reply::new(format!(
            "{}\n*Severities*\n{}",
            parse::INCIDENT_USAGE,
            incident::render::severity_help()
        ))),
        Invocation::Incident(cmd) => incident::commands::run(state, origin, cmd).await,
        Invocation::CatalogHelp { command } => Ok(Reply::new(parse::catalog_help(&command, &state.catalog))),
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
/// command; approval buttons follow the approval rules.
pub async fn click(state: &Arc<AppState>, origin: &Origin, action_id: &str, value: &str) -> Reply {
    let Some(id) = value.parse::<i64>().ok().filter(|id| *id > 0) else {
        return Reply::new("This button carries no valid incident or request.");
    };
    let target = Some(incident::model::IncidentRef(id));
    let cmd = match action_id {
        incident::render::ACTION_ACK => parse::IncidentCmd::Ack { target },
        incident::render::ACTION_RESOLVE => parse::IncidentCmd::Resolve { target, summary: None },
        approval::render::ACTION_APPROVE | approval::render::ACTION_DENY => {
            let approve = action_id == approval::render::ACTION_APPROVE;
            let name = if approve { "approval.approve" } else { "approval.deny" };
            let result = approval::decide(state, origin, id, approve).await;
            record(state, name, &result);
            return result.unwrap_or_else(|e| Reply::new(e.into_user_text(name)));
        }
        _ => return Reply::new("This button is not one of ours any more; run the command instead."),
    };
    let name = cmd.name();
    let result = run(state, origin, Invocation::Incident(cmd), name).await;
    record(state, name, &result);
    result.unwrap_or_else(|e| Reply::new(e.into_user_text(name)))
}

fn record(state: &AppState, name: &str, result: &Result<Reply, CommandError>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(CommandError::User(_)) => "refused",
        Err(CommandError::Internal(_)) => "error",
    };
    state.metrics.inc(
        "runbook_bot_commands_total",
        format!("command=\"{name}\",outcome=\"{outcome}\""),
    );
}

/// The target a catalog command runs against: named by the person, else by
/// the catalog file, else the config's default.
pub fn target_for<'a>(state: &'a AppState, entry: &Entry, named: Option<&str>) -> Result<&'a Target, UserError> {
    let name = named
        .map(str::to_string)
        .or_else(|| entry.def.target.clone())
        .or_else(|| state.config.default_target.clone())
        .ok_or_else(|| UserError::new("No target is configured: add one under `[targets]` in the config."))?;
    state.targets.get(&name).ok_or_else(|| {
        let known: Vec<&str> = state.targets.names().collect();
        UserError::new(format!(
            "Unknown target `{}`. Targets: {}.",
            crate::slack::text::escape(&name),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))
    })
}
