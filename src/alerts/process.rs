//! Turns inbox payloads into Slack messages and incidents, in arrival order,
//! one instance at a time (the `alerts` lease). Each payload is handled in
//! one state-store transaction that also marks it processed, so a payload
//! delivered once is handled once, and one delivered twice only counts.
//!
//! Per (source, fingerprint): the first firing posts once; repeats update
//! that post; resolved updates it and replies "resolved after 12 m"; a
//! re-fire after resolve is a new occurrence replied in the same thread.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyConnection, Row};
use tokio_util::sync::CancellationToken;

use super::normalize::{Alert, Status};
use super::render::{self, Seen};
use super::routes;
use crate::app::AppState;
use crate::incident::commands::{NewIncident, declare};
use crate::incident::model::{Severity, human_duration};
use crate::incident::store as incidents;
use crate::outbox::{self, Outgoing};
use crate::slack::ids::ChannelId;
use crate::store::lease;

const LEASE: &str = "alerts";
const LEASE_MS: i64 = 15_000;
const BATCH: i64 = 100;

/// Diagnostics a route asks for, run after the payload's transaction commits.
pub struct AutoDiagnose {
    pub names: Vec<String>,
    pub channel: ChannelId,
    pub incident_id: Option<i64>,
    pub thread_key: String,
}

