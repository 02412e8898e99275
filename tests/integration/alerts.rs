//! Monitoring webhooks: authentication, shapes, dedup and threading,
//! routing into incidents, automatic diagnostics, escalation timers and the
//! health poller.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use runbook_bot::config::{Matcher, Route};
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::*;

fn am_alert(fp: &str, status: &str, severity: &str, service: &str) -> Value {
    json!({
        "status": status,
        "labels": {"alertname": format!("Alert{fp}"), "severity": severity, "service": service},
        "annotations": {"summary": format!("{service} alert {fp}"), "description": "Error rate > 5% over 5 min"},
        "startsAt": "2026-11-21T10:00:00Z",
        "endsAt": if status == "resolved" { "2026-11-21T10:12:00Z" } else { "0001-01-01T00:00:00Z" },
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fp
    })
}

/// A notification of Alertmanager grouping by `service` (the first alert's).
fn am_payload(alerts: Vec<Value>) -> String {
    let service = alerts[0]["labels"]["service"].as_str().unwrap_or("").to_string();
    json!({
        "version": "4", "groupKey": format!("{{}}:{{service=\"{service}\"}}"), "status": "firing", "receiver": "runbook-bot",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "alerts": alerts
    })
    .to_string()
}

fn top_level_posts(t: &TestApp) -> Vec<fake_slack::Call> {
    t.slack
        .ok_calls("chat.postMessage")
        .into_iter()
        .filter(|c| c.body["thread_ts"].is_null())
        .collect()
}

async fn processed(t: &TestApp) {
    t.inbox_processed(10).await;
    t.drained(15).await;
}

async fn bad_tokens_shapes_and_signatures_store_nothing(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |cfg| {
        cfg.alerts.grafana_secret = Some(secrecy::SecretString::from("g-secret".to_string()));
    })
    .await;
    let url = format!("{}/alerts/alertmanager", t.addr);
    let body = am_payload(vec![am_alert("a1", "firing", "critical", "auth")]);
    for auth in [None, Some("Bearer wrong"), Some("Bearer "), Some(ALERT_TOKEN)] {
        let mut req = t.http.post(&url).body(body.clone());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        assert_eq!(req.send().await.unwrap().status(), 401, "{auth:?}");
    }
    let r = t
        .alert("alertmanager", "{\"alerts\": [{\"status\": \"firing\"}]}")
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("alerts[0]: missing field `labels`"));
    assert_eq!(t.alert("alertmanager", "not json").await.status(), 400);
    assert_eq!(t.alert("nagios", &body).await.status(), 404);
    assert_eq!(
        t.alert(
            "generic",
            &format!("{{\"dedup_key\":\"k\",\"title\":\"{}\"}}", "x".repeat(1024 * 1024))
        )
        .await
        .status(),
        413
    );
    // Grafana with a secret configured needs its signature.
    assert_eq!(t.alert("grafana", &body).await.status(), 401);
    let sig = {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"g-secret").unwrap();
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    };
    let r = t
        .alert_with("grafana", &[("x-grafana-alerting-signature", &sig)], &body)
        .await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM alert_inbox").await,
        1,
        "only the signed payload was stored"
    );
    t.finish().await;
}

async fn three_alerts_fire_and_resolve_as_three_posts_even_when_delivered_twice(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let fps = ["f1", "f2", "f3"];
    let firing = am_payload(
        fps.iter()
            .map(|f| am_alert(f, "firing", "warning", "billing"))
            .collect(),
    );
    for _ in 0..2 {
        let r = t.alert("alertmanager", &firing).await;
        assert_eq!(r.status(), 202);
        assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 3);
    }
    processed(&t).await;
    t.clock.advance(12 * 60_000);
    let resolved = am_payload(
        fps.iter()
            .map(|f| am_alert(f, "resolved", "warning", "billing"))
            .collect(),
    );
    for _ in 0..2 {
        assert_eq!(t.alert("alertmanager", &resolved).await.status(), 202);
    }
    processed(&t).await;

    let posts = top_level_posts(&t);
    assert_eq!(posts.len(), 3, "{:#?}", fake_slack::summary(&posts));
    let replies: Vec<_> = t
        .slack
        .ok_calls("chat.postMessage")
        .into_iter()
        .filter(|c| !c.body["thread_ts"].is_null())
        .collect();
    assert_eq!(replies.len(), 3);
    for p in &posts {
        let ts = p.ts.clone().unwrap();
        let reply = replies
            .iter()
            .find(|r| r.body["thread_ts"] == ts.as_str())
            .expect("a reply in each alert's thread");
        assert!(reply.body.to_string().contains("Resolved after 12 m"));
    }
    for fp in fps {
        let last = t
            .slack
            .ok_calls("chat.update")
            .into_iter()
            .rfind(|u| u.body.to_string().contains(&format!("billing alert {fp}")))
            .unwrap();
        assert!(last.body.to_string().contains("RESOLVED* after 12 m"), "{}", last.body);
    }
    t.finish().await;
}

