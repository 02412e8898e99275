//! The `/incident` subcommands. Each runs in one state-store transaction:
//! the conditional change, its timeline event and its outbox rows commit
//! together or not at all.

use sqlx::{Any, AnyConnection, Transaction};

use super::model::{Incident, IncidentRef, Severity, State};
use super::render;
use super::store::{self as db, Change};
use crate::app::AppState;
use crate::dispatch::parse::IncidentCmd;
use crate::dispatch::{Origin, Reply};
use crate::error::{CommandError, UserError};
use crate::outbox::{self, Outgoing};
use crate::slack::ids::ChannelId;
use crate::slack::text::escape;

pub async fn run(state: &AppState, origin: &Origin, cmd: IncidentCmd) -> Result<Reply, CommandError> {
    let now = state.clock.now_ms();
    let user = origin.user.as_str();
    let mut tx = state.store.begin().await?;
    let reply = match cmd {
        IncidentCmd::Declare { severity, title } => {
            let channel = &state.config.slack.incident_channel;
            let new = NewIncident {
                title: &title,
                severity,
                by: user,
                service: None,
            };
            let i = declare(&mut tx, state, new, origin.response_url.as_deref(), now).await?;
            Reply::new(format!(
                ":rotating_light: Declared incident *#{}* ({}) in <#{channel}>. You are the commander; updates thread under its message.",
                i.id, severity
            ))
        }
        IncidentCmd::List => {
            let open = db::list_open(&mut tx, 20).await?;
            Reply::new(render::list(&open, now))
        }
        IncidentCmd::Timeline { target } => {
            let i = find(&mut tx, origin, target).await?;
            let events = db::timeline(&mut tx, i.id).await?;
            Reply::new(format!(
                "*Timeline of #{}* — {}\n{}",
                i.id,
                escape(&i.title),
                render::timeline_capped(&events, 2800).replace("{id}", &i.id.to_string())
            ))
        }
        IncidentCmd::Ack { target } => {
            let i = find(&mut tx, origin, target).await?;
            if !db::apply(&mut tx, i.id, Change::Acknowledge { by: user }, now).await? {
                return Err(refused(&mut tx, i.id, "acknowledge").await);
            }
            let took = super::model::human_duration(now - i.declared_at);
            let text = format!(":eyes: <@{user}> acknowledged #{} after {took}.", i.id);
            changed(
                &mut tx,
                origin,
                i.id,
                "acknowledged",
                &format!("Acknowledged after {took}"),
                text,
                now,
            )
            .await?;
            Reply::new(format!("Acknowledged #{}.", i.id))
        }
        IncidentCmd::Status { target, text } => {
            let i = find(&mut tx, origin, target).await?;
            if !db::apply(&mut tx, i.id, Change::Status { text: &text }, now).await? {
                return Err(refused(&mut tx, i.id, "update").await);
            }
            let reply = format!(":memo: Status update from <@{user}>: {}", escape(&text));
            changed(&mut tx, origin, i.id, "status", &text, reply, now).await?;
            Reply::new(format!("Posted the update to #{}.", i.id))
        }
        IncidentCmd::Sev { target, severity } => {
            let i = find(&mut tx, origin, target).await?;
            if i.severity == severity && i.state != State::Resolved {
                return Err(UserError::new(format!("#{} is already {severity}.", i.id)).into());
            }
            if !db::apply(&mut tx, i.id, Change::Severity { to: severity }, now).await? {
                return Err(refused(&mut tx, i.id, "change the severity of").await);
            }
            let arrow = if severity < i.severity {
                ":arrow_up:"
            } else {
                ":arrow_down:"
            };
            let what = format!("Severity {} → {severity}", i.severity);
            let reply = format!(
                "{arrow} <@{user}> changed the severity: {} → {severity} ({}).",
                i.severity,
                severity.definition()
            );
            changed(&mut tx, origin, i.id, "severity", &what, reply, now).await?;
            Reply::new(format!("#{} is now {severity}.", i.id))
        }
        IncidentCmd::Assign { target, user: to } => {
            let i = find(&mut tx, origin, target).await?;
            if !db::apply(&mut tx, i.id, Change::Assign { commander: to.as_str() }, now).await? {
                return Err(refused(&mut tx, i.id, "reassign").await);
            }
            let reply = format!(
                ":bust_in_silhouette: {} is now the commander of #{} (handed over by <@{user}>).",
                to.mention(),
                i.id
            );
            changed(
                &mut tx,
                origin,
                i.id,
                "assigned",
                &format!("Commander → {}", to.mention()),
                reply,
                now,
            )
            .await?;
            Reply::new(format!("{} now commands #{}.", to.mention(), i.id))
        }
        IncidentCmd::Resolve { target, summary } => {
            let i = find(&mut tx, origin, target).await?;
            if !db::apply(
                &mut tx,
                i.id,
                Change::Resolve {
                    by: user,
                    summary: summary.as_deref(),
                },
                now,
            )
            .await?
            {
                return Err(refused(&mut tx, i.id, "resolve").await);
            }
            let took = super::model::human_duration(now - i.declared_at);
            let what = match &summary {
                Some(s) => format!("Resolved after {took}: {s}"),
                None => format!("Resolved after {took}"),
            };
            db::add_event(&mut tx, i.id, now, user, "resolved", &what).await?;
            let i = db::get(&mut tx, i.id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("incident vanished"))?;
            let events = db::timeline(&mut tx, i.id).await?;
            let channel = channel_of(&i)?;
            let msgs = [
                Outgoing::thread(
                    i.id,
                    &channel,
                    render::reply(format!(":white_check_mark: <@{user}> resolved #{} after {took}.", i.id)),
                ),
                Outgoing::thread(i.id, &channel, render::postmortem(&i, &events, now)),
                Outgoing::thread(i.id, &channel, render::reply(render::status_page_resolved(&i))),
                Outgoing::update_root(i.id, &channel, render::root(&i, now)),
            ];
            outbox::enqueue(&mut tx, &msgs, origin.response_url.as_deref(), now).await?;
            tracing::info!(incident.id = i.id, slack.user_id = user, "incident resolved");
            Reply::new(format!(
                "Resolved #{} after {took}. The postmortem skeleton is in the thread.",
                i.id
            ))
        }
    };
    tx.commit().await?;
    state.outbox_wake.notify_one();
    Ok(reply)
}

