//! `/incident p0|p1|p2|p3 <title>`: open an incident in the incident
//! channel. `declare` is also how alert routes open one.

use sqlx::AnyConnection;

use super::{Ctx, TITLE_MAX, usage_error};
use crate::config::Level;
use crate::error::{CommandError, UserError};
use crate::incident::model::{Incident, Severity};
use crate::incident::{render, room, store as db};
use crate::origin::Reply;
use crate::outbox::{self, Outgoing};
use crate::slack::text::decode_command_text;
use crate::state::AppState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declare {
    pub severity: Severity,
    pub title: String,
}

impl Declare {
    pub const NAME: &str = "incident.declare";
    pub const LEVEL: Level = Level::L1;

    pub fn parse(severity: Severity, verb: &str, rest: &str) -> Result<Self, UserError> {
        let title = decode_command_text(rest).trim().to_string();
        if title.is_empty() {
            return Err(usage_error(format!(
                "`/incident {verb}` needs a title, like `/incident {verb} Login failing`."
            )));
        }
        if title.chars().count() > TITLE_MAX {
            return Err(usage_error(format!(
                "The title is {} characters; keep it under {TITLE_MAX}.",
                title.chars().count()
            )));
        }
        Ok(Declare { severity, title })
    }

    pub async fn run(self, ctx: &mut Ctx<'_>) -> Result<Reply, CommandError> {
        let channel = &ctx.state.config.slack.incident_channel;
        let new = NewIncident {
            title: &self.title,
            severity: self.severity,
            by: ctx.origin.user.as_str(),
            service: None,
            automated: false,
        };
        let i = declare(
            ctx.tx.conn().await?,
            ctx.state,
            new,
            ctx.origin.response_url.as_deref(),
            ctx.now,
        )
        .await?;
        let where_ = if i.has_room() {
            "I am creating its own channel and will invite you; its message there links to it."
        } else {
            "Updates thread under its message."
        };
        Ok(Reply::new(format!(
            ":rotating_light: Declared incident *#{}* ({}) in <#{channel}>. You are the commander. {where_}",
            i.id, self.severity
        )))
    }
}

pub struct NewIncident<'a> {
    pub title: &'a str,
    pub severity: Severity,
    /// A Slack user id, or `bot` for incidents opened by alerts.
    pub by: &'a str,
    /// The `service` label alerts attach by.
    pub service: Option<&'a str>,
    /// Opened by monitoring, not a person: its messages yield to what
    /// people cause in the channel (see `outbox`).
    pub automated: bool,
}

/// Open an incident in the incident channel: its row, timeline event, root
/// message and the status-page "investigating" draft, in the caller's
/// transaction. Used by `/incident pN` and by alert routes that declare.
pub async fn declare(
    tx: &mut AnyConnection,
    state: &AppState,
    new: NewIncident<'_>,
    notify_url: Option<&str>,
    now: i64,
) -> anyhow::Result<Incident> {
    let channel = &state.config.slack.incident_channel;
    let mut i = db::insert(tx, channel.as_str(), new.title, new.severity, new.by, new.service, now).await?;
    // Only severities that want a room pay for one (a P3 runs what it always did).
    let room = state.config.incidents.wants_room(new.severity);
    if room {
        room::mark_pending(tx, &mut i).await?;
    }
    crate::telemetry::record_incident(i.id);
    tracing::info!(
        incident.id = i.id,
        severity = new.severity.as_str(),
        by = new.by,
        "incident declared"
    );
    db::add_event(
        tx,
        i.id,
        now,
        new.by,
        "declared",
        &format!("Declared {}: {}", new.severity, new.title),
    )
    .await?;
    let msgs = [
        Outgoing::root(i.id, channel, render::root(&i, now)),
        Outgoing::thread(i.id, channel, render::reply(render::status_page_investigating(&i))),
    ]
    .map(|m| if new.automated { m.automated() } else { m });
    outbox::enqueue(tx, &msgs, notify_url, now).await?;
    if room {
        room::queue(tx, &i, room::Step::Create, notify_url, now).await?;
    }
    state.metrics.incident_declared(new.severity.as_str());
    Ok(i)
}