async fn repeats_update_and_refires_thread(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let generic = |status: &str| {
        json!({"dedup_key": "db-disk", "title": "Disk 91% on db-1", "severity": "warning", "status": status})
            .to_string()
    };
    for _ in 0..10 {
        assert_eq!(t.alert("generic", &generic("firing")).await.status(), 202);
    }
    processed(&t).await;
    assert_eq!(top_level_posts(&t).len(), 1);
    assert_eq!(t.scalar("SELECT deliveries FROM alerts").await, 10);
    assert!(
        t.slack
            .ok_calls("chat.update")
            .last()
            .unwrap()
            .body
            .to_string()
            .contains("seen 10×")
    );
    let root = top_level_posts(&t)[0].ts.clone().unwrap();

    t.alert("generic", &generic("resolved")).await;
    processed(&t).await;
    t.alert("generic", &generic("firing")).await;
    processed(&t).await;
    assert_eq!(top_level_posts(&t).len(), 1, "a re-fire is not a new post");
    let replies: Vec<String> = t
        .slack
        .ok_calls("chat.postMessage")
        .iter()
        .filter(|c| c.body["thread_ts"] == root.as_str())
        .map(|c| c.body["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert!(replies[0].contains("Resolved after"));
    assert!(replies[1].contains("Firing again (occurrence 2)"));
    t.finish().await;
}

async fn routes_declare_attach_and_diagnose(backend: Backend) {
    let target = SupabaseDb::b2b_planted().await;
    let t = TestApp::spawn_configured(backend, |cfg| {
        target.attach(cfg);
        cfg.alerts.routes = vec![Route {
            matcher: Matcher {
                source: None,
                severity: vec!["critical".into()],
                labels: Default::default(),
            },
            channel: None,
            declare: Some("p1".into()),
            attach: true,
            diagnose: vec!["orphans".into()],
            ..Route::default()
        }];
    })
    .await;
    t.alert(
        "alertmanager",
        &am_payload(vec![am_alert("c1", "firing", "critical", "auth")]),
    )
    .await;
    processed(&t).await;
    // Declared: the incident's root, then the alert in its thread, then the
    // orphans result in the same thread, before anyone typed anything.
    let calls = t
        .slack
        .wait_for(15, "the automatic diagnostic", |c| {
            c.iter()
                .any(|c| c.body.to_string().contains("/diagnose orphans on production"))
        })
        .await;
    let roots = top_level_posts(&t);
    assert_eq!(roots.len(), 1);
    let root = roots[0].body.to_string();
    assert!(
        root.contains("#1 · P1 · auth alert c1") && root.contains("runbook-bot"),
        "{root}"
    );
    let root_ts = roots[0].ts.clone().unwrap();
    let threaded: Vec<_> = calls
        .iter()
        .filter(|c| c.ok && c.body["thread_ts"] == root_ts.as_str())
        .collect();
    assert!(
        threaded
            .iter()
            .any(|c| c.body["text"].as_str().unwrap().starts_with("[FIRING] auth alert c1"))
    );
    assert!(
        threaded
            .iter()
            .any(|c| c.body.to_string().contains("peter@initech.test"))
    );

    // Another alert for the same service attaches to the open incident.
    t.alert(
        "alertmanager",
        &am_payload(vec![am_alert("w1", "firing", "warning", "auth")]),
    )
    .await;
    processed(&t).await;
    assert_eq!(top_level_posts(&t).len(), 1, "no new incident, no top-level post");
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incidents").await, 1);
    assert_eq!(t.scalar("SELECT COUNT(*) FROM alerts WHERE incident_id = 1").await, 2);
    let timeline = t.command(L1, "timeline #1").await;
    assert!(timeline.contains("Alert firing: auth alert w1"), "{timeline}");
    // A critical alert for another service declares its own incident.
    t.alert(
        "alertmanager",
        &am_payload(vec![am_alert("c2", "firing", "critical", "billing")]),
    )
    .await;
    processed(&t).await;
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incidents").await, 2);
    t.finish().await;
    target.cleanup().await;
}

async fn sentry_issues_fire_and_resolve(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let fired = json!({"action": "triggered", "data": {"event": {"issue_id": "42", "title": "TypeError in invite-user",
        "level": "error", "web_url": "https://sentry.io/organizations/acme/issues/42/"}, "triggered_rule": "spike"}});
    let resolved = json!({"action": "resolved", "data": {"issue": {"id": "42", "title": "TypeError in invite-user"}}});
    for (resource, body) in [("event_alert", fired), ("issue", resolved)] {
        let r = t
            .alert_with("sentry", &[("sentry-hook-resource", resource)], &body.to_string())
            .await;
        assert_eq!(r.status(), 202, "{resource}");
    }
    processed(&t).await;
    assert_eq!(top_level_posts(&t).len(), 1);
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM alerts WHERE status = 'resolved'").await,
        1
    );
    t.finish().await;
}

async fn escalation_steps_post_on_time_once_and_stop_on_ack(backend: Backend) {
    let mut t = TestApp::spawn(backend).await;
    t.command(L2, "p1 Login failing").await;
    t.drained(10).await;
    let escalations = |t: &TestApp| {
        t.slack
            .ok_calls("chat.postMessage")
            .into_iter()
            .filter(|c| c.body["text"].as_str().unwrap_or("").contains("Escalation"))
            .map(|c| c.body["text"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    t.clock.advance(14 * 60_000);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(escalations(&t).is_empty(), "nothing before 15 min");

    t.clock.advance(60_000);
    t.slack
        .wait_for(10, "the 15-minute step", |c| {
            c.iter().any(|c| c.body.to_string().contains("Escalation"))
        })
        .await;
    let e = escalations(&t);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].contains("unacknowledged after 15 m") && e[0].contains(&format!("<@{L2}>")),
        "{e:?}"
    );

    // A restart neither forgets nor repeats a step.
    t.restart().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(escalations(&t).len(), 1);
    t.clock.advance(15 * 60_000);
    t.slack
        .wait_for(10, "the 30-minute step", |c| {
            c.iter().filter(|c| c.body.to_string().contains("Escalation")).count() >= 2
        })
        .await;
    let e = escalations(&t);
    assert!(
        e[1].contains("after 30 m") && e[1].contains(&format!("<@{L3}>")),
        "stakeholders fall back to l3: {e:?}"
    );

    t.command(L2, "ack").await;
    t.clock.advance(60 * 60_000);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    t.drained(10).await;
    assert_eq!(escalations(&t).len(), 2, "acknowledged: the ladder stops");
    t.finish().await;
}

async fn silent_acknowledged_incidents_get_a_reminder(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    t.command(L2, "p2 Checkout slow").await;
    t.command(L2, "ack").await;
    t.clock.advance(61 * 60_000);
    let calls = t
        .slack
        .wait_for(10, "the reminder", |c| {
            c.iter().any(|c| c.body.to_string().contains("has had no update"))
        })
        .await;
    let reminder = calls
        .iter()
        .find(|c| c.body.to_string().contains("has had no update"))
        .unwrap();
    assert!(
        reminder.body.to_string().contains(&format!("<@{L2}>")),
        "the commander is pinged"
    );
    t.command(L2, "status index rebuilt, watching").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    t.drained(10).await;
    let n = t
        .slack
        .ok_calls("chat.postMessage")
        .iter()
        .filter(|c| c.body.to_string().contains("has had no update"))
        .count();
    assert_eq!(n, 1);
    t.finish().await;
}

async fn a_refire_after_its_incident_resolved_opens_a_new_one(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |cfg| {
        cfg.alerts.routes = vec![Route {
            matcher: Matcher {
                source: None,
                severity: vec!["critical".into()],
                labels: Default::default(),
            },
            channel: None,
            declare: Some("p1".into()),
            attach: true,
            diagnose: vec![],
            ..Route::default()
        }];
    })
    .await;
    let fire = am_payload(vec![am_alert("x1", "firing", "critical", "auth")]);
    t.alert("alertmanager", &fire).await;
    processed(&t).await;
    t.alert(
        "alertmanager",
        &am_payload(vec![am_alert("x1", "resolved", "critical", "auth")]),
    )
    .await;
    processed(&t).await;
    t.command(L2, "resolve #1 fixed").await;
    // Next week the same alert fires: a new incident, not last week's thread.
    t.alert("alertmanager", &fire).await;
    processed(&t).await;
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incidents").await, 2);
    assert_eq!(t.scalar("SELECT incident_id FROM alerts").await, 2);
    let roots = top_level_posts(&t);
    assert_eq!(roots.len(), 2);
    let second_root = roots[1].ts.clone().unwrap();
    let threaded = t
        .slack
        .ok_calls("chat.postMessage")
        .into_iter()
        .filter(|c| c.body["thread_ts"] == second_root.as_str());
    assert!(
        threaded
            .into_iter()
            .any(|c| c.body["text"].as_str().unwrap().starts_with("[FIRING] auth alert x1"))
    );
    t.finish().await;
}

async fn a_payload_that_keeps_failing_is_set_aside(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    sqlx::query("INSERT INTO alert_inbox (source, alerts, received_at) VALUES ('generic', 'not json', 0)")
        .execute(&t.state().store.writer)
        .await
        .unwrap();
    t.alert(
        "generic",
        r#"{"dedup_key":"after","title":"Queued behind a bad payload"}"#,
    )
    .await;
    t.slack
        .wait_for(15, "the good alert", |c| {
            c.iter().any(|c| c.ok && c.body.to_string().contains("Queued behind"))
        })
        .await;
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM alert_inbox WHERE error IS NOT NULL")
            .await,
        1
    );
    t.finish().await;
}