pub struct NewIncident<'a> {
    pub title: &'a str,
    pub severity: Severity,
    /// A Slack user id, or `bot` for incidents opened by alerts.
    pub by: &'a str,
    /// The `service` label alerts attach by.
    pub service: Option<&'a str>,
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
    let i = db::insert(tx, channel.as_str(), new.title, new.severity, new.by, new.service, now).await?;
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
    ];
    outbox::enqueue(tx, &msgs, notify_url, now).await?;
    state.metrics.inc(
        "runbook_bot_incidents_declared_total",
        format!("severity=\"{}\"", new.severity.as_str()),
    );
    Ok(i)
}

/// Record a change: timeline event, thread reply, root update.
async fn changed(
    tx: &mut Transaction<'static, Any>,
    origin: &Origin,
    id: i64,
    kind: &str,
    event: &str,
    reply: String,
    now: i64,
) -> Result<(), CommandError> {
    db::add_event(tx, id, now, origin.user.as_str(), kind, event).await?;
    let i = db::get(tx, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("incident vanished"))?;
    let channel = channel_of(&i)?;
    let msgs = [
        Outgoing::thread(i.id, &channel, render::reply(reply)),
        Outgoing::update_root(i.id, &channel, render::root(&i, now)),
    ];
    outbox::enqueue(tx, &msgs, origin.response_url.as_deref(), now).await?;
    Ok(())
}

fn channel_of(i: &Incident) -> anyhow::Result<ChannelId> {
    ChannelId::parse(&i.channel).map_err(|e| anyhow::anyhow!("stored channel: {e}"))
}

/// `#id` if given, else the newest open incident of the channel the command came from.
async fn find(
    conn: &mut AnyConnection,
    origin: &Origin,
    target: Option<IncidentRef>,
) -> Result<Incident, CommandError> {
    match target {
        Some(r) => db::get(conn, r.0)
            .await?
            .ok_or_else(|| UserError::new(format!("There is no incident {r}. See `/incident list`.")).into()),
        None => db::newest_open_in_channel(conn, origin.channel.as_str())
            .await?
            .ok_or_else(|| {
                UserError::new("There is no open incident in this channel. Name one with `#id` (see `/incident list`).")
                    .into()
            }),
    }
}

/// Why a conditional change did not apply, from the incident as it is now.
async fn refused(conn: &mut AnyConnection, id: i64, verb: &str) -> CommandError {
    match db::get(conn, id).await {
        Ok(Some(now)) => refusal(&now, verb).into(),
        Ok(None) => UserError::new(format!("There is no incident #{id}.")).into(),
        Err(e) => e.into(),
    }
}

fn refusal(i: &Incident, verb: &str) -> UserError {
    match i.state {
        State::Resolved => UserError::new(format!(
            "#{} is already resolved; nothing to {verb}. Declare a new incident if it is back.",
            i.id
        )),
        State::Acknowledged => UserError::new(format!(
            "#{} was already acknowledged by {}.",
            i.id,
            i.acknowledged_by
                .as_deref()
                .map(|u| format!("<@{u}>"))
                .unwrap_or_default()
        )),
        State::Declared => UserError::new(format!("#{} changed while you were typing; try again.", i.id)),
    }
}
