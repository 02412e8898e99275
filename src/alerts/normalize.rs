//! Webhook payloads of each monitoring source → one alert model. Pure and
//! unit-tested with the sources' real payload shapes; a payload of the wrong
//! shape is an error naming what is wrong (it becomes a 400).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::config::AlertSource as Source;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

/// Stored as `firing` or `resolved`.
impl From<String> for Status {
    fn from(s: String) -> Self {
        if s == "firing" {
            Status::Firing
        } else {
            Status::Resolved
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub source: Source,
    pub fingerprint: String,
    pub status: Status,
    /// Lowercase: `critical`, `error`, `warning`, `info`, …
    pub severity: String,
    pub title: String,
    pub description: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// (label, URL) pairs: generator, dashboard, panel, silence, issue.
    pub links: Vec<(String, String)>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    /// The source's own group (Alertmanager's and Grafana's `groupKey`);
    /// absent in payloads stored before groups existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl Alert {
    pub fn service(&self) -> Option<&str> {
        self.labels.get("service").map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

fn err(s: impl Into<String>) -> ShapeError {
    ShapeError(s.into())
}

/// Longest text we keep from a payload field; Slack shows far less anyway.
const FIELD_MAX: usize = 2000;

fn clip(s: &str) -> String {
    s.chars().take(FIELD_MAX).collect()
}

/// Parse a payload of `source`. `sentry_resource` is the
/// `Sentry-Hook-Resource` header (`event_alert`, `issue`, …).
pub fn parse(source: Source, body: &[u8], sentry_resource: Option<&str>) -> Result<Vec<Alert>, ShapeError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| err(format!("body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(err("body must be a JSON object"));
    }
    let mut alerts = match source {
        Source::Alertmanager | Source::Grafana => prometheus_style(source, &v)?,
        Source::Sentry => sentry(&v, sentry_resource)?,
        Source::Generic => vec![generic(&v)?],
        Source::Health => return Err(err("health alerts are internal")),
    };
    for a in &mut alerts {
        a.fingerprint = fingerprint_key(&a.fingerprint);
        a.group = a.group.as_deref().map(fingerprint_key);
    }
    Ok(alerts)
}

/// Fingerprints and group keys are index keys: long ones are replaced by their hash.
pub fn fingerprint_key(f: &str) -> String {
    if f.len() <= 200 {
        return f.to_string();
    }
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(f.as_bytes())))
}

/// Alertmanager's webhook, and Grafana's (the same shape plus dashboard,
/// panel and silence URLs).
#[derive(Deserialize)]
struct PromPayload {
    alerts: Vec<Value>,
    #[serde(default, rename = "commonLabels")]
    common_labels: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    external_url: Option<String>,
    #[serde(default, rename = "groupKey")]
    group_key: Option<String>,
}

#[derive(Deserialize)]
struct PromAlert {
    status: String,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default, rename = "startsAt")]
    starts_at: Option<String>,
    #[serde(default, rename = "endsAt")]
    ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
    #[serde(default, rename = "dashboardURL")]
    dashboard_url: Option<String>,
    #[serde(default, rename = "panelURL")]
    panel_url: Option<String>,
    #[serde(default, rename = "silenceURL")]
    silence_url: Option<String>,
}

