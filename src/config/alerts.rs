//! Alert intake and escalation settings: `[alerts]` (token, source
//! secrets, routes, health polling) and `[escalation]` (the ladders).

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::alert_limits::{self, AutoDiagnoseBudget, Grouping, RawAutoDiagnose, RawGrouping, StormLimit};
use crate::slack::ids::{ChannelId, RoleSubject};

/// The monitoring sources alerts come from. Config owns the closed set so
/// that routes can be validated without importing the alerts feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSource {
    Alertmanager,
    Grafana,
    Sentry,
    Generic,
    /// The bot's own health poller.
    Health,
}

impl AlertSource {
    pub fn parse(s: &str) -> Option<AlertSource> {
        Some(match s {
            "alertmanager" => AlertSource::Alertmanager,
            "grafana" => AlertSource::Grafana,
            "sentry" => AlertSource::Sentry,
            "generic" => AlertSource::Generic,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSource::Alertmanager => "alertmanager",
            AlertSource::Grafana => "grafana",
            AlertSource::Sentry => "sentry",
            AlertSource::Generic => "generic",
            AlertSource::Health => "health",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    token: Option<SecretString>,
    grafana_secret: Option<SecretString>,
    sentry_secret: Option<SecretString>,
    #[serde(default)]
    routes: Vec<Route>,
    health_poll_seconds: Option<u64>,
    #[serde(default)]
    grouping: RawGrouping,
    #[serde(default)]
    auto_diagnose: RawAutoDiagnose,
}

/// Where matching alerts go and what they set off. The first route whose
/// `match` fits an alert applies; without one, alerts post in the incident
/// channel and attach to an open incident of the same `service`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default, rename = "match")]
    pub matcher: Matcher,
    /// Channel id to post in (default: the incident channel).
    #[serde(default)]
    pub channel: Option<String>,
    /// Declare an incident at this severity when none is open for the service.
    #[serde(default)]
    pub declare: Option<String>,
    /// Thread into the open incident of the alert's `service` label.
    #[serde(default = "yes")]
    pub attach: bool,
    /// Read-only diagnostics to run when the alert fires.
    #[serde(default)]
    pub diagnose: Vec<String>,
    /// Labels whose values make an alert group, for sources without one
    /// of their own (Alertmanager's and Grafana's `groupKey` wins).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Declare at most this many incidents in this window (storm mode).
    #[serde(default)]
    pub storm: StormLimit,
}

/// Matches everything, posts in the incident channel, attaches, declares nothing.
impl Default for Route {
    fn default() -> Self {
        Route {
            matcher: Matcher::default(),
            channel: None,
            declare: None,
            attach: true,
            diagnose: Vec::new(),
            group_by: Vec::new(),
            storm: StormLimit::default(),
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    #[serde(default)]
    pub source: Option<String>,
    /// Any of these severities.
    #[serde(default)]
    pub severity: Vec<String>,
    /// Every one of these labels, exactly.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct AlertsConfig {
    pub token: Option<SecretString>,
    pub grafana_secret: Option<SecretString>,
    pub sentry_secret: Option<SecretString>,
    pub routes: Vec<Route>,
    /// How often the health poller probes endpoints and targets (0: off).
    pub health_poll: Duration,
    pub grouping: Grouping,
    pub auto_diagnose: AutoDiagnoseBudget,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            token: None,
            grafana_secret: None,
            sentry_secret: None,
            routes: Vec::new(),
            health_poll: Duration::from_secs(300),
            grouping: Grouping::default(),
            auto_diagnose: AutoDiagnoseBudget::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEscalation {
    /// User groups or users told at the "stakeholders" step.
    #[serde(default)]
    stakeholders: Vec<String>,
    p0: Option<Vec<EscalationStep>>,
    p1: Option<Vec<EscalationStep>>,
    p2: Option<Vec<EscalationStep>>,
    p3: Option<Vec<EscalationStep>>,
}

/// One rung of the ladder: after this long unacknowledged, tell these people.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStep {
    pub after_minutes: u32,
    /// `l1`, `l2`, `l3` (everyone configured at that level), `stakeholders`,
    /// or a Slack user (U…) / user-group (S…) id.
    pub notify: String,
}

#[derive(Debug, Clone)]
pub struct EscalationConfig {
    pub stakeholders: Vec<RoleSubject>,
    /// Steps per severity, p0..p3.
    pub ladders: [Vec<EscalationStep>; 4],
}

impl Default for EscalationConfig {
    /// The runbooks' timelines: P0 on-call now, stakeholders at 10 min, L3 at
    /// 15; P1 15 / 30 / 60 min; P2 1 h / 4 h / 24 h; P3 none.
    fn default() -> Self {
        let step = |after_minutes, notify: &str| EscalationStep {
            after_minutes,
            notify: notify.into(),
        };
        EscalationConfig {
            stakeholders: Vec::new(),
            ladders: [
                vec![step(0, "l2"), step(10, "stakeholders"), step(15, "l3")],
                vec![step(15, "l2"), step(30, "stakeholders"), step(60, "l3")],
                vec![step(60, "l2"), step(240, "stakeholders"), step(1440, "l3")],
                vec![],
            ],
        }
    }
}

/// An empty HMAC key signs anything anyone can compute: refuse it rather
/// than "check" signatures with it. An empty token closes nothing either.
fn check_secrets(alerts: &AlertsConfig, push: &mut dyn FnMut(&str, String)) {
    for (field, secret) in [
        ("alerts.token", &alerts.token),
        ("alerts.grafana_secret", &alerts.grafana_secret),
        ("alerts.sentry_secret", &alerts.sentry_secret),
    ] {
        if secret.as_ref().is_some_and(|s| s.expose_secret().trim().is_empty()) {
            push(field, "must not be empty (leave it out to turn this check off)".into());
        }
    }
}

/// Validate and assemble the alert and escalation settings; problems go to
/// `push` as (field, why).
pub(super) fn build(
    raw_alerts: RawAlerts,
    raw_escalation: RawEscalation,
    env_token: Option<SecretString>,
    push: &mut dyn FnMut(&str, String),
) -> (AlertsConfig, EscalationConfig) {
    let alerts = AlertsConfig {
        token: env_token.or(raw_alerts.token),
        grafana_secret: raw_alerts.grafana_secret,
        sentry_secret: raw_alerts.sentry_secret,
        routes: raw_alerts.routes,
        health_poll: Duration::from_secs(raw_alerts.health_poll_seconds.unwrap_or(300)),
        grouping: alert_limits::grouping(raw_alerts.grouping, push),
        auto_diagnose: alert_limits::auto_diagnose(raw_alerts.auto_diagnose, push),
    };
    check_secrets(&alerts, push);
    for (i, r) in alerts.routes.iter().enumerate() {
        if let Some(c) = &r.channel
            && let Err(e) = ChannelId::parse(c)
        {
            push(&format!("alerts.routes[{i}].channel"), e.to_string());
        }
        if let Some(s) = &r.declare
            && crate::severity::Severity::parse(s).is_err()
        {
            push(
                &format!("alerts.routes[{i}].declare"),
                format!("`{s}` is not p0, p1, p2 or p3"),
            );
        }
        if let Some(s) = &r.matcher.source
            && AlertSource::parse(s).is_none()
            && s != "health"
        {
            push(
                &format!("alerts.routes[{i}].match.source"),
                format!("`{s}` is not alertmanager, grafana, sentry, generic or health"),
            );
        }
        alert_limits::check_route(i, &r.group_by, &r.storm, push);
    }
    let mut escalation = EscalationConfig::default();
    for (i, id) in raw_escalation.stakeholders.iter().enumerate() {
        match RoleSubject::parse(id) {
            Ok(s) => escalation.stakeholders.push(s),
            Err(e) => push(&format!("escalation.stakeholders[{i}]"), e.to_string()),
        }
    }
    for (n, ladder) in [
        raw_escalation.p0,
        raw_escalation.p1,
        raw_escalation.p2,
        raw_escalation.p3,
    ]
    .into_iter()
    .enumerate()
    {
        if let Some(steps) = ladder {
            for (i, s) in steps.iter().enumerate() {
                let ok = matches!(s.notify.as_str(), "l1" | "l2" | "l3" | "stakeholders")
                    || RoleSubject::parse(&s.notify).is_ok();
                if !ok {
                    push(
                        &format!("escalation.p{n}[{i}].notify"),
                        format!("`{}` is not l1, l2, l3, stakeholders or a Slack id", s.notify),
                    );
                }
            }
            escalation.ladders[n] = steps;
        }
    }

    (alerts, escalation)
}
