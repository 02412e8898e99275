//! Housekeeping: delete what the state store no longer needs, by the days
//! of `[retention]`, so no table grows without bound:
//!
//! * Events API ids (Slack retries for about an hour);
//! * delivered and superseded outbox rows; failed ones later;
//! * processed alert payloads; the ones that could not be handled later;
//! * alerts not seen for a while, unless on an open incident;
//! * message keys (`slack_messages`) nothing can update or reply to any
//!   more: of alerts gone, of incidents resolved and approvals finished long
//!   ago, never while a pending write or a scheduled follow-up needs one;
//! * expired console sign-in links and sessions;
//! * the audit log and the timelines of resolved incidents (with the
//!   messages pinned to them), kept longest.
//!   The timeline of an open incident is never deleted.
//!
//! Deletes go in batches of `BATCH` rows, each its own short statement, so
//! a large backlog never holds SQLite's one writer connection for long:
//! between batches, queued writers take it in turn.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::Store;
use crate::clock::Clock;
use crate::config::RetentionConfig;

const EVERY: Duration = Duration::from_secs(600);
/// Rows per delete statement.
const BATCH: i64 = 500;
/// Breathing room for other writers between two batches.
const PAUSE: Duration = Duration::from_millis(5);

/// One kind of row to forget: `$1` is the cutoff time (ms), `$2` the batch size.
struct Rule {
    kind: &'static str,
    sql: &'static str,
    days: fn(&RetentionConfig) -> u32,
}

