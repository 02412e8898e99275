//! Alert storms stay bounded: one incident and a handful of posts per alert
//! group, people's messages first, storm mode per route, automatic
//! diagnostics once per incident under a cap, and target connections that
//! never exceed the pool.

use std::time::{Duration, Instant};

use runbook_bot::config::{Matcher, Route, StormLimit};
use serde_json::Value;

use crate::both_backends;
use crate::support::alertmanager::{alert, notification};
use crate::support::*;

/// `n` alerts `{prefix}0…`, the first `resolved` of them resolved.
fn alerts(prefix: &str, n: usize, resolved: usize, severity: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let status = if i < resolved { "resolved" } else { "firing" };
            alert(&format!("{prefix}{i}"), status, severity)
        })
        .collect()
}

/// Critical alerts declare a P1 and run `diagnose`.
fn declaring(diagnose: &[&str], storm: StormLimit) -> Route {
    Route {
        matcher: Matcher {
            severity: vec!["critical".into()],
            ..Matcher::default()
        },
        declare: Some("p1".into()),
        diagnose: diagnose.iter().map(|d| d.to_string()).collect(),
        storm,
        ..Route::default()
    }
}

async fn send(t: &TestApp, body: &str) {
    assert_eq!(t.alert("alertmanager", body).await.status(), 202);
}

async fn inbox_done(t: &TestApp) {
    t.inbox_processed(20).await;
}

fn posts(t: &TestApp) -> Vec<fake_slack::Call> {
    t.slack.ok_calls("chat.postMessage")
}

fn text(c: &fake_slack::Call) -> String {
    c.body.to_string()
}

/// Updates of the message posted as `ts`.
fn updates_of(t: &TestApp, ts: &str) -> Vec<fake_slack::Call> {
    t.slack
        .ok_calls("chat.update")
        .into_iter()
        .filter(|c| c.body["ts"] == ts)
        .collect()
}

async fn a_60_alert_group_is_one_incident_and_one_message_updated_in_place(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |cfg| {
        cfg.alerts.routes = vec![declaring(&[], StormLimit::default())];
    })
    .await;
    send(&t, &notification("HighErrorRate", alerts("pod-", 60, 0, "critical"))).await;
    inbox_done(&t).await;
    t.drained(15).await;
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incidents").await, 1);
    assert_eq!(t.scalar("SELECT COUNT(*) FROM alerts WHERE incident_id = 1").await, 60);
    // The incident's root, its status-page draft, and one grouped message.
    let p = posts(&t);
    assert_eq!(p.len(), 3, "{:#?}", fake_slack::summary(&p));
    let root = p[0].ts.clone().unwrap();
    assert!(p[1..].iter().all(|c| c.body["thread_ts"] == root.as_str()));
    let group = p
        .iter()
        .find(|c| text(c).contains("Alert group"))
        .expect("the grouped message");
    assert!(text(group).contains("60 firing") && text(group).contains("…and 45 more"));
    let group_ts = group.ts.clone().unwrap();
    // Sixty alerts counted as grouped; one grouped message, one alert → Slack delay.
    let grouped = r#"runbook_bot_alerts_total{source="alertmanager",outcome="grouped"}"#;
    assert_eq!(t.counter(grouped).await, 60);
    assert_eq!(t.counter("runbook_bot_alert_to_slack_seconds_count").await, 1);

    // Alertmanager sends the whole group again: 10 resolved, 50 still firing.
    send(&t, &notification("HighErrorRate", alerts("pod-", 60, 10, "critical"))).await;
    inbox_done(&t).await;
    t.drained(15).await;
    assert_eq!(posts(&t).len(), 3, "no new post when some resolve");
    let u = updates_of(&t, &group_ts);
    assert_eq!(u.len(), 1, "one update per notification");
    assert!(text(&u[0]).contains("*50 firing* · 10 resolved"), "{}", text(&u[0]));

    // All resolved: the message says so and the thread is told once.
    send(&t, &notification("HighErrorRate", alerts("pod-", 60, 60, "critical"))).await;
    inbox_done(&t).await;
    t.drained(15).await;
    let p = posts(&t);
    assert_eq!(p.len(), 4, "{:#?}", fake_slack::summary(&p));
    assert!(text(&p[3]).contains("All 60 alerts of this group resolved"));
    let u = updates_of(&t, &group_ts);
    assert!(text(u.last().unwrap()).contains("*0 firing* · 60 resolved"));
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incidents").await, 1);
    // Updates that list no new alert are no alert's first appearance.
    assert_eq!(t.counter(grouped).await, 60);
    assert_eq!(t.counter("runbook_bot_alert_to_slack_seconds_count").await, 1);
    t.finish().await;
}

