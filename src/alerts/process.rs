//! Turns inbox payloads into Slack messages and incidents, in arrival order,
//! one instance at a time (the `alerts` lease). Each payload is handled in
//! one state-store transaction that also marks it processed, so a payload
//! delivered once is handled once, and one delivered twice only counts.
//!
//! Per (source, fingerprint): the first firing posts once; repeats update
//! that post; resolved updates it and replies "resolved after 12 m"; a
//! re-fire after resolve is a new occurrence replied in the same thread.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::{AnyConnection, Row};
use tokio_util::sync::CancellationToken;

use super::normalize::{Alert, Status};
use super::render::{self, Seen};
use super::routes;
use crate::diagnose::AutoDiagnose;
use crate::incident::cmd::{NewIncident, declare};
use crate::incident::model::{Severity, human_duration};
use crate::incident::store as incidents;
use crate::outbox::{self, Outgoing};
use crate::slack::ids::ChannelId;
use crate::state::AppState;
use crate::store::lease;

const LEASE: &str = "alerts";
const LEASE_MS: i64 = 15_000;
const BATCH: i64 = 100;

pub async fn run(state: Arc<AppState>, cancel: CancellationToken) {
    let owner = uuid::Uuid::new_v4().to_string();
    let mut failures = HashMap::new();
    loop {
        match drain(&state, &owner, &mut failures).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = ?e, "alert processing failed; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = state.alerts_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    let _ = lease::release(&state.store, LEASE, &owner).await;
}

/// A payload that fails this many times in a row is set aside (marked with
/// its error) so one bad payload cannot stop every alert behind it.
const MAX_FAILURES: u32 = 3;

/// Process what is waiting; true when a full batch was handled.
pub async fn drain(state: &Arc<AppState>, owner: &str, failures: &mut HashMap<i64, u32>) -> anyhow::Result<bool> {
    let held = lease::acquire(&state.store, LEASE, owner, state.clock.now_ms(), LEASE_MS)
        .await
        .context("taking the alerts lease")?;
    if !held {
        return Ok(false);
    }
    let rows =
        sqlx::query("SELECT id, alerts, received_at FROM alert_inbox WHERE processed_at IS NULL ORDER BY id LIMIT $1")
            .bind(BATCH)
            .fetch_all(&state.store.pool)
            .await
            .context("reading the alert inbox")?;
    let full = rows.len() as i64 == BATCH;
    for r in rows {
        let id: i64 = r.try_get("id")?;
        let payload: String = r.try_get("alerts")?;
        let received_at: i64 = r.try_get("received_at")?;
        match process_one(state, id, &payload, received_at).await {
            Ok(()) => {
                failures.remove(&id);
            }
            Err(e) => {
                let n = failures.entry(id).or_insert(0);
                *n += 1;
                if *n < MAX_FAILURES {
                    // Keep order: later payloads wait for this one.
                    return Err(e.context(format!("alert payload {id}, attempt {n}")));
                }
                tracing::error!(inbox.id = id, error = ?e, "alert payload set aside after repeated failures");
                state.metrics.alert("any", "failed");
                sqlx::query(
                    "UPDATE alert_inbox SET processed_at = $1, error = $2 WHERE id = $3 AND processed_at IS NULL",
                )
                .bind(state.clock.now_ms())
                .bind(format!("{e:#}").chars().take(500).collect::<String>())
                .bind(id)
                .execute(&state.store.writer)
                .await?;
                failures.remove(&id);
            }
        }
    }
    Ok(full)
}

async fn process_one(state: &Arc<AppState>, id: i64, payload: &str, received_at: i64) -> anyhow::Result<()> {
    let alerts: Vec<Alert> = serde_json::from_str(payload)?;
    let now = state.clock.now_ms();
    let mut tx = state.store.begin().await?;
    // Another instance that held the lease before us may have done it.
    let claimed = sqlx::query("UPDATE alert_inbox SET processed_at = $1 WHERE id = $2 AND processed_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if claimed.rows_affected() != 1 {
        return Ok(());
    }
    let mut diagnose = Vec::new();
    for a in &alerts {
        if let Some(d) = handle(&mut tx, state, a, now, received_at).await? {
            diagnose.push(d);
        }
    }
    state.outbox.commit(tx).await?;
    for d in diagnose {
        state.tasks.spawn(crate::diagnose::auto(state.clone(), d));
    }
    Ok(())
}

/// What the alerts table knows of one (source, fingerprint).
#[derive(sqlx::FromRow)]
struct AlertRow {
    id: i64,
    #[sqlx(try_from = "String")]
    status: Status,
    channel: String,
    message_key: String,
    thread_key: Option<String>,
    incident_id: Option<i64>,
    occurrence: i64,
    deliveries: i64,
    fired_at: i64,
}

async fn find(tx: &mut AnyConnection, a: &Alert) -> anyhow::Result<Option<AlertRow>> {
    let row = sqlx::query_as(
        "SELECT id, status, channel, message_key, thread_key, incident_id, occurrence, deliveries, fired_at
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
async fn handle(
    tx: &mut AnyConnection,
    state: &AppState,
    a: &Alert,
    now: i64,
    received_at: i64,
) -> anyhow::Result<Option<AutoDiagnose>> {
    match (a.status, find(tx, a).await?) {
        (Status::Firing, None) => first_firing(tx, state, a, now, received_at).await,
        (Status::Firing, Some(r)) if r.status == Status::Firing => {
            firing_again(tx, a, &r, now).await?;
            Ok(None)
        }
        (Status::Firing, Some(r)) => refire(tx, state, a, r, now, received_at).await,
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
    now: i64,
    received_at: i64,
) -> anyhow::Result<Option<AutoDiagnose>> {
    let place = place(tx, state, a, now).await?;
    let latest = serde_json::to_string(a)?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO alerts (source, fingerprint, status, severity, title, channel, message_key, thread_key,
           incident_id, occurrence, deliveries, first_seen, last_seen, fired_at, latest)
         VALUES ($1, $2, 'firing', $3, $4, $5, '', $6, $7, 1, 1, $8, $8, $8, $9) RETURNING id",
    )
    .bind(a.source.as_str())
    .bind(&a.fingerprint)
    .bind(&a.severity)
    .bind(&a.title)
    .bind(place.channel.as_str())
    .bind(place.thread_key.clone())
    .bind(place.incident_id)
    .bind(now)
    .bind(latest)
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
    now: i64,
    received_at: i64,
) -> anyhow::Result<Option<AutoDiagnose>> {
    let occurrence = r.occurrence + 1;
    sqlx::query(
        "UPDATE alerts SET status = 'firing', occurrence = $1, deliveries = 1, fired_at = $2, last_seen = $2,
           resolved_at = NULL, latest = $3 WHERE id = $4",
    )
    .bind(occurrence)
    .bind(now)
    .bind(serde_json::to_string(a)?)
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
        let place = place(tx, state, a, now).await?;
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

async fn event(tx: &mut AnyConnection, incident: Option<i64>, now: i64, text: &str) -> anyhow::Result<()> {
    if let Some(i) = incident {
        incidents::add_event(tx, i, now, "bot", "alert", text).await?;
    }
    Ok(())
}

/// Update the alert's message, and reply in its thread when there is news.
async fn update(
    tx: &mut AnyConnection,
    r: &AlertRow,
    a: &Alert,
    seen: &Seen,
    reply: Option<String>,
    now: i64,
) -> anyhow::Result<()> {
    let channel = ChannelId::parse(&r.channel).map_err(|e| anyhow::anyhow!("stored channel: {e}"))?;
    let mut msgs = vec![Outgoing::update(
        &channel,
        &r.message_key,
        render::message(a, seen, now),
    )];
    if let Some(text) = reply {
        let thread = r.thread_key.clone().unwrap_or_else(|| r.message_key.clone());
        msgs.push(Outgoing::post_keyed(
            &channel,
            Some(thread),
            None,
            crate::incident::render::reply(text),
        ));
    }
    outbox::enqueue(tx, &msgs, None, now).await
}

/// Where a firing alert goes: the open incident of its service (when the
/// route attaches), else a new incident (when the route declares), else the
/// route's channel or the incident channel.
struct Place {
    channel: ChannelId,
    thread_key: Option<String>,
    incident_id: Option<i64>,
    diagnose: Vec<String>,
}

async fn place(tx: &mut AnyConnection, state: &AppState, a: &Alert, now: i64) -> anyhow::Result<Place> {
    let route = routes::pick(&state.config.alerts.routes, a);
    let attach = route.is_none_or(|r| r.attach);
    let mut incident = match (attach, a.service()) {
        (true, Some(service)) => incidents::newest_open_for_service(tx, service).await?,
        _ => None,
    };
    if incident.is_none()
        && let Some(sev) = route.and_then(|r| r.declare.as_deref())
    {
        let severity = Severity::parse(sev).map_err(|e| anyhow::anyhow!("route severity: {e}"))?;
        let new = NewIncident {
            title: &a.title,
            severity,
            by: "bot",
            service: a.service(),
        };
        let i = declare(tx, state, new, None, now).await?;
        let text = format!("Declared from {} alert {}", a.source.as_str(), a.fingerprint);
        incidents::add_event(tx, i.id, now, "bot", "alert", &text).await?;
        incident = Some(i);
    }
    let channel = match (&incident, route.and_then(|r| r.channel.as_deref())) {
        (Some(i), _) => ChannelId::parse(&i.channel).map_err(|e| anyhow::anyhow!("stored channel: {e}"))?,
        (None, Some(c)) => ChannelId::parse(c).map_err(|e| anyhow::anyhow!("route channel: {e}"))?,
        (None, None) => state.config.slack.incident_channel.clone(),
    };
    Ok(Place {
        channel,
        thread_key: incident.as_ref().map(|i| crate::incident::root_key(i.id)),
        incident_id: incident.map(|i| i.id),
        diagnose: route.map(|r| r.diagnose.clone()).unwrap_or_default(),
    })
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
    Ok((!place.diagnose.is_empty()).then(|| AutoDiagnose {
        names: place.diagnose.clone(),
        channel: place.channel.clone(),
        incident_id: place.incident_id,
        thread_key: place.thread_key.clone().unwrap_or_else(|| message_key.to_string()),
    }))
}
