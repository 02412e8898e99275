//! Prometheus metrics for `/metrics`, kept with the Prometheus project's own
//! client (`prometheus-client`).
//!
//! One `Registry` per `Metrics` and one `Metrics` per `AppState`: nothing is
//! global, so the several `App`s a test process runs never mix numbers.
//! Every family has a typed label set (`labels.rs`) whose values are bounded.
//!
//! Adding a metric: a field, its registration in `Metrics::new` (a counter's
//! name without `_total`, a histogram's without `_seconds`: the encoder adds
//! them) and a method that says what happened, which call sites use.

mod exposition;
pub mod labels;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

pub use exposition::Format;
use labels::*;

/// Latencies, around Slack's 3 s budget for an answer (we answer inline
/// within 2 s): 5 ms … 3 s … 30 s.
const LATENCY: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 3.0, 5.0, 10.0, 30.0,
];
/// Delays to Slack: paced at about one post a second per channel, and
/// retried for minutes when Slack is rate limited or down.
const DELAY: [f64; 13] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];

fn latency() -> Histogram {
    Histogram::new(LATENCY)
}
fn delay() -> Histogram {
    Histogram::new(DELAY)
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    slack_requests: Family<SlackRequest, Counter>,
    http_duration: Histograms<HttpRequest>,
    commands: Family<Command, Counter>,
    command_duration: Histograms<Command>,
    outbox: Family<Outcome, Counter>,
    outbox_delay: Histograms<Delivery>,
    backlog: Backlog,
    incidents_declared: Family<Severity, Counter>,
    escalations: Family<Severity, Counter>,
    alerts_received: Family<Alert, Counter>,
    alerts: Family<Alert, Counter>,
    alert_to_post: Histogram,
    alert_storms: Family<Route, Counter>,
    auto_diagnose: Family<AutoDiagnose, Counter>,
    diagnostics: Family<Diagnostic, Counter>,
    diagnostic_steps: Family<Diagnostic, Counter>,
    step_duration: Histograms<Target>,
    unreachable: Family<Unreachable, Counter>,
    followups: Family<Outcome, Counter>,
    approvals: Family<Outcome, Counter>,
    http_connections: Family<Event, Counter>,
    throttled: Family<Throttled, Counter>,
    socket: Family<Event, Counter>,
}

/// Outbox gauges, as the background readiness check last read them from the
/// state store (so every replica reports the shared backlog, and a scrape
/// costs no query); -1 when it could not be read or the check is stale.
#[derive(Default)]
struct Backlog {
    pending: Gauge,
    lanes: Gauge,
    fullest_lane: Gauge,
    oldest_seconds: Gauge<f64, AtomicU64>,
}