async fn a_small_group_posts_each_alert_and_opens_one_incident(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |cfg| {
        cfg.alerts.routes = vec![declaring(&[], StormLimit::default())];
    })
    .await;
    // Three new alerts (the threshold): one post each, as without groups,
    // but no `service` label no longer means an incident each.
    send(&t, &notification("HighErrorRate", alerts("pod-", 3, 0, "critical"))).await;
    inbox_done(&t).await;
    send(&t, &notification("HighErrorRate", alerts("pod-", 5, 0, "critical"))).await;
    inbox_done(&t).await;
    t.drained(15).await;
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incidents").await, 1);
    assert_eq!(t.scalar("SELECT COUNT(*) FROM alerts WHERE incident_id = 1").await, 5);
    let p = posts(&t);
    let firing = p.iter().filter(|c| text(c).contains("[FIRING] pod-")).count();
    assert_eq!((p.len(), firing), (7, 5), "{:#?}", fake_slack::summary(&p));
    assert!(!p.iter().any(|c| text(c).contains("Alert group")));
    let posted = r#"runbook_bot_alerts_total{source="alertmanager",outcome="posted"}"#;
    assert_eq!(t.counter(posted).await, 5);
    assert_eq!(t.counter("runbook_bot_alert_to_slack_seconds_count").await, 5);
    t.finish().await;
}

async fn a_persons_incident_reaches_slack_within_seconds_during_the_storm(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |cfg| {
        cfg.alerts.routes = vec![declaring(&[], StormLimit::default())];
        // Slack's real pace: about one post a second per channel.
        cfg.outbox.per_channel_per_second = 1.0;
        cfg.outbox.burst = 3;
    })
    .await;
    send(&t, &notification("HighErrorRate", alerts("pod-", 60, 0, "critical"))).await;
    // And twenty small groups of warnings, each posted on its own.
    for g in 0..20 {
        let body = notification(
            &format!("DiskFilling{g}"),
            alerts(&format!("disk{g}-"), 1, 0, "warning"),
        );
        send(&t, &body).await;
    }
    inbox_done(&t).await;
    let queued = t
        .scalar("SELECT COUNT(*) FROM outbox WHERE status = 'pending' AND kind = 'post'")
        .await;
    assert!(queued >= 15, "the storm is queued: {queued} posts pending");

    let before = posts(&t).len();
    let typed = Instant::now();
    t.command(L2, "p1 Checkout down").await;
    let calls = t
        .slack
        .wait_for(10, "the person's incident", |c| {
            c.iter().any(|c| c.ok && text(c).contains("Checkout down"))
        })
        .await;
    let waited = typed.elapsed();
    assert!(waited < Duration::from_secs(4), "the person's root took {waited:?}");
    let p: Vec<_> = calls
        .iter()
        .filter(|c| c.ok && c.method == "chat.postMessage")
        .collect();
    let at = p.iter().position(|c| text(c).contains("Checkout down")).unwrap();
    assert!(
        at <= before + 1,
        "{} alert posts went out between the command and the root",
        at - before
    );
    // Pacing holds: a burst of 3, then about one a second, so any five
    // consecutive posts span at least two seconds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = posts(&t);
    assert!(
        p.len() >= at + 3,
        "alert posts still follow: {:#?}",
        fake_slack::summary(&p)
    );
    for w in p.windows(5) {
        let span = w[4].at.duration_since(w[0].at);
        assert!(span >= Duration::from_millis(1800), "five posts within {span:?}");
    }
    t.finish().await;
}