/// In order: alerts go before the message keys they held.
const RULES: &[Rule] = &[
    Rule {
        kind: "events",
        sql: "DELETE FROM slack_events WHERE event_id IN
              (SELECT event_id FROM slack_events WHERE received_at < $1 LIMIT $2)",
        days: |r| r.events_days,
    },
    Rule {
        kind: "outbox_sent",
        sql: "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox
              WHERE status IN ('sent', 'superseded') AND finished_at < $1 LIMIT $2)",
        days: |r| r.sent_days,
    },
    Rule {
        kind: "outbox_failed",
        sql: "DELETE FROM outbox WHERE id IN
              (SELECT id FROM outbox WHERE status = 'failed' AND finished_at < $1 LIMIT $2)",
        days: |r| r.failed_days,
    },
    Rule {
        kind: "alert_inbox",
        sql: "DELETE FROM alert_inbox WHERE id IN (SELECT id FROM alert_inbox
              WHERE processed_at < $1 AND error IS NULL LIMIT $2)",
        days: |r| r.inbox_days,
    },
    Rule {
        kind: "alert_inbox_failed",
        sql: "DELETE FROM alert_inbox WHERE id IN (SELECT id FROM alert_inbox
              WHERE processed_at < $1 AND error IS NOT NULL LIMIT $2)",
        days: |r| r.failed_days,
    },
    Rule {
        kind: "alerts",
        sql: "DELETE FROM alerts WHERE id IN (SELECT a.id FROM alerts a
              LEFT JOIN incidents i ON i.id = a.incident_id
              WHERE a.last_seen < $1 AND (i.id IS NULL OR i.state = 'resolved') LIMIT $2)",
        days: |r| r.alerts_days,
    },
    // A group run goes once no alert belongs to it any more.
    Rule {
        kind: "alert_groups",
        sql: "DELETE FROM alert_groups WHERE id IN (SELECT g.id FROM alert_groups g
              LEFT JOIN incidents i ON i.id = g.incident_id
              WHERE g.last_seen < $1 AND (i.id IS NULL OR i.state = 'resolved')
              AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.group_id = g.id) LIMIT $2)",
        days: |r| r.alerts_days,
    },
    // Storm-limit and auto-diagnose windows are minutes long; the rows only
    // matter while their window is open.
    Rule {
        kind: "alert_declares",
        sql: "DELETE FROM alert_declares WHERE incident_id IN
              (SELECT incident_id FROM alert_declares WHERE declared_at < $1 LIMIT $2)",
        days: |r| r.alerts_days,
    },
    Rule {
        kind: "auto_diagnose_runs",
        sql: "DELETE FROM auto_diagnose_runs WHERE (scope, diagnostic) IN
              (SELECT scope, diagnostic FROM auto_diagnose_runs WHERE started_at < $1 LIMIT $2)",
        days: |r| r.alerts_days,
    },
    // No time of its own: a key no alert holds any more is never updated
    // again (`$1 > 0` only keeps the parameters the same for every rule).
    Rule {
        kind: "alert_messages",
        sql: "DELETE FROM slack_messages WHERE key IN (SELECT m.key FROM slack_messages m
              WHERE (m.key LIKE 'alert:%' OR m.key LIKE 'alertgroup:%') AND $1 > 0
              AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.message_key = m.key OR a.thread_key = m.key)
              AND NOT EXISTS (SELECT 1 FROM alert_groups g WHERE g.message_key = m.key OR g.thread_key = m.key)
              AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.status = 'pending'
                              AND (o.message_key = m.key OR o.thread_key = m.key))
              LIMIT $2)",
        days: |r| r.alerts_days,
    },
    Rule {
        kind: "incident_messages",
        sql: "DELETE FROM slack_messages WHERE key IN (SELECT m.key FROM slack_messages m
              JOIN incidents i ON m.key = 'incident:' || CAST(i.id AS TEXT)
              WHERE i.state = 'resolved' AND i.resolved_at < $1
              AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.message_key = m.key OR a.thread_key = m.key)
              AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.status = 'pending'
                              AND (o.message_key = m.key OR o.thread_key = m.key))
              LIMIT $2)",
        days: |r| r.messages_days,
    },
    Rule {
        kind: "approval_messages",
        sql: "DELETE FROM slack_messages WHERE key IN (SELECT m.key FROM slack_messages m
              JOIN approval_requests r ON m.key = 'approval:' || CAST(r.id AS TEXT)
              WHERE r.state IN ('applied', 'failed', 'rolled_back', 'denied', 'expired') AND r.updated_at < $1
              AND NOT EXISTS (SELECT 1 FROM followups f WHERE f.request_id = r.id
                              AND f.state IN ('scheduled', 'running'))
              AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.status = 'pending'
                              AND (o.message_key = m.key OR o.thread_key = m.key))
              LIMIT $2)",
        days: |r| r.messages_days,
    },
    Rule {
        kind: "timeline",
        sql: "DELETE FROM incident_events WHERE id IN (SELECT e.id FROM incident_events e
              JOIN incidents i ON i.id = e.incident_id
              WHERE i.state = 'resolved' AND i.resolved_at < $1 LIMIT $2)",
        days: |r| r.audit_days,
    },
    // Pinned messages go with the timeline they were added to.
    Rule {
        kind: "incident_pins",
        sql: "DELETE FROM incident_pins WHERE (incident_id, message_ts) IN (SELECT p.incident_id, p.message_ts
              FROM incident_pins p JOIN incidents i ON i.id = p.incident_id
              WHERE i.state = 'resolved' AND i.resolved_at < $1 LIMIT $2)",
        days: |r| r.audit_days,
    },
    // Console sign-in links and sessions are worth nothing once expired
    // (`days` 0: the cutoff is now).
    Rule {
        kind: "console_links",
        sql: "DELETE FROM console_links WHERE token_hash IN
              (SELECT token_hash FROM console_links WHERE expires_at < $1 LIMIT $2)",
        days: |_| 0,
    },
    Rule {
        kind: "console_sessions",
        sql: "DELETE FROM console_sessions WHERE token_hash IN
              (SELECT token_hash FROM console_sessions WHERE expires_at < $1 LIMIT $2)",
        days: |_| 0,
    },
    Rule {
        kind: "audit",
        sql: "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE at < $1 LIMIT $2)",
        days: |r| r.audit_days,
    },
];

pub async fn run(store: Store, clock: Arc<dyn Clock>, retention: RetentionConfig, cancel: CancellationToken) {
    loop {
        match sweep(&store, &retention, clock.now_ms()).await {
            Ok(swept) if !swept.is_empty() => tracing::info!(?swept, "state-store housekeeping deleted old rows"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = ?e, "state-store housekeeping failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// Delete every kind's old rows; returns how many of each went.
pub async fn sweep(store: &Store, retention: &RetentionConfig, now: i64) -> anyhow::Result<Vec<(&'static str, u64)>> {
    let mut swept = Vec::new();
    for rule in RULES {
        let cutoff = now - RetentionConfig::ms((rule.days)(retention));
        let n = in_batches(store, rule.sql, cutoff)
            .await
            .with_context(|| format!("deleting old {}", rule.kind))?;
        if n > 0 {
            swept.push((rule.kind, n));
        }
    }
    Ok(swept)
}

async fn in_batches(store: &Store, sql: &'static str, cutoff: i64) -> anyhow::Result<u64> {
    let mut total = 0;
    loop {
        let n = sqlx::query(sql)
            .bind(cutoff)
            .bind(BATCH)
            .execute(&store.writer)
            .await?
            .rows_affected();
        total += n;
        if n < BATCH as u64 {
            return Ok(total);
        }
        tokio::time::sleep(PAUSE).await;
    }
}
