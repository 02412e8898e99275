//! Prometheus counters for `/metrics`.
//!
//! Hand-written rather than the `metrics` crate: that crate installs a
//! process-global recorder, which the no-global-state rule forbids and which
//! would mix the numbers of the several `App`s a test process runs. A few
//! labelled atomic counters rendered as text is all `/metrics` needs.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
}

const HELP: &[(&str, &str)] = &[
    (
        "runbook_bot_slack_requests_total",
        "Slack requests received, by route and outcome.",
    ),
    (
        "runbook_bot_commands_total",
        "Commands dispatched, by command and outcome.",
    ),
    (
        "runbook_bot_outbox_total",
        "Outbox deliveries, by outcome (sent, retry, failed, superseded).",
    ),
    (
        "runbook_bot_incidents_declared_total",
        "Incidents declared, by severity.",
    ),
    (
        "runbook_bot_diagnostics_total",
        "Diagnostics run, by name and verdict (ok, could_not_check, warning, critical).",
    ),
    (
        "runbook_bot_diagnostic_steps_total",
        "Diagnostic steps run, by diagnostic name and step verdict.",
    ),
    (
        "runbook_bot_alerts_total",
        "Alerts handled, by source and outcome (posted on their own, grouped into one message, failed).",
    ),
    (
        "runbook_bot_alert_storm_total",
        "Alert groups attached to a route's newest open incident because the route was over its storm limit.",
    ),
    (
        "runbook_bot_auto_diagnose_total",
        "Automatic diagnostics by name and outcome (started, skipped over the concurrency cap, deduplicated within the window).",
    ),
    (
        "runbook_bot_http_connections_total",
        "HTTP connections, by event (accepted, over_capacity: answered 503, dropped: closed unanswered, idle_closed).",
    ),
    (
        "runbook_bot_throttled_total",
        "Acts dropped by a per-user limit, by what (refused_click, mention).",
    ),
    (
        "runbook_bot_followups_total",
        "Follow-ups finished (the GDPR hard delete), by outcome (done, incomplete, failed).",
    ),
];

impl Metrics {
    /// `labels` is already in Prometheus form, e.g. `route="commands",outcome="ok"`.
    pub fn inc(&self, name: &'static str, labels: String) {
        let mut map = self.counters.lock().expect("metrics lock");
        *map.entry((name, labels)).or_default() += 1;
    }

    /// Add `n` at once (a count of many events of one kind).
    pub fn add(&self, name: &'static str, labels: String, n: u64) {
        let mut map = self.counters.lock().expect("metrics lock");
        *map.entry((name, labels)).or_default() += n;
    }

    pub fn get(&self, name: &'static str, labels: &str) -> u64 {
        let map = self.counters.lock().expect("metrics lock");
        map.get(&(name, labels.to_string())).copied().unwrap_or(0)
    }

    /// Render counters plus the gauges passed in (computed at scrape time).
    pub fn render(&self, gauges: &[(&str, &str, i64)]) -> String {
        let map = self.counters.lock().expect("metrics lock");
        let mut out = String::new();
        // Every counter that exists is rendered, described or not.
        let mut names: Vec<&str> = HELP.iter().map(|(n, _)| *n).collect();
        names.extend(map.keys().map(|(n, _)| *n));
        names.sort_unstable();
        names.dedup();
        for name in names {
            let help = HELP
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, h)| *h)
                .unwrap_or("runbook-bot counter.");
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((n, labels), v) in map.iter() {
                if *n == name {
                    let _ = writeln!(out, "{name}{{{labels}}} {v}");
                }
            }
        }
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges() {
        let m = Metrics::default();
        m.inc("runbook_bot_outbox_total", r#"outcome="sent""#.into());
        m.inc("runbook_bot_outbox_total", r#"outcome="sent""#.into());
        let text = m.render(&[("runbook_bot_outbox_pending", "Rows waiting.", 3)]);
        assert!(
            text.contains("runbook_bot_outbox_total{outcome=\"sent\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE runbook_bot_outbox_pending gauge\nrunbook_bot_outbox_pending 3\n"));
        assert_eq!(m.get("runbook_bot_outbox_total", r#"outcome="sent""#), 2);
        m.inc("runbook_bot_undescribed_total", r#"a="b""#.into());
        assert!(m.render(&[]).contains("runbook_bot_undescribed_total{a=\"b\"} 1\n"));
    }
}
