//! One person hammering the bot (issue 10): clicks refused for want of level
//! are recorded and answered once per window per user, @mentions a few times;
//! the rest write nothing and post nothing, and are counted.

use crate::both_backends;
use crate::support::*;

const WINDOW_MS: i64 = 60_000;

async fn count(t: &TestApp, sql: &'static str) -> i64 {
    t.scalar(sql).await
}

const REPLIES: &str = "SELECT COUNT(*) FROM outbox WHERE response_url IS NOT NULL";

async fn refused_incident_buttons_are_answered_once_per_window(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    t.command(L2, "p1 Login failing").await;
    let (replies, timeline) = (
        count(&t, REPLIES).await,
        count(&t, "SELECT COUNT(*) FROM incident_events").await,
    );
    for _ in 0..50 {
        assert_eq!(t.click(NOBODY, "incident_ack", "1").await.status(), 200);
    }
    assert_eq!(count(&t, REPLIES).await, replies + 1, "one reply for fifty refusals");
    assert_eq!(count(&t, "SELECT COUNT(*) FROM incident_events").await, timeline);
    assert_eq!(
        count(&t, "SELECT COUNT(*) FROM incidents WHERE state = 'declared'").await,
        1
    );
    t.drained(10).await;
    let said: Vec<String> = t
        .slack
        .ok_calls("response_url")
        .iter()
        .map(|c| c.body["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("needs level l2; you have no role"), "{said:?}");
    assert!(
        t.metrics()
            .await
            .contains(r#"runbook_bot_throttled_total{what="refused_click"} 49"#)
    );

    // Someone else is answered on their own; the window passes and the
    // first is answered again.
    t.click(L1, "incident_resolve", "1").await;
    assert_eq!(count(&t, REPLIES).await, replies + 2);
    t.clock.advance(WINDOW_MS + 1);
    t.click(NOBODY, "incident_ack", "1").await;
    t.click(NOBODY, "incident_ack", "1").await;
    assert_eq!(count(&t, REPLIES).await, replies + 3);
    t.finish().await;
}

async fn refused_approvals_write_one_audit_row_per_window(backend: Backend) {
    let db = SupabaseDb::new(AppSchema::Hotel).await;
    let t = TestApp::spawn_configured(backend, |cfg| db.attach(cfg)).await;
    t.command(L2, "p1 New tenant flow broken").await;
    let reply = t.slash(L2, "/rollback", "flag new-tenant-flow").await;
    assert!(reply.contains("Approval #1"), "{reply}");
    let (replies, timeline) = (
        count(&t, REPLIES).await,
        count(&t, "SELECT COUNT(*) FROM incident_events").await,
    );
    for _ in 0..50 {
        assert_eq!(t.click(NOBODY, "approval_approve", "1").await.status(), 200);
    }
    assert_eq!(audit_kinds(&t, 1).await, ["action_requested", "approval_refused"]);
    assert_eq!(
        count(&t, "SELECT COUNT(*) FROM incident_events").await,
        timeline + 1,
        "one refusal on the incident's timeline"
    );
    assert_eq!(count(&t, REPLIES).await, replies + 1, "one reply");
    assert_eq!(request_state(&t, 1).await, "pending");

    // After the window, the next refusal is recorded and says how many were not.
    t.clock.advance(WINDOW_MS + 1);
    assert!(
        click_reply(&t, NOBODY, "approval_approve", 1)
            .await
            .contains("you have no role")
    );
    let detail: String = sqlx::query_scalar("SELECT detail FROM audit_events ORDER BY id DESC LIMIT 1")
        .fetch_one(&t.state().store.pool)
        .await
        .unwrap();
    assert!(
        detail.contains("(49 more refused clicks since the last recorded one were not recorded)"),
        "{detail}"
    );
    assert_eq!(count(&t, REPLIES).await, replies + 2);
    // A tech lead is not throttled by someone else's refusals.
    assert!(click_reply(&t, L3, "approval_deny", 1).await.contains("Denied #1"));
    t.finish().await;
    db.cleanup().await;
}

fn mention(event_id: &str, user: &str) -> String {
    serde_json::json!({
        "token": "x", "team_id": "T0TEAM", "api_app_id": "A0APP", "type": "event_callback",
        "event_id": event_id, "event_time": 1700000000,
        "event": {"type": "app_mention", "user": user, "text": "<@U0BOT> help", "ts": "1700000000.000500",
                  "channel": CHANNEL, "event_ts": "1700000000.000500"}
    })
    .to_string()
}

async fn mentions_are_answered_a_few_times_per_user(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    for i in 0..20 {
        let r = t
            .post_signed("/slack/events", "application/json", mention(&format!("Ev{i}"), L2), 0)
            .await;
        assert_eq!(r.status(), 200);
    }
    // The default burst is three; the rest store nothing, not even their id.
    assert_eq!(count(&t, "SELECT COUNT(*) FROM slack_events").await, 3);
    assert_eq!(count(&t, "SELECT COUNT(*) FROM outbox").await, 3);
    assert!(
        t.metrics()
            .await
            .contains(r#"runbook_bot_throttled_total{what="mention"} 17"#)
    );
    let r = t
        .post_signed("/slack/events", "application/json", mention("EvOther", L3), 0)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(count(&t, "SELECT COUNT(*) FROM outbox").await, 4);
    t.finish().await;
}

both_backends!(
    refused_incident_buttons_are_answered_once_per_window,
    refused_approvals_write_one_audit_row_per_window,
    mentions_are_answered_a_few_times_per_user,
);
