//! One notification's alerts of one group. While the group has no grouped
//! message and the notification brings no more new alerts than the
//! threshold, each alert takes the one-alert path (`single.rs`), sharing the
//! group's one incident. Beyond the threshold the group gets one grouped
//! message (`grouped.rs`), and from then on its alerts join, repeat and
//! resolve in that message: one post or update per notification, however
//! many alerts it carries. Alerts that already have a post of their own
//! keep it.

use sqlx::AnyConnection;

use super::group::{self, Group};
use super::grouped::{self, Member, View};
use super::normalize::{Alert, Status};
use super::place::{self, Place};
use super::routes;
use super::single::{self, AlertRow};
use crate::diagnose::auto::AutoDiagnose;
use crate::outbox::{self, Outgoing};
use crate::slack::ids::ChannelId;
use crate::state::AppState;

pub async fn handle(
    tx: &mut AnyConnection,
    state: &AppState,
    key: &str,
    alerts: &[&Alert],
    now: i64,
    received_at: i64,
) -> anyhow::Result<Vec<AutoDiagnose>> {
    let grouping = &state.config.alerts.grouping;
    let window_ms = i64::try_from(grouping.window.as_millis()).unwrap_or(i64::MAX);
    let mut g = group::current(tx, key, now, window_ms).await?;
    let mut rows = Vec::with_capacity(alerts.len());
    for a in alerts {
        rows.push(single::find(tx, a).await?);
    }
    let new = alerts.iter().zip(&rows).filter(|(a, r)| is_new(a, r.as_ref())).count();
    if g.message_key.is_none() && new <= grouping.threshold as usize {
        let mut out = Vec::new();
        for a in alerts {
            out.extend(single::handle(tx, state, a, Some(&mut g), now, received_at).await?);
        }
        return Ok(out);
    }
    grouped(tx, state, g, alerts, rows, (now, received_at)).await
}

fn is_new(a: &Alert, row: Option<&AlertRow>) -> bool {
    a.status == Status::Firing && row.is_none_or(|r| r.status == Status::Resolved)
}

/// What one notification changed in the grouped message.
#[derive(Default)]
struct Tally {
    joined: u64,
    resolved: u64,
}

async fn grouped(
    tx: &mut AnyConnection,
    state: &AppState,
    mut g: Group,
    alerts: &[&Alert],
    rows: Vec<Option<AlertRow>>,
    (now, received_at): (i64, i64),
) -> anyhow::Result<Vec<AutoDiagnose>> {
    let lead = alerts
        .iter()
        .zip(&rows)
        .find(|(a, r)| is_new(a, r.as_ref()))
        .map_or(alerts[0], |(a, _)| *a);
    let created = g.message_key.is_none();
    let place = if created {
        let p = place::find(tx, state, lead, Some(&mut g), now).await?;
        let title = lead.labels.get("alertname").unwrap_or(&lead.title).clone();
        g.set_message(tx, p.channel.as_str(), p.thread_key.clone(), &title)
            .await?;
        p
    } else {
        stored_place(state, &g, lead)?
    };
    let key = g.message_key.clone().unwrap_or_default();
    let (mut out, mut tally) = (Vec::new(), Tally::default());
    for (a, r) in alerts.iter().zip(rows) {
        match r {
            Some(r) if !grouped::is_message_key(&r.message_key) => {
                out.extend(single::handle(tx, state, a, Some(&mut g), now, received_at).await?);
            }
            r => member(tx, a, r, &g, &place, now, &mut tally).await?,
        }
    }
    let view = view(tx, &g, lead, place.incident_id).await?;
    publish(tx, &place, (&key, created), &view, &tally, (now, received_at)).await?;
    state.metrics.alerts_grouped(lead.source.as_str(), tally.joined);
    if tally.joined > 0 {
        out.extend(place.auto_diagnose(&key));
    }
    Ok(out)
}

/// Post (`created`) or update the grouped message; when its last alert
/// resolved, say so once in its thread; sum the notification up on the
/// timeline. A post or update that lists alerts new to Slack keeps when
/// their payload arrived (`received_at`), for the intake → Slack delay.
async fn publish(
    tx: &mut AnyConnection,
    place: &Place,
    (key, created): (&str, bool),
    view: &View,
    tally: &Tally,
    (now, received_at): (i64, i64),
) -> anyhow::Result<()> {
    let content = grouped::message(view, now);
    let mut message = if created {
        Outgoing::post_keyed(&place.channel, place.thread_key.clone(), Some(key.to_string()), content)
    } else {
        Outgoing::update(&place.channel, key, content)
    }
    .automated();
    if tally.joined > 0 {
        message = message.alert_received_at(received_at);
    }
    let mut msgs = vec![message];
    if view.firing == 0 && tally.resolved > 0 {
        let text = format!(
            ":white_check_mark: All {} alerts of this group resolved.",
            view.resolved
        );
        let thread = place.thread_key.clone().unwrap_or_else(|| key.to_string());
        msgs.push(
            Outgoing::post_keyed(&place.channel, Some(thread), None, crate::incident::render::reply(text)).automated(),
        );
    }
    outbox::enqueue(tx, &msgs, None, now).await?;
    if tally.joined > 0 || tally.resolved > 0 {
        let text = format!(
            "Alert group {}: {} new, {} resolved; {} of {} firing",
            view.title,
            tally.joined,
            tally.resolved,
            view.firing,
            view.firing + view.resolved
        );
        single::event(tx, place.incident_id, now, &text).await?;
    }
    Ok(())
}

