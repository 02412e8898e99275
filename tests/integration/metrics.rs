//! `/metrics`: after a command, an outbox delivery, an alert and a
//! diagnostic, every latency histogram has samples with the expected labels,
//! and both text formats pass a strict check.

use std::time::{Duration, Instant};

use runbook_bot::config::TargetConfig;
use serde_json::json;

use crate::both_backends;
use crate::support::exposition::{Samples, check_openmetrics, promtool_check_metrics};
use crate::support::*;

fn firing_alert() -> String {
    json!({
        "version": "4", "status": "firing", "receiver": "runbook-bot", "groupKey": "{}:{}",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "HighErrorRate", "severity": "critical", "service": "billing"},
            "annotations": {"summary": "billing error rate above 5%"},
            "startsAt": "2026-11-21T10:00:00Z",
            "fingerprint": "m1"
        }]
    })
    .to_string()
}

/// Wait until the alert, the diagnostic's result and every Slack write are through.
async fn settled(t: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let inbox = t
            .scalar("SELECT COUNT(*) FROM alert_inbox WHERE processed_at IS NULL")
            .await;
        let pending = t.scalar("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").await;
        let diagnosed = t
            .slack
            .calls()
            .iter()
            .any(|c| c.body.to_string().contains("/diagnose connections on production"));
        if inbox == 0 && pending == 0 && diagnosed {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "inbox {inbox}, outbox {pending}, diagnosed {diagnosed}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn count_at_least_one(samples: &Samples, series: &str) {
    let n = samples.get(series).copied().unwrap_or(0.0);
    assert!(
        n >= 1.0,
        "{series} = {n}; series served:\n{:#?}",
        samples.keys().collect::<Vec<_>>()
    );
}

const BACKLOG: [&str; 4] = [
    "runbook_bot_outbox_pending",
    "runbook_bot_outbox_lanes_waiting",
    "runbook_bot_outbox_lane_backlog_max",
    "runbook_bot_outbox_oldest_pending_seconds",
];

/// The samples once the outbox gauges show the settled outbox: they come
/// from the background readiness check, so a scrape may precede the next
/// check by up to one interval.
async fn backlog_checked_since(t: &TestApp) -> Samples {
    let deadline = Instant::now() + 3 * t.config.http.readiness_check;
    loop {
        let samples = check_openmetrics(&t.openmetrics().await);
        if BACKLOG.iter().all(|g| samples.get(*g) == Some(&0.0)) || Instant::now() > deadline {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn every_histogram_has_samples_and_the_exposition_is_strict(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |cfg| {
        let target = TargetConfig {
            url: secrecy::SecretString::from(pg_admin_url()),
            connect_timeout: Duration::from_millis(1500),
            attempts: 1,
        };
        cfg.targets.insert("production".into(), target);
        cfg.default_target = Some("production".into());
    })
    .await;
    t.command(L2, "p1 Checkout failing").await;
    t.slash(L1, "/diagnose", "connections").await;
    assert_eq!(t.alert("alertmanager", &firing_alert()).await.status(), 202);
    settled(&t).await;

    let samples = backlog_checked_since(&t).await;
    for series in [
        r#"runbook_bot_http_request_duration_seconds_count{route="/slack/commands",status="2xx"}"#,
        r#"runbook_bot_http_request_duration_seconds_count{route="/alerts/{source}",status="2xx"}"#,
        r#"runbook_bot_command_duration_seconds_count{command="incident.declare",outcome="ok"}"#,
        r#"runbook_bot_command_duration_seconds_count{command="diagnose.connections",outcome="ok"}"#,
        r#"runbook_bot_outbox_delivery_delay_seconds_count{kind="post",origin="person"}"#,
        r#"runbook_bot_alert_to_slack_seconds_count"#,
        r#"runbook_bot_diagnostic_step_duration_seconds_count{target="production"}"#,
        r#"runbook_bot_incidents_declared_total{severity="p1"}"#,
        r#"runbook_bot_alerts_total{source="alertmanager",outcome="posted"}"#,
        r#"runbook_bot_alerts_received_total{source="alertmanager",outcome="accepted"}"#,
        r#"runbook_bot_outbox_total{outcome="sent"}"#,
    ] {
        count_at_least_one(&samples, series);
    }
    for gauge in BACKLOG {
        assert_eq!(samples.get(gauge), Some(&0.0), "{gauge}");
    }
    // No label carries a user, a channel or what someone typed.
    let served = samples.keys().cloned().collect::<Vec<_>>().join("\n");
    for private in [L1, L2, CHANNEL, "Checkout failing", "HighErrorRate", "billing"] {
        assert!(!served.contains(private), "{private} in a label:\n{served}");
    }

    promtool_check_metrics(&t.metrics().await);
    t.finish().await;
}

/// Scrape until `done` accepts the samples, for at most `secs`.
async fn scrape_until(t: &TestApp, secs: u64, what: &str, done: impl Fn(&Samples) -> bool) -> Samples {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let samples = check_openmetrics(&t.openmetrics().await);
        if done(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "{what}: {samples:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn the_outbox_gauges_come_from_the_readiness_check(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |c| c.http.readiness_check = Duration::from_secs(1)).await;
    // Slack holds the incident's first post for a minute: its lane backs up.
    t.slack
        .script([fake_slack::Scripted::RateLimited { retry_after_secs: 60 }]);
    t.command(L2, "p1 Checkout failing").await;
    let waiting = t.scalar("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").await;
    assert!(waiting >= 2, "{waiting}");
    let gauge = |s: &Samples, name: &str| s.get(name).copied().unwrap_or(f64::NAN);
    let s = scrape_until(&t, 5, "the backlog after a check", |s| {
        gauge(s, "runbook_bot_outbox_pending") == waiting as f64
    })
    .await;
    assert_eq!(gauge(&s, "runbook_bot_outbox_lanes_waiting"), 1.0);
    assert_eq!(gauge(&s, "runbook_bot_outbox_lane_backlog_max"), waiting as f64);
    assert!(gauge(&s, "runbook_bot_outbox_oldest_pending_seconds") >= 0.0);

    // Scrapes never read the store: with it closed they keep serving the
    // last check until the next check fails, then -1.
    t.state().store.close().await;
    let s = check_openmetrics(&t.openmetrics().await);
    assert!(
        [waiting as f64, -1.0].contains(&gauge(&s, "runbook_bot_outbox_pending")),
        "{s:#?}"
    );
    let s = scrape_until(&t, 5, "-1 once a check failed", |s| {
        gauge(s, "runbook_bot_outbox_pending") == -1.0
    })
    .await;
    for name in [
        "runbook_bot_outbox_lanes_waiting",
        "runbook_bot_outbox_lane_backlog_max",
        "runbook_bot_outbox_oldest_pending_seconds",
    ] {
        assert_eq!(gauge(&s, name), -1.0, "{name}");
    }
    t.finish().await;
}

both_backends!(
    every_histogram_has_samples_and_the_exposition_is_strict,
    the_outbox_gauges_come_from_the_readiness_check,
);