/// What the readiness check reads from the outbox for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxBacklog {
    pub pending: i64,
    pub lanes: i64,
    pub fullest_lane: i64,
    pub oldest_age_ms: i64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            slack_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency),
            commands: Family::default(),
            command_duration: Family::new_with_constructor(latency),
            outbox: Family::default(),
            outbox_delay: Family::new_with_constructor(delay),
            backlog: Backlog::default(),
            incidents_declared: Family::default(),
            escalations: Family::default(),
            alerts_received: Family::default(),
            alerts: Family::default(),
            alert_to_post: delay(),
            alert_storms: Family::default(),
            auto_diagnose: Family::default(),
            diagnostics: Family::default(),
            diagnostic_steps: Family::default(),
            step_duration: Family::new_with_constructor(latency),
            unreachable: Family::default(),
            followups: Family::default(),
            approvals: Family::default(),
            http_connections: Family::default(),
            throttled: Family::default(),
            socket: Family::default(),
        };
        // Series that alert rules divide by or rate() over exist from the start.
        for outcome in ["sent", "retry", "failed", "superseded"] {
            let _ = m.outbox.get_or_create(&Outcome { outcome });
        }
        m.register()
    }

    fn register(mut self) -> Metrics {
        let mut r = Registry::default();
        self.register_edge(&mut r);
        self.register_outbox(&mut r);
        self.register_work(&mut r);
        self.register_limits(&mut r);
        self.registry = r;
        self
    }

    /// Requests, commands and what people do with incidents and approvals.
    fn register_edge(&self, r: &mut Registry) {
        r.register(
            "runbook_bot_slack_requests",
            "Slack requests received, by route and outcome",
            self.slack_requests.clone(),
        );
        r.register_with_unit(
            "runbook_bot_http_request_duration",
            "HTTP request duration by matched route and status class; /slack/commands is the ack Slack waits 3 s for",
            Unit::Seconds,
            self.http_duration.clone(),
        );
        r.register(
            "runbook_bot_commands",
            "Commands dispatched, by command and outcome",
            self.commands.clone(),
        );
        r.register_with_unit(
            "runbook_bot_command_duration",
            "Time from dispatch to reply, by command and outcome (a diagnostic from Slack replies once started)",
            Unit::Seconds,
            self.command_duration.clone(),
        );
        r.register(
            "runbook_bot_incidents_declared",
            "Incidents declared, by severity",
            self.incidents_declared.clone(),
        );
        r.register(
            "runbook_bot_escalations",
            "Escalation steps posted, by severity",
            self.escalations.clone(),
        );
        r.register(
            "runbook_bot_approvals",
            "Approval requests by what happened to them (requested, approved, denied, expired, applied, rolled_back, failed, interrupted)",
            self.approvals.clone(),
        );
    }

    /// Slack writes and alerts, which reach Slack through them.
    fn register_outbox(&self, r: &mut Registry) {
        let b = &self.backlog;
        r.register(
            "runbook_bot_outbox",
            "Outbox deliveries, by outcome (sent, retry, failed, superseded)",
            self.outbox.clone(),
        );
        r.register_with_unit(
            "runbook_bot_outbox_delivery_delay",
            "Time from queueing a Slack write to Slack accepting it, by kind and origin",
            Unit::Seconds,
            self.outbox_delay.clone(),
        );
        let waiting = "as of the last readiness check (-1: state store unreachable)";
        r.register(
            "runbook_bot_outbox_pending",
            format!("Slack writes waiting to be delivered, {waiting}"),
            b.pending.clone(),
        );
        r.register(
            "runbook_bot_outbox_lanes_waiting",
            format!("Lanes (channels, response URLs) with writes waiting, {waiting}"),
            b.lanes.clone(),
        );
        r.register(
            "runbook_bot_outbox_lane_backlog_max",
            format!("Writes waiting in the most backed-up lane, {waiting}"),
            b.fullest_lane.clone(),
        );
        r.register_with_unit(
            "runbook_bot_outbox_oldest_pending",
            format!("Age of the oldest write waiting (0 when none), {waiting}"),
            Unit::Seconds,
            b.oldest_seconds.clone(),
        );
        r.register(
            "runbook_bot_alerts_received",
            "Alert webhooks received, by source and outcome",
            self.alerts_received.clone(),
        );
        r.register(
            "runbook_bot_alerts",
            "Alerts processed, by source and outcome (posted on their own, grouped into one message, failed)",
            self.alerts.clone(),
        );
        r.register_with_unit(
            "runbook_bot_alert_to_slack",
            "Time from receiving an alert to Slack accepting its first post (its own, or the grouped message that first lists it)",
            Unit::Seconds,
            self.alert_to_post.clone(),
        );
        r.register(
            "runbook_bot_alert_storm",
            "Alert groups attached to a route's newest open incident because the route was over its storm limit",
            self.alert_storms.clone(),
        );
    }

    /// Work on the targets: diagnostics, reachability, follow-ups.
    fn register_work(&self, r: &mut Registry) {
        r.register(
            "runbook_bot_diagnostics",
            "Diagnostics run, by name and verdict (ok, could_not_check, warning, critical)",
            self.diagnostics.clone(),
        );
        r.register(
            "runbook_bot_diagnostic_steps",
            "Diagnostic steps run, by diagnostic name and step verdict",
            self.diagnostic_steps.clone(),
        );
        r.register_with_unit(
            "runbook_bot_diagnostic_step_duration",
            "Diagnostic step duration, attempts included, by target",
            Unit::Seconds,
            self.step_duration.clone(),
        );
        r.register(
            "runbook_bot_auto_diagnose",
            "Automatic diagnostics by name and outcome (started, skipped over the concurrency cap, deduplicated within the window)",
            self.auto_diagnose.clone(),
        );
        r.register(
            "runbook_bot_target_unreachable",
            "Times a target database could not be reached, by target and by what found out",
            self.unreachable.clone(),
        );
        r.register(
            "runbook_bot_followups",
            "Follow-ups finished (the GDPR hard delete), by outcome (done, incomplete, failed)",
            self.followups.clone(),
        );
    }

    /// What the HTTP server and Socket Mode did with connections, and what
    /// per-user limits dropped.
    fn register_limits(&self, r: &mut Registry) {
        r.register(
            "runbook_bot_http_connections",
            "HTTP connections, by event (accepted, over_capacity: answered 503, dropped: closed unanswered, idle_closed)",
            self.http_connections.clone(),
        );
        r.register(
            "runbook_bot_throttled",
            "Acts dropped by a per-user limit, by what (refused_click, mention)",
            self.throttled.clone(),
        );
        r.register(
            "runbook_bot_socket",
            "Socket Mode connections and frames, by event (connected, closed, disconnect_requested, failed, invalid_frame)",
            self.socket.clone(),
        );
    }

    /// The exposition in `format`.
    pub fn render(&self, format: Format) -> String {
        exposition::render(&self.registry, format)
    }

    /// A Slack request at the edge: `route` is `commands`, `interactions`
    /// or `events`.
    pub fn slack_request(&self, route: &'static str, outcome: &'static str) {
        self.slack_requests
            .get_or_create(&SlackRequest { route, outcome })
            .inc();
    }

    /// An HTTP request answered: `route` is the matched template.
    pub fn http_request(&self, route: &str, status: u16, took: Duration) {
        let labels = HttpRequest {
            route: route.to_string(),
            status: status_class(status),
        };
        self.http_duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// A command (or button) answered.
    pub fn command(&self, command: &str, outcome: &'static str, took: Duration) {
        let labels = Command {
            command: command.to_string(),
            outcome,
        };
        self.commands.get_or_create(&labels).inc();
        self.command_duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// How one outbox delivery attempt ended.
    pub fn outbox_delivery(&self, outcome: &'static str) {
        self.outbox.get_or_create(&Outcome { outcome }).inc();
    }

    /// A Slack write accepted `queued_for` after it was queued; an alert's
    /// own post also `since_intake` after its webhook arrived.
    pub fn outbox_sent(
        &self,
        kind: &'static str,
        automated: bool,
        queued_for: Duration,
        since_intake: Option<Duration>,
    ) {
        let origin = if automated { "automated" } else { "person" };
        self.outbox_delay
            .get_or_create(&Delivery { kind, origin })
            .observe(queued_for.as_secs_f64());
        if let Some(d) = since_intake {
            self.alert_to_post.observe(d.as_secs_f64());
        }
    }

    /// The outbox's backlog as of the last readiness check; `None` when the
    /// state store could not be read (or the check is stale).
    pub fn set_outbox_backlog(&self, b: Option<OutboxBacklog>) {
        let b = b.unwrap_or(OutboxBacklog {
            pending: -1,
            lanes: -1,
            fullest_lane: -1,
            oldest_age_ms: -1000,
        });
        self.backlog.pending.set(b.pending);
        self.backlog.lanes.set(b.lanes);
        self.backlog.fullest_lane.set(b.fullest_lane);
        self.backlog.oldest_seconds.set(b.oldest_age_ms as f64 / 1000.0);
    }

    pub fn incident_declared(&self, severity: &'static str) {
        self.incidents_declared.get_or_create(&Severity { severity }).inc();
    }

    pub fn escalation(&self, severity: &'static str) {
        self.escalations.get_or_create(&Severity { severity }).inc();
    }

    /// An alert webhook answered at the edge.
    pub fn alert_received(&self, source: &'static str, outcome: &'static str) {
        self.alerts_received.get_or_create(&Alert { source, outcome }).inc();
    }

    /// An alert processed from the inbox.
    pub fn alert(&self, source: &'static str, outcome: &'static str) {
        self.alerts.get_or_create(&Alert { source, outcome }).inc();
    }

    /// `n` alerts of one notification joined their group's one message.
    pub fn alerts_grouped(&self, source: &'static str, n: u64) {
        let outcome = "grouped";
        self.alerts.get_or_create(&Alert { source, outcome }).inc_by(n);
    }

    /// A route over its storm limit attached a group to its newest open
    /// incident; `route` names the configured route (`routes[2]`).
    pub fn alert_storm(&self, route: &str) {
        let labels = Route {
            route: route.to_string(),
        };
        self.alert_storms.get_or_create(&labels).inc();
    }

    /// An automatic diagnostic `started`, `skipped` or `deduplicated`;
    /// `name` is a diagnostic of the catalog named by a route.
    pub fn auto_diagnose(&self, name: &str, outcome: &'static str) {
        let labels = AutoDiagnose {
            name: name.to_string(),
            outcome,
        };
        self.auto_diagnose.get_or_create(&labels).inc();
    }

    /// A diagnostic finished with `verdict`.
    pub fn diagnostic(&self, name: &str, verdict: &'static str) {
        let labels = Diagnostic {
            name: name.to_string(),
            verdict,
        };
        self.diagnostics.get_or_create(&labels).inc();
    }

    /// One step of diagnostic `name` on `target`; `took` is `None` for a
    /// step that was not run (its target had already proved unreachable).
    pub fn diagnostic_step(&self, name: &str, target: &str, verdict: &'static str, took: Option<Duration>) {
        let labels = Diagnostic {
            name: name.to_string(),
            verdict,
        };
        self.diagnostic_steps.get_or_create(&labels).inc();
        if let Some(took) = took {
            let target = Target {
                target: target.to_string(),
            };
            self.step_duration.get_or_create(&target).observe(took.as_secs_f64());
        }
    }

    /// A target database could not be reached; `via` is `diagnostic` or
    /// `health_poll`.
    pub fn target_unreachable(&self, target: &str, via: &'static str) {
        let labels = Unreachable {
            target: target.to_string(),
            via,
        };
        self.unreachable.get_or_create(&labels).inc();
    }

    pub fn followup(&self, outcome: &'static str) {
        self.followups.get_or_create(&Outcome { outcome }).inc();
    }

    /// An approval request changed state (`requested`, then a state name).
    pub fn approval(&self, outcome: &'static str) {
        self.approvals.get_or_create(&Outcome { outcome }).inc();
    }

    /// A connection to the HTTP server: `accepted`, `over_capacity`,
    /// `dropped`, `idle_closed`.
    pub fn http_connection(&self, event: &'static str) {
        self.http_connections.get_or_create(&Event { event }).inc();
    }

    /// An act a per-user limit dropped: `refused_click`, `mention`.
    pub fn throttled(&self, what: &'static str) {
        self.throttled.get_or_create(&Throttled { what }).inc();
    }

    /// A Socket Mode connection `connected`, `closed`, `disconnect_requested`,
    /// `failed`, or an `invalid_frame` on one.
    pub fn socket(&self, event: &'static str) {
        self.socket.get_or_create(&Event { event }).inc();
    }
}

fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    }
}

#[cfg(test)]
mod tests;
