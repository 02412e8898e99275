//! An alert storm with people at work: `cargo bench --bench storm` (add
//! `-- postgres` for the PostgreSQL state store).
//!
//! The real app with the real Slack client against the tests' fake Slack at
//! Slack's own pace (one post a second per channel, a burst of 3), alert
//! routes that declare a P1 and run two automatic diagnostics against the
//! tests' Supabase-shaped target database (as its non-superuser owner).
//!
//! 1. One Alertmanager notification with a 60-alert group (no `service`
//!    label) and twenty one-alert groups, then a person's `/incident p1`:
//!    incidents and Slack posts per group, and how long until the person's
//!    incident root reaches Slack.
//! 2. A sustained intake of `RATE` alerts a second for `STORM_SECS` seconds
//!    (Alertmanager notifications of `PER_PAYLOAD` alerts over `GROUPS`
//!    groups) while `PEOPLE` people each type a command every
//!    `THINK_MS` (status updates and lists): command latency percentiles
//!    during the storm, the intake rate reached, and how long the inbox took
//!    to drain.
//!
//! Throughout, the target's `pg_stat_activity` is sampled every 5 ms for the
//! most connections the bot held at once.

#[path = "../tests/integration/support/mod.rs"]
#[allow(dead_code, unused_macros, unused_imports)]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use runbook_bot::config::{Matcher, Route, StormLimit};
use serde_json::Value;
use support::alertmanager::{alert, notification};
use support::{AppSchema, Backend, L2, SupabaseDb, TestApp};

const RATE: usize = 20_000;
const STORM_SECS: u64 = 10;
const PER_PAYLOAD: usize = 100;
const CLIENTS: usize = 16;
const GROUPS: usize = 200;
const PEOPLE: usize = 8;
const THINK_MS: u64 = 20;

#[tokio::main]
async fn main() {
    let backend = Backend::from_args();
    let target = SupabaseDb::new(AppSchema::B2b).await;
    let t = TestApp::spawn_configured(backend, |cfg| {
        target.attach(cfg);
        cfg.alerts.routes = vec![Route {
            matcher: Matcher {
                severity: vec!["critical".into()],
                ..Matcher::default()
            },
            declare: Some("p1".into()),
            diagnose: vec!["orphans".into(), "connections".into()],
            storm: StormLimit::default(),
            ..Route::default()
        }];
        // Slack's pace, as in production.
        cfg.outbox.per_channel_per_second = 1.0;
        cfg.outbox.burst = 3;
    })
    .await;
    let t = Arc::new(t);
    let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicI64::new(0)));
    let sampler = tokio::spawn(sample_connections(target.name.clone(), stop.clone(), peak.clone()));

    println!("backend: {backend:?}");
    one_group(&t).await;
    storm(&t).await;

    stop.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    println!(
        "target connections held at once, at most: {} (the pool's cap is 4)",
        peak.load(Ordering::Relaxed)
    );
    let t = Arc::into_inner(t).expect("no task holds the app");
    t.finish().await;
    target.cleanup().await;
}

/// Phase 1: the 60-alert group, twenty small ones, then a person.
async fn one_group(t: &TestApp) {
    let big: Vec<Value> = (0..60)
        .map(|i| alert(&format!("pod-{i}"), "firing", "critical"))
        .collect();
    assert_eq!(
        t.alert("alertmanager", &notification("HighErrorRate", big))
            .await
            .status(),
        202
    );
    for g in 0..20 {
        let small = vec![alert(&format!("disk{g}"), "firing", "warning")];
        let body = notification(&format!("DiskFilling{g}"), small);
        assert_eq!(t.alert("alertmanager", &body).await.status(), 202);
    }
    t.inbox_processed(600).await;
    // Let the automatic diagnostics finish and queue their results.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let incidents = t.scalar("SELECT COUNT(*) FROM incidents").await;
    let group_posts = t
        .scalar("SELECT COUNT(*) FROM outbox WHERE kind = 'post' AND (incident_id = 1 OR thread_key = 'incident:1')")
        .await;
    let queued = t
        .scalar("SELECT COUNT(*) FROM outbox WHERE kind = 'post' AND status = 'pending'")
        .await;
    println!(
        "60-alert group: {incidents} incident, {group_posts} Slack posts (root, status-page draft, grouped message, diagnostics); \
         21 groups, {} alert rows; {queued} posts waiting at Slack's pace",
        t.scalar("SELECT COUNT(*) FROM alerts").await
    );

    let typed = Instant::now();
    t.command(L2, "p1 Checkout down").await;
    t.slack
        .wait_for(60, "the person's incident root", |c| {
            c.iter()
                .any(|c| c.ok && c.method == "chat.postMessage" && c.body.to_string().contains("Checkout down"))
        })
        .await;
    println!(
        "a person's /incident p1 typed behind {queued} queued posts reached Slack after {:.2} s",
        typed.elapsed().as_secs_f64()
    );
}

