//! One alert, one message: the path of alerts without a group, and of a
//! group's alerts while a notification brings no more new ones than the
//! grouping threshold.
//!
//! Per (source, fingerprint): the first firing posts once; repeats update
//! that post; resolved updates it and replies "resolved after 12 m"; a
//! re-fire after resolve is a new occurrence replied in the same thread.
//! Everything posted here is automated: people's messages go first.

use sqlx::AnyConnection;

use super::group::Group;
use super::grouped;
use super::normalize::{Alert, Status};
use super::place::{self, Place};
use super::render::{self, Seen};
use crate::diagnose::auto::AutoDiagnose;
use crate::incident::model::human_duration;
use crate::incident::store as incidents;
use crate::outbox::{self, Outgoing};
use crate::slack::ids::ChannelId;
use crate::state::AppState;

/// What the alerts table knows of one (source, fingerprint).
#[derive(sqlx::FromRow)]
pub struct AlertRow {
    pub id: i64,
    #[sqlx(try_from = "String")]
    pub status: Status,
    pub channel: String,
    /// Its own post (`alert:…`), or the grouped message it is listed in.
    pub message_key: String,
    pub thread_key: Option<String>,
    pub incident_id: Option<i64>,
    pub occurrence: i64,
    pub deliveries: i64,
    pub fired_at: i64,
    pub group_id: Option<i64>,
}

pub async fn find(tx: &mut AnyConnection, a: &Alert) -> anyhow::Result<Option<AlertRow>> {
    let row = sqlx::query_as(
        "SELECT id, status, channel, message_key, thread_key, incident_id, occurrence, deliveries, fired_at, group_id
         FROM alerts WHERE source = $1 AND fingerprint = $2",
    )
    .bind(a.source.as_str())
    .bind(&a.fingerprint)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row)
}

/// `received_at`: when the payload arrived, which an alert's own post keeps
/// for the intake → first post delay.
pub async fn handle(
    tx: &mut AnyConnection,
    state: &AppState,
    a: &Alert,
    group: Option<&mut Group>,
    now: i64,
    received_at: i64,
) -> anyhow::Result<Option<AutoDiagnose>> {
    match (a.status, find(tx, a).await?) {
        (Status::Firing, None) => first_firing(tx, state, a, group, now, received_at).await,
        (Status::Firing, Some(r)) if r.status == Status::Firing => {
            firing_again(tx, a, &r, now).await?;
            Ok(None)
        }
        (Status::Firing, Some(r)) => refire(tx, state, a, r, group, now, received_at).await,
        (Status::Resolved, Some(r)) if r.status == Status::Firing => {
            resolved(tx, a, &r, now).await?;
            Ok(None)
        }
        // Resolved for something never seen firing, or resolved twice.
        (Status::Resolved, _) => Ok(None),
    }
}

/// A fingerprint never seen: remember it and post where its route says.
async fn first_firing(
    tx: &mut AnyConnection,
    state: &AppState,
    a: &Alert,
    mut group: Option<&mut Group>,
    now: i64,
    received_at: i64,
) -> anyhow::Result<Option<AutoDiagnose>> {
    let place = place::find(tx, state, a, group.as_deref_mut(), now).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO alerts (source, fingerprint, status, severity, title, channel, message_key, thread_key,
           incident_id, occurrence, deliveries, first_seen, last_seen, fired_at, latest, group_id)
         VALUES ($1, $2, 'firing', $3, $4, $5, '', $6, $7, 1, 1, $8, $8, $8, $9, $10) RETURNING id",
    )
    .bind(a.source.as_str())
    .bind(&a.fingerprint)
    .bind(&a.severity)
    .bind(&a.title)
    .bind(place.channel.as_str())
    .bind(place.thread_key.clone())
    .bind(place.incident_id)
    .bind(now)
    .bind(serde_json::to_string(a)?)
    .bind(group.map(|g| g.id))
    .fetch_one(&mut *tx)
    .await?;
    let message_key = format!("alert:{id}");
    sqlx::query("UPDATE alerts SET message_key = $1 WHERE id = $2")
        .bind(&message_key)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    post(tx, state, a, &place, (&message_key, 1), (now, received_at)).await
}

/// Still firing: count the delivery and update the post in place.
async fn firing_again(tx: &mut AnyConnection, a: &Alert, r: &AlertRow, now: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE alerts SET deliveries = deliveries + 1, last_seen = $1, latest = $2 WHERE id = $3")
        .bind(now)
        .bind(serde_json::to_string(a)?)
        .bind(r.id)
        .execute(&mut *tx)
        .await?;
    let seen = Seen {
        deliveries: r.deliveries + 1,
        ..seen(r, now)
    };
    update(tx, r, a, &seen, None, now).await
}

/// Resolved: update the post and say how long it fired.
async fn resolved(tx: &mut AnyConnection, a: &Alert, r: &AlertRow, now: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE alerts SET status = 'resolved', resolved_at = $1, last_seen = $1, latest = $2 WHERE id = $3")
        .bind(now)
        .bind(serde_json::to_string(a)?)
        .bind(r.id)
        .execute(&mut *tx)
        .await?;
    let took = human_duration(now - r.fired_at);
    let seen = Seen {
        resolved_at: Some(now),
        ..seen(r, now)
    };
    let text = format!("Alert resolved after {took}: {}", a.title);
    event(tx, r.incident_id, now, &text).await?;
    let reply = format!(":white_check_mark: Resolved after {took}.");
    update(tx, r, a, &seen, Some(reply), now).await
}