pub async fn run(state: Arc<AppState>, cancel: CancellationToken) {
    let owner = uuid::Uuid::new_v4().to_string();
    loop {
        match drain(&state, &owner).await {
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

/// Process what is waiting; true when a full batch was handled.
pub async fn drain(state: &Arc<AppState>, owner: &str) -> anyhow::Result<bool> {
    if !lease::acquire(&state.store, LEASE, owner, state.clock.now_ms(), LEASE_MS).await? {
        return Ok(false);
    }
    let rows = sqlx::query("SELECT id, alerts FROM alert_inbox WHERE processed_at IS NULL ORDER BY id LIMIT $1")
        .bind(BATCH)
        .fetch_all(&state.store.pool)
        .await?;
    let full = rows.len() as i64 == BATCH;
    for r in rows {
        let id: i64 = r.try_get("id")?;
        let alerts: Vec<Alert> = serde_json::from_str(&r.try_get::<String, _>("alerts")?)?;
        let now = state.clock.now_ms();
        let mut tx = state.store.begin().await?;
        // Another instance that held the lease before us may have done it.
        let claimed = sqlx::query("UPDATE alert_inbox SET processed_at = $1 WHERE id = $2 AND processed_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if claimed.rows_affected() != 1 {
            continue;
        }
        let mut diagnose = Vec::new();
        for a in &alerts {
            if let Some(d) = handle(&mut tx, state, a, now).await? {
                diagnose.push(d);
            }
        }
        tx.commit().await?;
        state.outbox_wake.notify_one();
        for d in diagnose {
            state.tasks.spawn(crate::diagnose::auto(state.clone(), d));
        }
    }
    Ok(full)
}

struct Row_ {
    id: i64,
    status: Status,
    channel: String,
    thread_key: Option<String>,
    incident_id: Option<i64>,
    occurrence: i64,
    deliveries: i64,
    fired_at: i64,
}

async fn find(tx: &mut AnyConnection, a: &Alert) -> anyhow::Result<Option<Row_>> {
    let r = sqlx::query(
        "SELECT id, status, channel, thread_key, incident_id, occurrence, deliveries, fired_at
         FROM alerts WHERE source = $1 AND fingerprint = $2",
    )
    .bind(a.source.as_str())
    .bind(&a.fingerprint)
    .fetch_optional(&mut *tx)
    .await?;
    r.map(|r| {
        Ok(Row_ {
            id: r.try_get("id")?,
            status: if r.try_get::<String, _>("status")? == "firing" {
                Status::Firing
            } else {
                Status::Resolved
            },
            channel: r.try_get("channel")?,
            thread_key: r.try_get("thread_key")?,
            incident_id: r.try_get("incident_id")?,
            occurrence: r.try_get("occurrence")?,
            deliveries: r.try_get("deliveries")?,
            fired_at: r.try_get("fired_at")?,
        })
    })
    .transpose()
}

fn key(id: i64) -> String {
    format!("alert:{id}")
}

async fn handle(tx: &mut AnyConnection, state: &AppState, a: &Alert, now: i64) -> anyhow::Result<Option<AutoDiagnose>> {
    let existing = find(tx, a).await?;
    match (a.status, existing) {
        (Status::Firing, None) => first_firing(tx, state, a, now).await,
        (Status::Firing, Some(r)) if r.status == Status::Firing => {
            sqlx::query("UPDATE alerts SET deliveries = deliveries + 1, last_seen = $1, latest = $2 WHERE id = $3")
                .bind(now)
                .bind(serde_json::to_string(a)?)
                .bind(r.id)
                .execute(&mut *tx)
                .await?;
            let seen = Seen {
                deliveries: r.deliveries + 1,
                ..seen(&r, now)
            };
            update(tx, &r, a, &seen, None, now).await?;
            Ok(None)
        }
        (Status::Firing, Some(r)) => {
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
        (Status::Resolved, Some(r)) if r.status == Status::Firing => {
            sqlx::query(
                "UPDATE alerts SET status = 'resolved', resolved_at = $1, last_seen = $1, latest = $2 WHERE id = $3",
            )
            .bind(now)
            .bind(serde_json::to_string(a)?)
            .bind(r.id)
            .execute(&mut *tx)
            .await?;
            let took = human_duration(now - r.fired_at);
            let seen = Seen {
                resolved_at: Some(now),
                ..seen(&r, now)
            };
            event(
                tx,
                r.incident_id,
                now,
                &format!("Alert resolved after {took}: {}", a.title),
            )
            .await?;
            update(
                tx,
                &r,
                a,
                &seen,
                Some(format!(":white_check_mark: Resolved after {took}.")),
                now,
            )
            .await?;
            Ok(None)
        }
        // Resolved for something never seen firing, or resolved twice.
        (Status::Resolved, _) => Ok(None),
    }
}

fn seen(r: &Row_, now: i64) -> Seen {
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
    r: &Row_,
    a: &Alert,
    seen: &Seen,
    reply: Option<String>,
    now: i64,
) -> anyhow::Result<()> {
    let channel = ChannelId::parse(&r.channel).map_err(|e| anyhow::anyhow!("stored channel: {e}"))?;
    let mut msgs = vec![Outgoing::update(&channel, &key(r.id), render::message(a, seen, now))];
    if let Some(text) = reply {
        let thread = r.thread_key.clone().unwrap_or_else(|| key(r.id));
        msgs.push(Outgoing::post_keyed(
            &channel,
            Some(thread),
            None,
            crate::incident::render::reply(text),
        ));
    }
    outbox::enqueue(tx, &msgs, None, now).await
}

async fn first_firing(
    tx: &mut AnyConnection,
    state: &AppState,
    a: &Alert,
    now: i64,
) -> anyhow::Result<Option<AutoDiagnose>> {
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
        incidents::add_event(
            tx,
            i.id,
            now,
            "bot",
            "alert",
            &format!("Declared from {} alert {}", a.source.as_str(), a.fingerprint),
        )
        .await?;
        incident = Some(i);
    }
    let channel = match (&incident, route.and_then(|r| r.channel.as_deref())) {
        (Some(i), _) => ChannelId::parse(&i.channel).map_err(|e| anyhow::anyhow!("stored channel: {e}"))?,
        (None, Some(c)) => ChannelId::parse(c).map_err(|e| anyhow::anyhow!("route channel: {e}"))?,
        (None, None) => state.config.slack.incident_channel.clone(),
    };
    let thread_key = incident.as_ref().map(|i| crate::incident::root_key(i.id));
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO alerts (source, fingerprint, status, severity, title, channel, thread_key, incident_id, occurrence,
           deliveries, first_seen, last_seen, fired_at, latest)
         VALUES ($1, $2, 'firing', $3, $4, $5, $6, $7, 1, 1, $8, $8, $8, $9) RETURNING id",
    )
    .bind(a.source.as_str())
    .bind(&a.fingerprint)
    .bind(&a.severity)
    .bind(&a.title)
    .bind(channel.as_str())
    .bind(thread_key.clone())
    .bind(incident.as_ref().map(|i| i.id))
    .bind(now)
    .bind(serde_json::to_string(a)?)
    .fetch_one(&mut *tx)
    .await?;
    let seen = Seen {
        occurrence: 1,
        deliveries: 1,
        fired_at: now,
        last_seen: now,
        resolved_at: None,
        incident: incident.as_ref().map(|i| i.id),
    };
    let msg = Outgoing::post_keyed(
        &channel,
        thread_key.clone(),
        Some(key(id)),
        render::message(a, &seen, now),
    );
    outbox::enqueue(tx, &[msg], None, now).await?;
    event(
        tx,
        incident.as_ref().map(|i| i.id),
        now,
        &format!("Alert firing: {} ({})", a.title, a.severity),
    )
    .await?;
    state.metrics.inc(
        "runbook_bot_alerts_total",
        format!("source=\"{}\",outcome=\"posted\"", a.source.as_str()),
    );
    Ok(route.filter(|r| !r.diagnose.is_empty()).map(|r| AutoDiagnose {
        names: r.diagnose.clone(),
        channel,
        incident_id: incident.as_ref().map(|i| i.id),
        thread_key: thread_key.unwrap_or_else(|| key(id)),
    }))
}
