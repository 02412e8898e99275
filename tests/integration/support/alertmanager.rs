//! Alertmanager webhook bodies, for the tests and the storm benchmark.

use serde_json::{Value, json};

/// An alert without a `service` label; `status` is `firing` or `resolved`.
pub fn alert(fp: &str, status: &str, severity: &str) -> Value {
    json!({
        "status": status,
        "labels": {"alertname": "HighErrorRate", "severity": severity, "pod": fp},
        "annotations": {"summary": format!("{fp} error rate 15%")},
        "startsAt": "2026-11-21T10:00:00Z",
        "endsAt": if status == "resolved" { "2026-11-21T10:12:00Z" } else { "0001-01-01T00:00:00Z" },
        "fingerprint": fp
    })
}

/// One notification of group `group`.
pub fn notification(group: &str, alerts: Vec<Value>) -> String {
    json!({
        "version": "4", "groupKey": format!("{{}}:{{alertname=\"{group}\"}}"), "status": "firing",
        "receiver": "runbook-bot", "groupLabels": {"alertname": group}, "commonLabels": {},
        "externalURL": "http://alertmanager:9093", "alerts": alerts
    })
    .to_string()
}