/// Where the group's message already is.
fn stored_place(state: &AppState, g: &Group, lead: &Alert) -> anyhow::Result<Place> {
    let channel = g.channel.as_deref().unwrap_or_default();
    Ok(Place {
        channel: ChannelId::parse(channel).map_err(|e| anyhow::anyhow!("stored channel: {e}"))?,
        thread_key: g.thread_key.clone(),
        incident_id: g.incident_id,
        diagnose: routes::pick(&state.config.alerts.routes, lead)
            .map(|p| p.route.diagnose.clone())
            .unwrap_or_default(),
    })
}

/// Record one alert of the grouped message.
async fn member(
    tx: &mut AnyConnection,
    a: &Alert,
    r: Option<AlertRow>,
    g: &Group,
    place: &Place,
    now: i64,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let latest = serde_json::to_string(a)?;
    let key = g.message_key.as_deref().unwrap_or_default();
    match (a.status, r) {
        (Status::Firing, None) => {
            insert_member(tx, a, &latest, g, place, now).await?;
            tally.joined += 1;
        }
        (Status::Firing, Some(r)) if r.status == Status::Firing && r.group_id == Some(g.id) => {
            sqlx::query("UPDATE alerts SET deliveries = deliveries + 1, last_seen = $1, latest = $2 WHERE id = $3")
                .bind(now)
                .bind(latest)
                .bind(r.id)
                .execute(&mut *tx)
                .await?;
        }
        // Firing again after a resolve, or still firing from the group's
        // previous run: listed in this run's message from now on.
        (Status::Firing, Some(r)) => {
            let refired = r.status == Status::Resolved;
            sqlx::query(
                "UPDATE alerts SET status = 'firing', occurrence = occurrence + $1,
                   deliveries = CASE WHEN $1 = 1 THEN 1 ELSE deliveries + 1 END,
                   fired_at = CASE WHEN $1 = 1 THEN $2 ELSE fired_at END, last_seen = $2, resolved_at = NULL,
                   latest = $3, group_id = $4, message_key = $5, channel = $6, thread_key = $7, incident_id = $8
                 WHERE id = $9",
            )
            .bind(i64::from(refired))
            .bind(now)
            .bind(latest)
            .bind(g.id)
            .bind(key)
            .bind(place.channel.as_str())
            .bind(place.thread_key.clone())
            .bind(place.incident_id)
            .bind(r.id)
            .execute(&mut *tx)
            .await?;
            tally.joined += 1;
        }
        (Status::Resolved, Some(r)) if r.status == Status::Firing => {
            sqlx::query(
                "UPDATE alerts SET status = 'resolved', resolved_at = $1, last_seen = $1, latest = $2 WHERE id = $3",
            )
            .bind(now)
            .bind(latest)
            .bind(r.id)
            .execute(&mut *tx)
            .await?;
            if r.group_id == Some(g.id) {
                tally.resolved += 1;
            }
        }
        (Status::Resolved, _) => {}
    }
    Ok(())
}

/// A new alert of the group, firing.
async fn insert_member(
    tx: &mut AnyConnection,
    a: &Alert,
    latest: &str,
    g: &Group,
    place: &Place,
    now: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO alerts (source, fingerprint, status, severity, title, channel, message_key, thread_key,
           incident_id, occurrence, deliveries, first_seen, last_seen, fired_at, latest, group_id)
         VALUES ($1, $2, 'firing', $3, $4, $5, $6, $7, $8, 1, 1, $9, $9, $9, $10, $11)",
    )
    .bind(a.source.as_str())
    .bind(&a.fingerprint)
    .bind(&a.severity)
    .bind(&a.title)
    .bind(place.channel.as_str())
    .bind(g.message_key.as_deref().unwrap_or_default())
    .bind(place.thread_key.clone())
    .bind(place.incident_id)
    .bind(now)
    .bind(latest)
    .bind(g.id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The grouped message's totals and first alerts of each list, as stored.
async fn view(tx: &mut AnyConnection, g: &Group, lead: &Alert, incident: Option<i64>) -> anyhow::Result<View> {
    let key = g.message_key.as_deref().unwrap_or_default();
    let counts: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM alerts WHERE group_id = $1 AND message_key = $2 GROUP BY status")
            .bind(g.id)
            .bind(key)
            .fetch_all(&mut *tx)
            .await?;
    let count = |s: &str| counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
    let mut lists = Vec::new();
    for (status, order) in [("firing", "fired_at, id"), ("resolved", "resolved_at DESC, id DESC")] {
        // `order` is one of the two literals above.
        let sql = format!(
            "SELECT title, severity, status, fired_at, resolved_at FROM alerts
             WHERE group_id = $1 AND message_key = $2 AND status = $3 ORDER BY {order} LIMIT $4"
        );
        let members: Vec<Member> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(g.id)
            .bind(key)
            .bind(status)
            .bind(grouped::LISTED as i64)
            .fetch_all(&mut *tx)
            .await?;
        lists.push(members);
    }
    let resolved_list = lists.pop().unwrap_or_default();
    let firing_list = lists.pop().unwrap_or_default();
    Ok(View {
        source: lead.source.as_str().to_string(),
        title: g.title.clone().unwrap_or_else(|| lead.title.clone()),
        firing: count("firing"),
        resolved: count("resolved"),
        firing_list,
        resolved_list,
        incident,
    })
}
