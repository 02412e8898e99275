//! The label set of every metric family, typed.
//!
//! A value is either a `&'static str`, a word written in the code (so it
//! cannot carry a user id, a channel id or text somebody typed), or a
//! `String` the operator bounds: a command or diagnostic from the catalog, a
//! target from the config, a route template from the router.

use prometheus_client::encoding::EncodeLabelSet;

/// `runbook_bot_slack_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlackRequest {
    /// `commands`, `interactions`, `events`.
    pub route: &'static str,
    pub outcome: &'static str,
}

/// `runbook_bot_commands_total`, `runbook_bot_command_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Command {
    /// `incident.declare`, `diagnose.orphans`, `approval.approve`, …
    pub command: String,
    /// `ok`, `refused`, `error`, `usage`.
    pub outcome: &'static str,
}

/// `runbook_bot_http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRequest {
    /// The matched route template (`/alerts/{source}`), or `unmatched`.
    pub route: String,
    /// `2xx`, `4xx`, `5xx`, …
    pub status: &'static str,
}

/// Counters with only an outcome: outbox deliveries, follow-ups, approvals.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

/// `runbook_bot_outbox_delivery_delay_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Delivery {
    /// `post`, `update`, `respond`.
    pub kind: &'static str,
    /// `person` (what someone's command caused) or `automated`.
    pub origin: &'static str,
}

/// Incidents declared, escalations posted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Severity {
    pub severity: &'static str,
}

/// Alert webhooks received, alerts processed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Alert {
    /// `alertmanager`, `grafana`, `sentry`, `generic`, `health`, `unknown`, `any`.
    pub source: &'static str,
    pub outcome: &'static str,
}

/// Diagnostics and their steps, by catalog name and verdict.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Diagnostic {
    pub name: String,
    /// `ok`, `could_not_check`, `warning`, `critical`.
    pub verdict: &'static str,
}

/// `runbook_bot_diagnostic_step_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Target {
    pub target: String,
}

/// `runbook_bot_target_unreachable_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Unreachable {
    pub target: String,
    /// `diagnostic` or `health_poll`.
    pub via: &'static str,
}

/// `runbook_bot_alert_storm_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    /// The configured route, by position: `routes[0]`, `routes[1]`, …
    pub route: String,
}

/// `runbook_bot_auto_diagnose_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AutoDiagnose {
    /// A catalog diagnostic a route names.
    pub name: String,
    /// `started`, `skipped`, `deduplicated`.
    pub outcome: &'static str,
}

/// `runbook_bot_http_connections_total`, `runbook_bot_socket_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Event {
    pub event: &'static str,
}

/// `runbook_bot_throttled_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Throttled {
    /// `refused_click`, `mention`.
    pub what: &'static str,
}