async fn storm_mode_attaches_groups_beyond_the_limit_and_says_so_once(backend: Backend) {
    let limit = StormLimit {
        incidents: 2,
        minutes: 10,
    };
    let t = TestApp::spawn_configured(backend, |cfg| {
        cfg.alerts.routes = vec![declaring(&[], limit)];
    })
    .await;
    for g in 0..4 {
        let body = notification(&format!("Storm{g}"), alerts(&format!("s{g}-"), 1, 0, "critical"));
        send(&t, &body).await;
    }
    inbox_done(&t).await;
    t.drained(15).await;
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incidents").await, 2);
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM alerts WHERE incident_id = 2").await,
        3,
        "the newest incident took the groups beyond the limit"
    );
    let p = posts(&t);
    let notices: Vec<_> = p.iter().filter(|c| text(c).contains("Storm mode")).collect();
    assert_eq!(notices.len(), 1, "{:#?}", fake_slack::summary(&p));
    let roots: Vec<_> = p.iter().filter(|c| c.body["thread_ts"].is_null()).collect();
    assert_eq!(roots.len(), 2);
    assert_eq!(notices[0].body["thread_ts"], roots[1].ts.clone().unwrap().as_str());
    let timeline = t.command(L1, "timeline #2").await;
    assert!(timeline.contains("Storm mode"), "{timeline}");
    let storm = r#"runbook_bot_alert_storm_total{route="routes[0]"}"#;
    assert_eq!(t.counter(storm).await, 2, "the two groups beyond the limit");

    // Once the window has passed, the route declares again.
    t.clock.advance(11 * 60_000);
    send(&t, &notification("Later", alerts("later-", 1, 0, "critical"))).await;
    inbox_done(&t).await;
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incidents").await, 3);
    t.finish().await;
}

/// A catalog with the shipped `orphans` and `connections`, and `slow`,
/// which holds a target connection for `secs`.
fn catalog(secs: f64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["orphans", "connections"] {
        std::fs::copy(
            format!("commands/diagnose/{name}.toml"),
            dir.path().join(format!("{name}.toml")),
        )
        .unwrap();
    }
    let slow = format!(
        r#"
kind = "diagnostic"
schema = "postgres"
command = "/diagnose"
name = "slow"
summary = "Holds a connection for a while"
usage = "/diagnose slow"
level = "l1"

[[steps]]
title = "Sleep"
sql = "SELECT pg_sleep({secs})::text AS slept"
timeout_ms = 10000
"#
    );
    std::fs::write(dir.path().join("slow.toml"), slow).unwrap();
    dir
}

async fn auto(t: &TestApp, name: &str, outcome: &str) -> u64 {
    let series = format!("runbook_bot_auto_diagnose_total{{name=\"{name}\",outcome=\"{outcome}\"}}");
    t.counter(&series).await
}

