//! Escalation timers from the runbooks' timelines. While an incident is
//! unacknowledged, each rung of its severity's ladder (P0: on-call now,
//! stakeholders at 10 min, L3 at 15; P1 15/30/60 min; P2 1 h/4 h/24 h)
//! posts once in its thread, mentioning who is next. An acknowledged
//! incident silent past its status-update interval gets a reminder.
//!
//! Each post is claimed by inserting `(incident, step)` into `escalations`
//! in the same transaction as the outbox row: a restart neither forgets nor
//! repeats a step, and with several instances exactly one posts it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::AnyConnection;
use tokio_util::sync::CancellationToken;

use super::model::{Incident, Room, Severity, human_duration};
use super::store as db;
use crate::config::{Config, Level};
use crate::outbox;
use crate::slack::ids::{ChannelId, RoleSubject};
use crate::state::AppState;

const TICK: Duration = Duration::from_secs(1);

pub async fn run(state: Arc<AppState>, cancel: CancellationToken) {
    loop {
        if let Err(e) = tick(&state).await {
            tracing::warn!(error = ?e, "escalation step failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

fn ladder_index(s: Severity) -> usize {
    match s {
        Severity::P0 => 0,
        Severity::P1 => 1,
        Severity::P2 => 2,
        Severity::P3 => 3,
    }
}

/// Who a rung names, as Slack mentions.
pub fn mentions(config: &Config, notify: &str) -> String {
    let subjects = subjects(config, notify);
    if subjects.is_empty() {
        return format!("(nobody is configured for `{notify}`)");
    }
    subjects
        .iter()
        .map(|s| match s {
            RoleSubject::User(u) => u.mention(),
            RoleSubject::Group(g) => g.mention(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Who a rung names.
fn subjects(config: &Config, notify: &str) -> Vec<RoleSubject> {
    match notify {
        "l1" | "l2" | "l3" => {
            let level = match notify {
                "l1" => Level::L1,
                "l2" => Level::L2,
                _ => Level::L3,
            };
            config
                .roles
                .subjects
                .iter()
                .filter(|(_, l)| *l == level)
                .map(|(s, _)| s.clone())
                .collect()
        }
        "stakeholders" if !config.escalation.stakeholders.is_empty() => config.escalation.stakeholders.clone(),
        "stakeholders" => config
            .roles
            .subjects
            .iter()
            .filter(|(_, l)| *l == Level::L3)
            .map(|(s, _)| s.clone())
            .collect(),
        id => RoleSubject::parse(id).into_iter().collect(),
    }
}

/// Who a post pings: rung subjects as ids, plus a commander's user id.
fn targets(subjects: Vec<RoleSubject>, commander: Option<&str>) -> Vec<String> {
    let mut ids: Vec<String> = subjects
        .iter()
        .map(|s| match s {
            RoleSubject::User(u) => u.as_str().to_string(),
            RoleSubject::Group(g) => g.as_str().to_string(),
        })
        .collect();
    ids.extend(commander.filter(|c| *c != "bot").map(str::to_string));
    ids
}

pub async fn tick(state: &AppState) -> anyhow::Result<()> {
    let now = state.clock.now_ms();
    let mut tx = state
        .store
        .begin()
        .await
        .context("starting the escalation transaction")?;
    let mut posted = false;
    for i in db::unacknowledged(&mut tx)
        .await
        .context("listing unacknowledged incidents")?
    {
        posted |= climb(&mut tx, state, &i, now).await?;
    }
    for (i, last) in db::acknowledged_with_last_update(&mut tx)
        .await
        .context("listing acknowledged incidents")?
    {
        posted |= remind(&mut tx, state, &i, last, now).await?;
    }
    if posted {
        state.outbox.commit(tx).await?;
    } else {
        tx.commit().await?;
    }
    Ok(())
}

/// Post the rungs of an unacknowledged incident's ladder that are due.
async fn climb(tx: &mut AnyConnection, state: &AppState, i: &Incident, now: i64) -> anyhow::Result<bool> {
    let mut posted = false;
    let ladder = &state.config.escalation.ladders[ladder_index(i.severity)];
    for (n, rung) in ladder.iter().enumerate() {
        let due = i.declared_at + i64::from(rung.after_minutes) * 60_000;
        if now < due {
            break;
        }
        let who = mentions(&state.config, &rung.notify);
        let text = format!(
            ":rotating_light: *Escalation* — #{} ({}) is unacknowledged after {}. {who}, please respond: `/incident ack`.",
            i.id,
            i.severity,
            human_duration(now - i.declared_at)
        );
        // Keyed by severity too: after `/incident sev` the new ladder counts.
        let step = format!("unacked:{}:{n}", i.severity.as_str());
        let ping = Ping {
            text: &text,
            targets: targets(subjects(&state.config, &rung.notify), None),
        };
        posted |= post_once(tx, state, i, &step, ping, now)
            .await
            .with_context(|| format!("posting escalation step {step} of incident {}", i.id))?;
    }
    Ok(posted)
}

/// Remind an acknowledged incident silent past its update interval.
async fn remind(tx: &mut AnyConnection, state: &AppState, i: &Incident, last: i64, now: i64) -> anyhow::Result<bool> {
    if i.severity == Severity::P3 {
        return Ok(false);
    }
    let interval = i64::from(i.severity.status_update_minutes()) * 60_000;
    if now - last < interval {
        return Ok(false);
    }
    let next = mentions(&state.config, "l3");
    // Incidents opened by alerts have the bot as commander: nobody to ping.
    let commander = if i.commander == "bot" {
        String::new()
    } else {
        format!("<@{}>, ", i.commander)
    };
    let text = format!(
        ":hourglass: #{} ({}) has had no update for {}; the runbook asks for one every {} min. {commander}post `/incident status …`. {next}",
        i.id,
        i.severity,
        human_duration(now - last),
        i.severity.status_update_minutes(),
    );
    let step = format!("silent:{last}");
    let ping = Ping {
        text: &text,
        targets: targets(subjects(&state.config, "l3"), Some(&i.commander)),
    };
    post_once(tx, state, i, &step, ping, now)
        .await
        .with_context(|| format!("posting reminder {step} of incident {}", i.id))
}

/// An escalation post and the people (user and group ids) it pings.
struct Ping<'a> {
    text: &'a str,
    targets: Vec<String>,
}

/// Post a step unless some instance already did; true when this call did.
/// In a room, its targets are invited first (a step ahead of the post
/// under the incident's order key): Slack does not notify people
/// mentioned in a channel they are not in.
async fn post_once(
    tx: &mut AnyConnection,
    state: &AppState,
    i: &Incident,
    step: &str,
    ping: Ping<'_>,
    now: i64,
) -> anyhow::Result<bool> {
    let text = ping.text;
    let claimed = sqlx::query(
        "INSERT INTO escalations (incident_id, step, posted_at) VALUES ($1, $2, $3) ON CONFLICT (incident_id, step) DO NOTHING",
    )
    .bind(i.id)
    .bind(step)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if claimed.rows_affected() != 1 {
        return Ok(false);
    }
    let channel = ChannelId::parse(&i.channel).map_err(|e| anyhow::anyhow!("stored channel: {e}"))?;
    db::add_event(tx, i.id, now, "bot", "escalation", &format!("Escalation step {step}")).await?;
    if matches!(i.room(), Room::Made(_) | Room::Pending) && !ping.targets.is_empty() {
        let invite = super::room::Step::Summon { subjects: ping.targets };
        super::room::queue(tx, i, invite, None, now).await?;
    }
    outbox::enqueue(
        tx,
        &[super::cmd::conversation(
            i,
            &channel,
            super::render::reply(text.to_string()),
        )],
        None,
        now,
    )
    .await?;
    state.metrics.escalation(i.severity.as_str());
    tracing::info!(incident.id = i.id, step, "escalation posted");
    Ok(true)
}
