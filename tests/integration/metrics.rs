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

    let samples = check_openmetrics(&t.openmetrics().await);
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
    for gauge in [
        "runbook_bot_outbox_pending",
        "runbook_bot_outbox_lanes_waiting",
        "runbook_bot_outbox_lane_backlog_max",
        "runbook_bot_outbox_oldest_pending_seconds",
    ] {
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

both_backends!(every_histogram_has_samples_and_the_exposition_is_strict);