/// The alert processor renews its lease in each payload's transaction: only
/// its owner, and only while unexpired, so a replica whose long batch
/// outlived the lease stops instead of grouping beside the new holder.
async fn only_the_unexpired_owner_renews_a_lease(backend: Backend) {
    use runbook_bot::store::lease;
    let t = TestApp::spawn(backend).await;
    let store = &t.state().store;
    let now = 1_000_000;
    assert!(lease::acquire(store, "test-lease", "a", now, 1000).await.unwrap());
    let renew = |owner: &'static str, at: i64| async move {
        let mut tx = store.begin().await.unwrap();
        let held = lease::renew_in(&mut tx, "test-lease", owner, at, 1000).await.unwrap();
        tx.commit().await.unwrap();
        held
    };
    assert!(!renew("b", now + 10).await, "another owner");
    assert!(renew("a", now + 500).await, "the owner, in time");
    assert!(!renew("a", now + 1600).await, "the owner, after it expired");
    assert!(
        lease::acquire(store, "test-lease", "b", now + 1600, 1000)
            .await
            .unwrap()
    );
    assert!(!renew("a", now + 1700).await, "taken over");
    t.finish().await;
}

both_backends!(
    only_the_unexpired_owner_renews_a_lease,
    a_refire_after_its_incident_resolved_opens_a_new_one,
    a_payload_that_keeps_failing_is_set_aside,
    bad_tokens_shapes_and_signatures_store_nothing,
    three_alerts_fire_and_resolve_as_three_posts_even_when_delivered_twice,
    repeats_update_and_refires_thread,
    routes_declare_attach_and_diagnose,
    sentry_issues_fire_and_resolve,
    escalation_steps_post_on_time_once_and_stop_on_ack,
    silent_acknowledged_incidents_get_a_reminder,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_post_each_escalation_step_once() {
    let a = TestApp::spawn(Backend::Postgres).await;
    let b = runbook_bot::App::build_with_clock(a.config.clone(), a.clock.clone())
        .await
        .unwrap();
    a.command(L2, "p0 Everything is down").await;
    a.clock.advance(16 * 60_000);
    // P0: on-call now, stakeholders at 10 min, L3 at 15: three steps, each once.
    a.slack
        .wait_for(15, "three steps", |c| {
            c.iter()
                .filter(|c| c.ok && c.body.to_string().contains("Escalation"))
                .count()
                >= 3
        })
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let n = a
        .slack
        .ok_calls("chat.postMessage")
        .iter()
        .filter(|c| c.body.to_string().contains("Escalation"))
        .count();
    assert_eq!(n, 3);
    assert_eq!(a.scalar("SELECT COUNT(*) FROM escalations").await, 3);
    b.shutdown().await;
    a.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_poller_turns_failures_and_recoveries_into_alerts() {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    let app = axum::Router::new().route(
        "/health",
        axum::routing::get(move || {
            let ok = flag.load(Ordering::SeqCst);
            async move {
                if ok {
                    (axum::http::StatusCode::OK, "ok")
                } else {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let t = TestApp::spawn_configured(Backend::Sqlite, |cfg| {
        cfg.health_checks = vec![runbook_bot::config::HealthCheck {
            name: "web".into(),
            url,
            max_latency_ms: 1000,
        }];
        cfg.alerts.health_poll = Duration::from_millis(200);
    })
    .await;
    t.slack
        .wait_for(10, "the failure", |c| {
            c.iter()
                .any(|c| c.ok && c.body.to_string().contains("Health check web failing"))
        })
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(top_level_posts(&t).len(), 1, "repeated failures update one message");
    healthy.store(true, Ordering::SeqCst);
    t.slack
        .wait_for(10, "the recovery", |c| {
            c.iter().any(|c| c.ok && c.body.to_string().contains("Resolved after"))
        })
        .await;
    t.finish().await;
}