/// A new occurrence after a resolve. While the alert's incident is still
/// open it is replied in the same thread; when that incident is over (or
/// there was none) and the route now leads to an open or new incident, it is
/// posted there afresh, with the route's diagnostics.
async fn refire(
    tx: &mut AnyConnection,
    state: &AppState,
    a: &Alert,
    r: AlertRow,
    group: Option<&mut Group>,
    now: i64,
    received_at: i64,
) -> anyhow::Result<Option<AutoDiagnose>> {
    let occurrence = r.occurrence + 1;
    sqlx::query(
        "UPDATE alerts SET status = 'firing', occurrence = $1, deliveries = 1, fired_at = $2, last_seen = $2,
           resolved_at = NULL, latest = $3, group_id = COALESCE($4, group_id) WHERE id = $5",
    )
    .bind(occurrence)
    .bind(now)
    .bind(serde_json::to_string(a)?)
    .bind(group.as_ref().map(|g| g.id))
    .bind(r.id)
    .execute(&mut *tx)
    .await?;
    let incident_open = match r.incident_id {
        Some(i) => incidents::get(tx, i)
            .await?
            .is_some_and(|i| i.state != crate::incident::model::State::Resolved),
        None => false,
    };
    if !incident_open {
        let place = place::find(tx, state, a, group, now).await?;
        if place.incident_id.is_some() {
            let message_key = format!("alert:{}:{occurrence}", r.id);
            sqlx::query(
                "UPDATE alerts SET channel = $1, message_key = $2, thread_key = $3, incident_id = $4 WHERE id = $5",
            )
            .bind(place.channel.as_str())
            .bind(&message_key)
            .bind(place.thread_key.clone())
            .bind(place.incident_id)
            .bind(r.id)
            .execute(&mut *tx)
            .await?;
            return post(tx, state, a, &place, (&message_key, occurrence), (now, received_at)).await;
        }
    }
    let seen = Seen {
        occurrence,
        deliveries: 1,
        fired_at: now,
        ..seen(&r, now)
    };
    let reply = format!(
        ":repeat: Firing again (occurrence {occurrence}): {}",
        crate::slack::text::escape(&a.title)
    );
    event(tx, r.incident_id, now, &format!("Alert firing again: {}", a.title)).await?;
    update(tx, &r, a, &seen, Some(reply), now).await?;
    Ok(None)
}

fn seen(r: &AlertRow, now: i64) -> Seen {
    Seen {
        occurrence: r.occurrence,
        deliveries: r.deliveries,
        fired_at: r.fired_at,
        last_seen: now,
        resolved_at: None,
        incident: r.incident_id,
    }
}

pub async fn event(tx: &mut AnyConnection, incident: Option<i64>, now: i64, text: &str) -> anyhow::Result<()> {
    if let Some(i) = incident {
        incidents::add_event(tx, i, now, "bot", "alert", text).await?;
    }
    Ok(())
}

/// Update the alert's message, and reply in its thread when there is news.
/// An alert listed in a grouped message (now arriving without its group)
/// leaves that message alone: it shows the whole group, not this alert.
async fn update(
    tx: &mut AnyConnection,
    r: &AlertRow,
    a: &Alert,
    seen: &Seen,
    reply: Option<String>,
    now: i64,
) -> anyhow::Result<()> {
    let channel = ChannelId::parse(&r.channel).map_err(|e| anyhow::anyhow!("stored channel: {e}"))?;
    let mut msgs = Vec::new();
    if !grouped::is_message_key(&r.message_key) {
        msgs.push(Outgoing::update(&channel, &r.message_key, render::message(a, seen, now)).automated());
    }
    if let Some(text) = reply {
        let thread = r.thread_key.clone().unwrap_or_else(|| r.message_key.clone());
        msgs.push(Outgoing::post_keyed(&channel, Some(thread), None, crate::incident::render::reply(text)).automated());
    }
    outbox::enqueue(tx, &msgs, None, now).await
}

/// Post an occurrence's message (its key and number) where `place` says, and
/// ask for the route's diagnostics. `(now, received_at)`: when it is posted,
/// and when its payload arrived.
async fn post(
    tx: &mut AnyConnection,
    state: &AppState,
    a: &Alert,
    place: &Place,
    (message_key, occurrence): (&str, i64),
    (now, received_at): (i64, i64),
) -> anyhow::Result<Option<AutoDiagnose>> {
    let seen = Seen {
        occurrence,
        deliveries: 1,
        fired_at: now,
        last_seen: now,
        resolved_at: None,
        incident: place.incident_id,
    };
    let msg = Outgoing::post_keyed(
        &place.channel,
        place.thread_key.clone(),
        Some(message_key.to_string()),
        render::message(a, &seen, now),
    )
    .automated()
    .alert_received_at(received_at);
    outbox::enqueue(tx, &[msg], None, now).await?;
    event(
        tx,
        place.incident_id,
        now,
        &format!("Alert firing: {} ({})", a.title, a.severity),
    )
    .await?;
    state.metrics.alert(a.source.as_str(), "posted");
    Ok(place.auto_diagnose(message_key))
}