fn prometheus_style(source: Source, v: &Value) -> Result<Vec<Alert>, ShapeError> {
    let p: PromPayload = serde_json::from_value(v.clone()).map_err(|e| err(format!("payload: {e}")))?;
    if p.alerts.is_empty() {
        return Err(err("`alerts` is empty"));
    }
    let mut out = Vec::with_capacity(p.alerts.len());
    for (i, raw) in p.alerts.iter().enumerate() {
        let a: PromAlert = serde_json::from_value(raw.clone()).map_err(|e| err(format!("alerts[{i}]: {e}")))?;
        let status = match a.status.as_str() {
            "firing" => Status::Firing,
            "resolved" => Status::Resolved,
            other => {
                return Err(err(format!(
                    "alerts[{i}].status `{}` is not firing or resolved",
                    clip(other)
                )));
            }
        };
        let fingerprint = a
            .fingerprint
            .filter(|f| !f.trim().is_empty())
            .ok_or_else(|| err(format!("alerts[{i}].fingerprint is missing")))?;
        let mut labels = p.common_labels.clone();
        labels.extend(a.labels);
        let title = a
            .annotations
            .get("summary")
            .or_else(|| labels.get("alertname"))
            .cloned()
            .ok_or_else(|| {
                err(format!(
                    "alerts[{i}] has neither annotations.summary nor labels.alertname"
                ))
            })?;
        let mut links = Vec::new();
        for (label, url) in [
            ("source", a.generator_url),
            ("dashboard", a.dashboard_url),
            ("panel", a.panel_url),
            ("silence", a.silence_url),
            ("runbook", a.annotations.get("runbook_url").cloned()),
        ] {
            if let Some(u) = url.filter(|u| u.starts_with("http://") || u.starts_with("https://")) {
                links.push((label.to_string(), clip(&u)));
            }
        }
        if links.is_empty()
            && let Some(u) = p.external_url.clone().filter(|u| u.starts_with("http"))
        {
            links.push((source.as_str().to_string(), clip(&u)));
        }
        out.push(Alert {
            source,
            fingerprint: clip(&fingerprint),
            status,
            severity: labels
                .get("severity")
                .map(|s| s.to_ascii_lowercase())
                .unwrap_or_else(|| "warning".into()),
            title: clip(&title),
            description: a.annotations.get("description").map(|d| clip(d)),
            labels: labels.into_iter().map(|(k, v)| (clip(&k), clip(&v))).collect(),
            links,
            // Alertmanager sends 0001-01-01 for "not ended".
            ends_at: a.ends_at.filter(|e| !e.starts_with("0001-")),
            starts_at: a.starts_at,
            group: p.group_key.clone().filter(|g| !g.trim().is_empty()),
        });
    }
    Ok(out)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_str)
}

