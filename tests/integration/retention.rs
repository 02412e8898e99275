//! Retention (issue 10): the janitor deletes old rows of every kind by the
//! days of `[retention]`, in batches, and keeps the audit longest and the
//! timeline of an open incident always.

use runbook_bot::clock::Clock;
use runbook_bot::config::RetentionConfig;
use runbook_bot::store::janitor;

use crate::both_backends;
use crate::support::*;

const DAY: i64 = 24 * 3_600_000;

/// The sweeps here run at a time a thousand days ahead, with rows placed
/// relative to it: the app's own janitor, sweeping at the real time, then
/// sees them all as recent and cannot race the test.
fn later(t: &TestApp) -> i64 {
    t.clock.now_ms() + 1000 * DAY
}

/// Run one statement on the writer with `binds` as `$1`, `$2`, ...
async fn exec(t: &TestApp, sql: &'static str, binds: &[i64]) {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = q.bind(*b);
    }
    q.execute(&t.state().store.writer).await.unwrap();
}

async fn ids(t: &TestApp, sql: &'static str) -> Vec<i64> {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_all(&t.state().store.pool)
        .await
        .unwrap()
}

async fn keys(t: &TestApp) -> Vec<String> {
    sqlx::query_scalar::<_, String>("SELECT key FROM slack_messages ORDER BY key")
        .fetch_all(&t.state().store.pool)
        .await
        .unwrap()
}

/// Incident 1 open since long ago, 2 resolved 500 days ago, 3 two days ago.
async fn incidents(t: &TestApp, now: i64) {
    let sql = "INSERT INTO incidents (id, channel, title, severity, state, commander, declared_by, declared_at, resolved_at, updated_at)
               VALUES ($1, 'CINCIDENTS', 'x', 'p2', $2, 'U0ONCALL', 'U0ONCALL', $3, $4, $3)";
    for (id, resolved_at) in [(1, None), (2, Some(now - 500 * DAY)), (3, Some(now - 2 * DAY))] {
        let state = if resolved_at.is_some() { "resolved" } else { "declared" };
        sqlx::query(sql)
            .bind(id)
            .bind(state)
            .bind(now - 600 * DAY)
            .bind(resolved_at)
            .execute(&t.state().store.writer)
            .await
            .unwrap();
        exec(
            t,
            "INSERT INTO incident_events (incident_id, occurred_at, actor, kind, text) VALUES ($1, $2, 'bot', 'declared', 'x')",
            &[id, now - 600 * DAY],
        )
        .await;
        exec(
            t,
            "INSERT INTO incident_pins (incident_id, message_ts, channel, added_at) VALUES ($1, '1.2', 'C0ROOM', $2)",
            &[id, now - 600 * DAY],
        )
        .await;
    }
}

/// Alerts: 1 stale and loose, 2 stale on the open incident, 3 stale on the
/// long-resolved one, 4 fresh; each with its message key posted.
async fn alerts(t: &TestApp, now: i64) {
    for (id, incident, last_seen) in [
        (1, None, now - 31 * DAY),
        (2, Some(1), now - 31 * DAY),
        (3, Some(2), now - 31 * DAY),
        (4, None, now - DAY),
    ] {
        sqlx::query(
            "INSERT INTO alerts (id, source, fingerprint, status, severity, title, channel, message_key, incident_id,
             occurrence, deliveries, first_seen, last_seen, fired_at, latest)
             VALUES ($1, 'generic', $2, 'firing', 'warning', 't', 'CINCIDENTS', $3, $4, 1, 1, $5, $5, $5, '{}')",
        )
        .bind(id)
        .bind(format!("fp{id}"))
        .bind(format!("alert:{id}"))
        .bind(incident)
        .bind(last_seen)
        .execute(&t.state().store.writer)
        .await
        .unwrap();
    }
    for key in [
        "alert:1",
        "alert:2",
        "alert:3",
        "alert:4",
        "incident:1",
        "incident:2",
        "incident:3",
        "approval:1",
        "other:1",
    ] {
        sqlx::query("INSERT INTO slack_messages (key, channel, ts) VALUES ($1, 'CINCIDENTS', '1.2')")
            .bind(key)
            .execute(&t.state().store.writer)
            .await
            .unwrap();
    }
    exec(
        t,
        "INSERT INTO approval_requests (id, command, name, words, target, channel, requested_by, requested_at, expires_at,
         approver_level, approvals_needed, plan, plan_hash, state, updated_at)
         VALUES (1, '/rollback', 'flag', '[]', 'production', 'CINCIDENTS', 'U0ONCALL', $1, $1, 'l3', 1, '{}', 'h', 'denied', $1)",
        &[now - 40 * DAY],
    )
    .await;
}