/// Phase 2: sustained intake with people typing.
async fn storm(t: &Arc<TestApp>) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(STORM_SECS);
    let per_client = Duration::from_secs_f64((CLIENTS * PER_PAYLOAD) as f64 / RATE as f64);
    let senders: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let t = t.clone();
            tokio::spawn(async move {
                let mut sent = 0usize;
                let mut next = Instant::now();
                while Instant::now() < deadline {
                    let n = sent * CLIENTS + c;
                    let group = format!("Storm{}", n % GROUPS);
                    let alerts = (0..PER_PAYLOAD)
                        .map(|i| alert(&format!("s{n}-{i}"), "firing", "critical"))
                        .collect();
                    let r = t.alert("alertmanager", &notification(&group, alerts)).await;
                    assert_eq!(r.status(), 202);
                    sent += 1;
                    next += per_client;
                    tokio::time::sleep_until(next.into()).await;
                }
                sent * PER_PAYLOAD
            })
        })
        .collect();
    let people: Vec<_> = (0..PEOPLE)
        .map(|p| {
            let t = t.clone();
            tokio::spawn(async move {
                let mut took = Vec::new();
                let mut n = 0;
                while Instant::now() < deadline {
                    let text = if n % 4 == 3 {
                        "list".to_string()
                    } else {
                        format!("status #2 person {p} update {n}")
                    };
                    let at = Instant::now();
                    t.command(L2, &text).await;
                    took.push(at.elapsed());
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(THINK_MS)).await;
                }
                took
            })
        })
        .collect();
    let mut alerts = 0;
    for s in senders {
        alerts += s.await.unwrap();
    }
    let sent_for = started.elapsed();
    let mut took: Vec<Duration> = Vec::new();
    for p in people {
        took.extend(p.await.unwrap());
    }
    t.inbox_processed(600).await;
    let drained = started.elapsed();
    took.sort();
    let pct = |p: f64| took[((took.len() as f64 * p).ceil() as usize).saturating_sub(1)].as_secs_f64() * 1e3;
    println!(
        "storm: {alerts} alerts in {:.1} s = {:.0} alerts/s accepted; inbox processed {:.1} s after the start; \
         {} incidents in all",
        sent_for.as_secs_f64(),
        alerts as f64 / sent_for.as_secs_f64(),
        drained.as_secs_f64(),
        t.scalar("SELECT COUNT(*) FROM incidents").await
    );
    println!(
        "people's commands during the storm: n={} p50={:.1} ms p95={:.1} ms p99={:.1} ms max={:.1} ms",
        took.len(),
        pct(0.50),
        pct(0.95),
        pct(0.99),
        took.last().unwrap().as_secs_f64() * 1e3
    );
}

/// The most connections to the target database at once, every 5 ms.
async fn sample_connections(db: String, stop: Arc<AtomicBool>, peak: Arc<AtomicI64>) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&support::pg_admin_url()).await.unwrap();
    while !stop.load(Ordering::Relaxed) {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND usename <> current_user")
                .bind(&db)
                .fetch_one(&mut c)
                .await
                .unwrap();
        peak.fetch_max(n, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