async fn auto_diagnose_runs_once_per_incident_and_the_cap_holds(backend: Backend) {
    let target = SupabaseDb::b2b_planted().await;
    let dir = catalog(4.0);
    let many = StormLimit {
        incidents: 50,
        minutes: 10,
    };
    let t = TestApp::spawn_configured(backend, |cfg| {
        target.attach(cfg);
        cfg.commands_dir = dir.path().to_path_buf();
        cfg.alerts.auto_diagnose.max_concurrent = 2;
        cfg.alerts.routes = vec![
            declaring(&["orphans", "connections"], many),
            Route {
                matcher: Matcher {
                    severity: vec!["error".into()],
                    ..Matcher::default()
                },
                declare: Some("p2".into()),
                diagnose: vec!["slow".into()],
                storm: many,
                ..Route::default()
            },
        ];
    })
    .await;
    // 60 alerts, then 10 more of the same group: one run of each diagnostic.
    send(&t, &notification("HighErrorRate", alerts("pod-", 60, 0, "critical"))).await;
    inbox_done(&t).await;
    send(&t, &notification("HighErrorRate", alerts("pod-", 70, 0, "critical"))).await;
    inbox_done(&t).await;
    t.slack
        .wait_for(20, "both results", |c| {
            ["/diagnose orphans on", "/diagnose connections on"]
                .iter()
                .all(|r| c.iter().any(|c| c.ok && text(c).contains(r)))
        })
        .await;
    t.drained(15).await;
    for name in ["orphans", "connections"] {
        assert_eq!(auto(&t, name, "started").await, 1, "{name}");
        assert_eq!(
            auto(&t, name, "deduplicated").await,
            1,
            "{name}: the second notification"
        );
        let results = posts(&t)
            .iter()
            .filter(|c| text(c).contains(&format!("/diagnose {name} on")))
            .count();
        assert_eq!(results, 1, "{name}");
    }
    assert_eq!(t.scalar("SELECT COUNT(*) FROM auto_diagnose_runs").await, 2);

    // Four incidents at once want `slow`; two may run, two are skipped.
    for g in 0..4 {
        let body = notification(&format!("Slow{g}"), alerts(&format!("slow{g}-"), 1, 0, "error"));
        send(&t, &body).await;
    }
    inbox_done(&t).await;
    t.slack
        .wait_for(30, "the skipped notices and the two results", |c| {
            let n = |s: &str| c.iter().filter(|c| c.ok && text(c).contains(s)).count();
            n("Not run automatically") == 2 && n("/diagnose slow on") == 2
        })
        .await;
    let slow = (auto(&t, "slow", "started").await, auto(&t, "slow", "skipped").await);
    assert_eq!(slow, (2, 2));
    let m = t.metrics().await;
    assert!(
        m.contains("runbook_bot_auto_diagnose_total{name=\"slow\",outcome=\"skipped\"} 2"),
        "{m}"
    );
    t.finish().await;
    target.cleanup().await;
}

/// The most connections the target's role had open at once while `busy` ran.
async fn peak_connections(target: &SupabaseDb, busy: impl std::future::Future<Output = ()>) -> i64 {
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&pg_admin_url())
        .await
        .unwrap();
    let mut peak = 0;
    let sample = async {
        loop {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND usename = $2")
                    .bind(&target.name)
                    .bind(&target.roles.owner)
                    .fetch_one(&mut admin)
                    .await
                    .unwrap();
            peak = peak.max(n);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        _ = busy => {}
        _ = sample => {}
    }
    peak
}

async fn target_connections_never_exceed_the_pool(backend: Backend) {
    let target = SupabaseDb::new(AppSchema::B2b).await;
    let dir = catalog(2.0);
    let t = TestApp::spawn_configured(backend, |cfg| {
        target.attach(cfg);
        cfg.commands_dir = dir.path().to_path_buf();
        // Far more automatic diagnostics at once than the pool has connections.
        cfg.alerts.auto_diagnose.max_concurrent = 16;
        cfg.alerts.routes = vec![declaring(
            &["slow"],
            StormLimit {
                incidents: 50,
                minutes: 10,
            },
        )];
    })
    .await;
    let storm = async {
        for g in 0..12 {
            let body = notification(&format!("Busy{g}"), alerts(&format!("busy{g}-"), 1, 0, "critical"));
            send(&t, &body).await;
        }
        t.slack
            .wait_for(40, "twelve results", |c| {
                c.iter()
                    .filter(|c| c.ok && text(c).contains("/diagnose slow on"))
                    .count()
                    == 12
            })
            .await;
    };
    let peak = peak_connections(&target, storm).await;
    // Twelve two-second checks at once fill the pool, and go no further:
    // those that wait out the connect timeout could not check instead.
    let max = i64::from(runbook_bot::targets::MAX_CONNECTIONS);
    assert_eq!(peak, max, "{peak} connections open at once (pool of {max})");
    assert_eq!(auto(&t, "slow", "started").await, 12);
    t.finish().await;
    target.cleanup().await;
}

both_backends!(
    a_60_alert_group_is_one_incident_and_one_message_updated_in_place,
    a_small_group_posts_each_alert_and_opens_one_incident,
    a_persons_incident_reaches_slack_within_seconds_during_the_storm,
    storm_mode_attaches_groups_beyond_the_limit_and_says_so_once,
    auto_diagnose_runs_once_per_incident_and_the_cap_holds,
    target_connections_never_exceed_the_pool,
);