/// Outbox rows `(status, finished days ago)` and alert payloads.
async fn deliveries(t: &TestApp, now: i64) {
    for (status, days) in [
        ("sent", 8),
        ("sent", 1),
        ("superseded", 8),
        ("failed", 8),
        ("failed", 31),
        ("pending", 90),
    ] {
        sqlx::query(
            "INSERT INTO outbox (lane, kind, channel, payload, status, next_attempt_at, created_at, finished_at)
             VALUES ('CINCIDENTS', 'post', 'CINCIDENTS', '{}', $1, $2, $2, $3)",
        )
        .bind(status)
        .bind(now - days * DAY)
        .bind((status != "pending").then_some(now - days * DAY))
        .execute(&t.state().store.writer)
        .await
        .unwrap();
    }
    let inbox = "INSERT INTO alert_inbox (source, alerts, received_at, processed_at, error) VALUES ('generic', '[]', $1, $2, $3)";
    for (days, processed, error) in [
        (8, true, None),
        (1, true, None),
        (8, true, Some("bad")),
        (31, true, Some("bad")),
        (90, false, None),
    ] {
        sqlx::query(inbox)
            .bind(now - days * DAY)
            .bind(processed.then_some(now - days * DAY))
            .bind(error)
            .execute(&t.state().store.writer)
            .await
            .unwrap();
    }
    let event = "INSERT INTO slack_events (event_id, received_at) VALUES ($1, $2)";
    for (id, days) in [("Ev-old", 2), ("Ev-new", 0)] {
        sqlx::query(event)
            .bind(id)
            .bind(now - days * DAY)
            .execute(&t.state().store.writer)
            .await
            .unwrap();
    }
    let audit = "INSERT INTO audit_events (at, actor, kind, detail) VALUES ($1, 'U0LEAD', 'approval_vote', 'x')";
    for days in [500, 300] {
        exec(t, audit, &[now - days * DAY]).await;
    }
}

async fn old_rows_of_every_kind_go_and_the_rest_stays(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let now = later(&t);
    incidents(&t, now).await;
    alerts(&t, now).await;
    deliveries(&t, now).await;
    janitor::sweep(&t.state().store, &RetentionConfig::default(), now)
        .await
        .unwrap();

    assert_eq!(
        ids(&t, "SELECT incident_id FROM incident_events ORDER BY incident_id").await,
        [1, 3],
        "open and recent timelines stay"
    );
    assert_eq!(
        ids(&t, "SELECT incident_id FROM incident_pins ORDER BY incident_id").await,
        [1, 3],
        "pins go with their timeline"
    );
    assert_eq!(ids(&t, "SELECT id FROM alerts ORDER BY id").await, [2, 4]);
    assert_eq!(
        keys(&t).await,
        ["alert:2", "alert:4", "incident:1", "incident:3", "other:1"]
    );
    let outbox: Vec<String> = sqlx::query_scalar("SELECT status FROM outbox ORDER BY id")
        .fetch_all(&t.state().store.pool)
        .await
        .unwrap();
    assert_eq!(
        outbox,
        ["sent", "failed", "pending"],
        "a week of sent, a month of failed, all pending"
    );
    assert_eq!(
        ids(&t, "SELECT received_at FROM alert_inbox ORDER BY id").await,
        [now - DAY, now - 8 * DAY, now - 90 * DAY],
        "processed a week, failed a month, unprocessed always"
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM slack_events").await, 1);
    assert_eq!(
        ids(&t, "SELECT at FROM audit_events").await,
        [now - 300 * DAY],
        "the audit stays 400 days"
    );
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incidents").await,
        3,
        "incidents themselves stay"
    );

    // Retention is configurable: a one-day audit takes the 300-day row and
    // the timeline resolved two days ago, never the open incident's.
    let short = RetentionConfig {
        audit_days: 1,
        ..RetentionConfig::default()
    };
    janitor::sweep(&t.state().store, &short, now).await.unwrap();
    assert_eq!(t.scalar("SELECT COUNT(*) FROM audit_events").await, 0);
    assert_eq!(
        ids(&t, "SELECT incident_id FROM incident_events").await,
        [1],
        "the open incident's timeline stays"
    );
    assert_eq!(ids(&t, "SELECT incident_id FROM incident_pins").await, [1]);
    t.finish().await;
}

