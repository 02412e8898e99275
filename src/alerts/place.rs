//! Where a firing alert (or a group's grouped message) goes: the incident
//! its group already opened or joined; else the open incident of its
//! `service` (when the route attaches); else a new incident (when the route
//! declares, within its storm limit, beyond which the route's newest open
//! incident takes it); else the route's channel or the incident channel.

use sqlx::AnyConnection;

use super::group::Group;
use super::normalize::Alert;
use super::routes::{self, Picked};
use super::storm;
use crate::diagnose::auto::AutoDiagnose;
use crate::incident::cmd::{NewIncident, declare};
use crate::incident::model::{Incident, Severity, State};
use crate::incident::store as incidents;
use crate::outbox::{self, Outgoing};
use crate::slack::ids::ChannelId;
use crate::state::AppState;

pub struct Place {
    pub channel: ChannelId,
    pub thread_key: Option<String>,
    pub incident_id: Option<i64>,
    /// The route's diagnostics.
    pub diagnose: Vec<String>,
}

impl Place {
    /// The route's diagnostics, threaded where the alert is: under the
    /// incident, else under the alert's own message (`message_key`).
    pub fn auto_diagnose(&self, message_key: &str) -> Option<AutoDiagnose> {
        (!self.diagnose.is_empty()).then(|| AutoDiagnose {
            names: self.diagnose.clone(),
            channel: self.channel.clone(),
            incident_id: self.incident_id,
            thread_key: self.thread_key.clone().unwrap_or_else(|| message_key.to_string()),
        })
    }
}

pub async fn find(
    tx: &mut AnyConnection,
    state: &AppState,
    a: &Alert,
    group: Option<&mut Group>,
    now: i64,
) -> anyhow::Result<Place> {
    let picked = routes::pick(&state.config.alerts.routes, a);
    let route = picked.map(|p| p.route);
    let mut incident = match group.as_ref().and_then(|g| g.incident_id) {
        Some(id) => incidents::get(tx, id).await?.filter(|i| i.state != State::Resolved),
        None => None,
    };
    if incident.is_none()
        && route.is_none_or(|r| r.attach)
        && let Some(service) = a.service()
    {
        incident = incidents::newest_open_for_service(tx, service).await?;
    }
    if incident.is_none()
        && let Some(p) = picked
        && let Some(sev) = p.route.declare.as_deref()
    {
        incident = Some(declare_or_join(tx, state, a, p, sev, now).await?);
    }
    if let (Some(g), Some(i)) = (group, &incident)
        && g.incident_id != Some(i.id)
    {
        g.set_incident(tx, i.id).await?;
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

/// Declare for the route, unless it is over its storm limit and has an
/// open incident to join instead.
async fn declare_or_join(
    tx: &mut AnyConnection,
    state: &AppState,
    a: &Alert,
    p: Picked<'_>,
    sev: &str,
    now: i64,
) -> anyhow::Result<Incident> {
    let (route, limit) = (p.key(), &p.route.storm);
    if storm::over(&storm::recent(tx, &route, limit).await?, now, limit)
        && let Some(i) = storm::newest_open(tx, &route).await?
    {
        if storm::first_notice(tx, i.id, now).await? {
            let channel = ChannelId::parse(&i.channel).map_err(|e| anyhow::anyhow!("stored channel: {e}"))?;
            let text = storm::notice(&route, limit);
            let msg = Outgoing::thread(i.id, &channel, crate::incident::render::reply(text)).automated();
            outbox::enqueue(tx, &[msg], None, now).await?;
            let event = format!("Storm mode: alert route {route} is over its limit; its new groups join here");
            incidents::add_event(tx, i.id, now, "bot", "alert", &event).await?;
        }
        state.metrics.alert_storm(&route);
        return Ok(i);
    }
    let severity = Severity::parse(sev).map_err(|e| anyhow::anyhow!("route severity: {e}"))?;
    let new = NewIncident {
        title: &a.title,
        severity,
        by: "bot",
        service: a.service(),
        automated: true,
    };
    let i = declare(tx, state, new, None, now).await?;
    let text = format!("Declared from {} alert {}", a.source.as_str(), a.fingerprint);
    incidents::add_event(tx, i.id, now, "bot", "alert", &text).await?;
    storm::record(tx, &route, i.id, now).await?;
    Ok(i)
}