fn id_at(v: &Value, path: &[&str]) -> Option<String> {
    let x = path.iter().try_fold(v, |v, k| v.get(k))?;
    match x {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn sentry_severity(level: Option<&str>) -> String {
    match level.unwrap_or("error") {
        "fatal" => "critical".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// Sentry integration webhooks: `event_alert` (an alert rule fired for an
/// event; fingerprint `data.event.issue_id`) and `issue` (created /
/// resolved; the resolution of that fingerprint).
fn sentry(v: &Value, resource: Option<&str>) -> Result<Vec<Alert>, ShapeError> {
    let action = str_at(v, &["action"]).unwrap_or("");
    let data = v.get("data").ok_or_else(|| err("`data` is missing"))?;
    let (issue_id, status, title, level, url, culprit) = if let Some(event) = data.get("event") {
        let id = id_at(event, &["issue_id"]).ok_or_else(|| err("data.event.issue_id is missing"))?;
        (
            id,
            Status::Firing,
            str_at(event, &["title"]).unwrap_or("Sentry event").to_string(),
            str_at(event, &["level"]),
            str_at(event, &["web_url"]).or_else(|| str_at(event, &["issue_url"])),
            str_at(event, &["culprit"]),
        )
    } else if let Some(issue) = data.get("issue") {
        let id = id_at(issue, &["id"]).ok_or_else(|| err("data.issue.id is missing"))?;
        let status = match action {
            "resolved" => Status::Resolved,
            "created" | "unresolved" => Status::Firing,
            // assigned, archived, ignored: nothing to do with firing state.
            _ => return Ok(Vec::new()),
        };
        (
            id,
            status,
            str_at(issue, &["title"]).unwrap_or("Sentry issue").to_string(),
            str_at(issue, &["level"]),
            str_at(issue, &["web_url"]).or_else(|| str_at(issue, &["permalink"])),
            str_at(issue, &["culprit"]),
        )
    } else {
        return Err(err(format!(
            "neither data.event nor data.issue is present (resource `{}`)",
            resource.unwrap_or("unknown")
        )));
    };
    let mut labels = BTreeMap::new();
    if let Some(p) = str_at(data, &["event", "project"]).or_else(|| str_at(data, &["issue", "project", "slug"])) {
        labels.insert("project".into(), clip(p));
    }
    if let Some(rule) = str_at(data, &["triggered_rule"]) {
        labels.insert("rule".into(), clip(rule));
    }
    Ok(vec![Alert {
        source: Source::Sentry,
        fingerprint: format!("sentry-issue-{issue_id}"),
        status,
        severity: sentry_severity(level),
        title: clip(&title),
        description: culprit.map(clip),
        labels,
        links: url
            .filter(|u| u.starts_with("http"))
            .map(|u| vec![("issue".to_string(), clip(u))])
            .unwrap_or_default(),
        starts_at: None,
        ends_at: None,
        group: None,
    }])
}

/// `{"dedup_key": "…", "title": "…", "status": "firing|resolved",
/// "severity": "…", "description": "…", "labels": {…}, "url": "…"}`.
fn generic(v: &Value) -> Result<Alert, ShapeError> {
    let key = str_at(v, &["dedup_key"])
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| err("`dedup_key` is missing"))?;
    let title = str_at(v, &["title"])
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| err("`title` is missing"))?;
    let status = match str_at(v, &["status"]).unwrap_or("firing") {
        "firing" | "trigger" | "triggered" => Status::Firing,
        "resolved" | "resolve" => Status::Resolved,
        other => return Err(err(format!("`status` `{}` is not firing or resolved", clip(other)))),
    };
    let mut labels = BTreeMap::new();
    if let Some(obj) = v.get("labels") {
        let map = obj
            .as_object()
            .ok_or_else(|| err("`labels` must be an object of strings"))?;
        for (k, x) in map {
            let s = x.as_str().ok_or_else(|| err(format!("labels.{k} must be a string")))?;
            labels.insert(clip(k), clip(s));
        }
    }
    Ok(Alert {
        source: Source::Generic,
        fingerprint: clip(key),
        status,
        severity: str_at(v, &["severity"]).unwrap_or("warning").to_ascii_lowercase(),
        title: clip(title),
        description: str_at(v, &["description"]).map(clip),
        labels,
        links: str_at(v, &["url"])
            .filter(|u| u.starts_with("http"))
            .map(|u| vec![("link".to_string(), clip(u))])
            .unwrap_or_default(),
        starts_at: None,
        ends_at: None,
        group: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const ALERTMANAGER: &str = r#"{
      "version": "4", "groupKey": "{}:{alertname=\"HighErrorRate\"}", "truncatedAlerts": 0,
      "status": "firing", "receiver": "runbook-bot",
      "groupLabels": {"alertname": "HighErrorRate"},
      "commonLabels": {"alertname": "HighErrorRate", "severity": "critical", "service": "auth"},
      "commonAnnotations": {"summary": "Error rate above 5% for 5 minutes"},
      "externalURL": "http://alertmanager:9093",
      "alerts": [{
        "status": "firing",
        "labels": {"alertname": "HighErrorRate", "severity": "critical", "service": "auth", "function": "invite-user"},
        "annotations": {"summary": "invite-user error rate 15%", "description": "threshold 5% over 5m"},
        "startsAt": "2026-11-21T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=rate", "fingerprint": "c6ad0a7b1d2e3f40"
      }]
    }"#;

    #[test]
    fn alertmanager_alerts_are_normalized_per_alert() {
        let a = parse(Source::Alertmanager, ALERTMANAGER.as_bytes(), None).unwrap();
        assert_eq!(a.len(), 1);
        let a = &a[0];
        assert_eq!(a.fingerprint, "c6ad0a7b1d2e3f40");
        assert_eq!(a.status, Status::Firing);
        assert_eq!(a.severity, "critical");
        assert_eq!(a.title, "invite-user error rate 15%");
        assert_eq!(a.service(), Some("auth"));
        assert_eq!(a.labels["function"], "invite-user");
        assert_eq!(a.group.as_deref(), Some("{}:{alertname=\"HighErrorRate\"}"));
        assert_eq!(
            a.links,
            vec![(
                "source".to_string(),
                "http://prometheus:9090/graph?g0.expr=rate".to_string()
            )]
        );
        assert_eq!(a.ends_at, None);
    }

    #[test]
    fn grafana_keeps_its_dashboard_and_silence_links() {
        let body = r#"{"receiver":"bot","status":"firing","orgId":1,"title":"[FIRING:1] Latency","state":"alerting",
          "alerts":[{"status":"firing","labels":{"alertname":"AvgLatency","grafana_folder":"API"},
            "annotations":{"summary":"average latency above 10 s"},"startsAt":"2026-11-21T10:00:00Z",
            "endsAt":"0001-01-01T00:00:00Z","generatorURL":"https://grafana.example/alerting/grafana/abc/view",
            "fingerprint":"57c6d9296de2ad39","silenceURL":"https://grafana.example/alerting/silence/new",
            "dashboardURL":"https://grafana.example/d/x","panelURL":"https://grafana.example/d/x?viewPanel=2",
            "values":{"B":12.5}}]}"#;
        let a = parse(Source::Grafana, body.as_bytes(), None).unwrap();
        let labels: Vec<&str> = a[0].links.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["source", "dashboard", "panel", "silence"]);
        assert_eq!(a[0].severity, "warning");
    }

    #[test]
    fn sentry_event_alerts_fire_and_issue_resolution_resolves() {
        let fired = r#"{"action":"triggered","installation":{"uuid":"x"},"data":{"event":{"issue_id":"1170820242",
          "title":"TypeError: cannot read properties","level":"error","culprit":"invite-user",
          "web_url":"https://sentry.io/organizations/acme/issues/1170820242/events/abc/","project":"api"},
          "triggered_rule":"Error spike"},"actor":{"type":"application","id":"sentry","name":"Sentry"}}"#;
        let a = parse(Source::Sentry, fired.as_bytes(), Some("event_alert")).unwrap();
        assert_eq!(a[0].fingerprint, "sentry-issue-1170820242");
        assert_eq!(a[0].status, Status::Firing);
        assert_eq!(a[0].labels["rule"], "Error spike");
        let resolved = r#"{"action":"resolved","data":{"issue":{"id":"1170820242","title":"TypeError","level":"error",
          "status":"resolved","web_url":"https://sentry.io/organizations/acme/issues/1170820242/"}}}"#;
        let a = parse(Source::Sentry, resolved.as_bytes(), Some("issue")).unwrap();
        assert_eq!(
            (a[0].fingerprint.as_str(), a[0].status),
            ("sentry-issue-1170820242", Status::Resolved)
        );
        let assigned = r#"{"action":"assigned","data":{"issue":{"id":"1"}}}"#;
        assert!(
            parse(Source::Sentry, assigned.as_bytes(), Some("issue"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn long_fingerprints_become_hashes() {
        let key = "ü".repeat(1000);
        let body = format!(r#"{{"dedup_key":"{key}","title":"x"}}"#);
        let a = parse(Source::Generic, body.as_bytes(), None).unwrap();
        assert!(a[0].fingerprint.starts_with("sha256:") && a[0].fingerprint.len() == 71);
    }

    #[test]
    fn generic_payloads() {
        let a = parse(
            Source::Generic,
            br#"{"dedup_key":"db-disk","title":"Disk 91%","severity":"CRITICAL","labels":{"service":"db"}}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            (a[0].severity.as_str(), a[0].status, a[0].service()),
            ("critical", Status::Firing, Some("db"))
        );
        let a = parse(
            Source::Generic,
            br#"{"dedup_key":"db-disk","title":"Disk","status":"resolve"}"#,
            None,
        )
        .unwrap();
        assert_eq!(a[0].status, Status::Resolved);
    }

    #[test]
    fn wrong_shapes_name_what_is_wrong() {
        let e = |s: Source, b: &str| parse(s, b.as_bytes(), None).unwrap_err().0;
        assert!(e(Source::Alertmanager, "{").contains("not JSON"));
        assert!(e(Source::Alertmanager, "[]").contains("must be a JSON object"));
        assert!(e(Source::Alertmanager, "{}").contains("missing field `alerts`"));
        assert!(e(Source::Alertmanager, r#"{"alerts":[]}"#).contains("`alerts` is empty"));
        assert!(
            e(Source::Alertmanager, r#"{"alerts":[{"status":"firing"}]}"#)
                .contains("alerts[0]: missing field `labels`")
        );
        assert!(
            e(Source::Alertmanager, r#"{"alerts":[{"status":"on","labels":{}}]}"#).contains("alerts[0].status `on`")
        );
        assert!(
            e(
                Source::Alertmanager,
                r#"{"alerts":[{"status":"firing","labels":{"alertname":"x"}}]}"#
            )
            .contains("alerts[0].fingerprint is missing")
        );
        assert!(
            e(Source::Sentry, r#"{"action":"triggered","data":{"event":{}}}"#)
                .contains("data.event.issue_id is missing")
        );
        assert!(e(Source::Sentry, r#"{"action":"x"}"#).contains("`data` is missing"));
        assert!(e(Source::Generic, r#"{"title":"x"}"#).contains("`dedup_key` is missing"));
        assert!(
            e(Source::Generic, r#"{"dedup_key":"k","title":"x","labels":{"a":1}}"#)
                .contains("labels.a must be a string")
        );
    }
}