async fn a_backlog_goes_in_batches(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let now = later(&t);
    // More than two batches of old Events API ids.
    for chunk in 0..12 {
        let mut tx = t.state().store.begin().await.unwrap();
        for i in 0..100 {
            sqlx::query("INSERT INTO slack_events (event_id, received_at) VALUES ($1, $2)")
                .bind(format!("Ev{chunk}-{i}"))
                .bind(now - 2 * DAY)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    let swept = janitor::sweep(&t.state().store, &RetentionConfig::default(), now)
        .await
        .unwrap();
    assert_eq!(swept, [("events", 1200)]);
    assert_eq!(t.scalar("SELECT COUNT(*) FROM slack_events").await, 0);
    t.finish().await;
}

/// Alert group runs go once no alert belongs to them and their incident is
/// resolved, with their grouped message's key; the storm and auto-diagnose
/// windows' rows go after `alerts_days`.
async fn alert_groups_and_their_windows_go_with_their_alerts(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let now = later(&t);
    incidents(&t, now).await;
    // Group 1: old, its incident resolved, no alert left. Group 2: old but an
    // alert still belongs to it. Group 3: old, its incident still open.
    for (id, incident) in [(1, 2), (2, 2), (3, 1)] {
        exec(
            &t,
            "INSERT INTO alert_groups (id, group_key, incident_id, channel, message_key, opened_at, last_seen)
             VALUES ($1, 'k', $2, 'CINCIDENTS', 'alertgroup:' || CAST($1 AS TEXT), $3, $3)",
            &[id, incident, now - 60 * DAY],
        )
        .await;
        sqlx::query("INSERT INTO slack_messages (key, channel, ts) VALUES ($1, 'CINCIDENTS', '1.2')")
            .bind(format!("alertgroup:{id}"))
            .execute(&t.state().store.writer)
            .await
            .unwrap();
    }
    exec(
        &t,
        "INSERT INTO alerts (id, source, fingerprint, status, severity, title, channel, message_key, incident_id,
         occurrence, deliveries, first_seen, last_seen, fired_at, latest, group_id)
         VALUES (1, 'generic', 'fp', 'firing', 'warning', 't', 'CINCIDENTS', 'alertgroup:2', 2, 1, 1, $1, $1, $1, '{}', 2)",
        &[now - DAY],
    )
    .await;
    for (incident, days) in [(2, 31), (3, 1)] {
        exec(
            &t,
            "INSERT INTO alert_declares (incident_id, route, declared_at) VALUES ($1, 'routes[0]', $2)",
            &[incident, now - days * DAY],
        )
        .await;
    }
    for (scope, days) in [(1, 31), (3, 1)] {
        exec(
            &t,
            "INSERT INTO auto_diagnose_runs (scope, diagnostic, started_at) VALUES (CAST($1 AS TEXT), 'health', $2)",
            &[scope, now - days * DAY],
        )
        .await;
    }
    janitor::sweep(&t.state().store, &RetentionConfig::default(), now)
        .await
        .unwrap();
    assert_eq!(ids(&t, "SELECT id FROM alert_groups ORDER BY id").await, [2, 3]);
    assert_eq!(keys(&t).await, ["alertgroup:2", "alertgroup:3"]);
    assert_eq!(ids(&t, "SELECT incident_id FROM alert_declares").await, [3]);
    assert_eq!(ids(&t, "SELECT started_at FROM auto_diagnose_runs").await, [now - DAY]);
    t.finish().await;
}

both_backends!(
    old_rows_of_every_kind_go_and_the_rest_stays,
    a_backlog_goes_in_batches,
    alert_groups_and_their_windows_go_with_their_alerts
);
