//! Incident lifecycle through signed slash commands and button clicks,
//! asserted at the fake Slack and in the state store.

use crate::both_backends;
use crate::support::*;

fn root_ts(t: &TestApp) -> String {
    let posts = t.slack.ok_calls("chat.postMessage");
    let root = posts
        .iter()
        .find(|c| c.body["thread_ts"].is_null())
        .expect("a root post");
    root.ts.clone().unwrap()
}

async fn declare_then_ack_threads_and_updates(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    // The reply needs only the state store: Slack is not on the request path
    // (latency is measured by `benches/commands.rs`, not asserted here).
    let reply = t.command(L2, "p1 Login failing").await;
    assert!(reply.contains("Declared incident *#1* (P1)"), "{reply}");

    t.slack
        .wait_for(10, "root and draft", |c| c.iter().filter(|c| c.ok).count() >= 2)
        .await;
    let posts = t.slack.ok_calls("chat.postMessage");
    let roots: Vec<_> = posts.iter().filter(|c| c.body["thread_ts"].is_null()).collect();
    assert_eq!(roots.len(), 1, "exactly one root post");
    assert_eq!(roots[0].body["channel"], CHANNEL);
    let root = roots[0].body.to_string();
    assert!(root.contains("#1 · P1 · Login failing"), "{root}");
    assert!(root.contains("P1 High") && root.contains("Commander") && root.contains(&format!("<@{L2}>")));
    assert!(root.contains("incident_ack") && root.contains("incident_resolve"));
    let ts = root_ts(&t);
    let draft = &posts[1];
    assert_eq!(draft.body["thread_ts"], ts.as_str());
    assert!(draft.body.to_string().contains("INVESTIGATING"));

    let reply = t.command(L2B, "ack").await;
    assert_eq!(reply, "Acknowledged #1.");
    t.drained(10).await;
    let posts = t.slack.ok_calls("chat.postMessage");
    assert_eq!(posts.len(), 3);
    assert_eq!(posts[2].body["thread_ts"], ts.as_str());
    assert!(
        posts[2].body["text"]
            .as_str()
            .unwrap()
            .contains(&format!("<@{L2B}> acknowledged #1"))
    );
    let updates = t.slack.ok_calls("chat.update");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].body["ts"], ts.as_str());
    assert_eq!(updates[0].body["channel"], CHANNEL);
    let updated = updates[0].body.to_string();
    assert!(
        updated.contains("Acknowledged by") && !updated.contains("incident_ack"),
        "{updated}"
    );

    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incidents WHERE state = 'acknowledged'")
            .await,
        1
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incident_events").await, 2);
    t.finish().await;
}

async fn full_lifecycle_records_a_timeline_and_postmortem(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    t.command(L1, "p2 Checkout slow").await;
    assert!(
        t.command(L2, "status rolled back <!channel> *now*")
            .await
            .contains("Posted the update")
    );
    assert!(t.command(L2, "sev p1").await.contains("now P1"));
    assert!(t.command(L2, "sev p1").await.contains("already P1"));
    assert!(
        t.command(L2, "assign <@U0LEAD|lead>")
            .await
            .contains("<@U0LEAD> now commands #1")
    );
    let list = t.command(L1, "list").await;
    assert!(
        list.contains("#1") && list.contains("Checkout slow") && list.contains("P1"),
        "{list}"
    );
    let reply = t.command(L2, "resolve #1 missing index on users(user_uuid)").await;
    assert!(reply.contains("Resolved #1"), "{reply}");
    t.drained(10).await;

    let posts = t.slack.ok_calls("chat.postMessage");
    let ts = root_ts(&t);
    // root, draft, status, sev, assign, resolved, postmortem, resolved draft
    assert_eq!(posts.len(), 8, "{:?}", fake_slack::summary(&posts));
    assert!(posts[1..].iter().all(|p| p.body["thread_ts"] == ts.as_str()));
    let status = posts[2].body.to_string();
    // Slack sends `@channel` as `<!channel>`; it is stored and shown as inert text.
    assert!(
        !status.contains("<!channel>") && status.contains("rolled back @channel"),
        "{status}"
    );
    assert!(!status.contains("*now*"), "formatting stays literal: {status}");
    let postmortem = posts[6].body.to_string();
    for part in [
        "Postmortem draft",
        "Impact",
        "Timeline",
        "Root cause",
        "Actions",
        "Declared P2",
        "Severity P2 → P1",
    ] {
        assert!(postmortem.contains(part), "postmortem lacks {part}: {postmortem}");
    }
    let resolved_draft = posts[7].body.to_string();
    assert!(
        resolved_draft.contains("RESOLVED") && resolved_draft.contains("missing index on users(user_uuid)"),
        "{resolved_draft}"
    );
    let last_update = t.slack.ok_calls("chat.update").last().unwrap().body.to_string();
    assert!(last_update.contains("Resolved by") && !last_update.contains("incident_resolve"));

    let timeline = t.command(L1, "timeline #1").await;
    for part in [
        "Declared P2",
        "rolled back",
        "Severity P2 → P1",
        "Commander →",
        "Resolved after",
    ] {
        assert!(timeline.contains(part), "timeline lacks {part}: {timeline}");
    }
    assert!(t.command(L1, "list").await.contains("No open incidents"));
    assert!(t.command(L2, "resolve #1").await.contains("already resolved"));
    t.finish().await;
}

async fn wrong_level_and_unknown_input_get_usage_and_change_nothing(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let r = t.command(NOBODY, "p1 I am not on the roster").await;
    assert!(r.contains("needs level l1; you have no role"), "{r}");
    t.command(L2, "p1 Real incident").await;
    let r = t.command(L1, "resolve").await;
    assert!(r.contains("needs level l2; you have l1"), "{r}");
    let r = t.command(L2, "frobnicate now").await;
    assert!(
        r.contains("Unknown subcommand `frobnicate`") && r.contains("Usage"),
        "{r}"
    );
    let r = t.command(L2, "sev p9").await;
    assert!(r.contains("`p9` is not a severity"), "{r}");
    let r = t.command(L2, "ack #999").await;
    assert!(r.contains("There is no incident #999"), "{r}");
    let r = t.command_in(L2, "COTHER", "ack").await;
    assert!(r.contains("no open incident in this channel"), "{r}");
    let r = t.command(L2, "ack #1'; DROP TABLE incidents; --").await;
    assert!(r.contains("is not an incident reference"), "{r}");

    let body = t.command_body(L2, CHANNEL, "now").replace("%2Fincident", "%2Fdeploy");
    let resp = t
        .post_signed("/slack/commands", "application/x-www-form-urlencoded", body, 0)
        .await;
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(v["text"].as_str().unwrap().contains("Unknown command `/deploy`"));

    assert_eq!(t.scalar("SELECT COUNT(*) FROM incidents").await, 1);
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incidents WHERE state = 'declared'")
            .await,
        1
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incident_events").await, 1);
    t.finish().await;
}

async fn group_members_get_the_groups_level(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |cfg| {
        cfg.roles.subjects.push((
            runbook_bot::slack::ids::RoleSubject::parse("S0ONCALL").unwrap(),
            runbook_bot::config::Level::L2,
        ));
    })
    .await;
    t.slack.set_group("S0ONCALL", &["U0GROUPIE"]);
    assert!(t.command("U0GROUPIE", "p1 via group").await.contains("Declared"));
    assert!(t.command("U0GROUPIE", "ack").await.contains("Acknowledged"));
    assert!(t.command("U0OUTSIDER", "list").await.contains("you have no role"));
    t.finish().await;
}

async fn buttons_follow_the_same_rules(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    t.command(L2, "p0 Database down").await;
    t.drained(10).await;

    // l1 cannot acknowledge with a button either.
    assert_eq!(t.click(L1, "incident_ack", "1").await.status(), 200);
    // Double click by on-call: exactly one acknowledgement.
    let (a, b) = tokio::join!(t.click(L2, "incident_ack", "1"), t.click(L2B, "incident_ack", "1"));
    assert_eq!(
        (a.status(), b.status()),
        (reqwest::StatusCode::OK, reqwest::StatusCode::OK)
    );
    t.drained(10).await;
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incident_events WHERE kind = 'acknowledged'")
            .await,
        1
    );
    let replies = t.slack.ok_calls("response_url");
    let texts: Vec<String> = replies
        .iter()
        .map(|c| c.body["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        texts.iter().any(|s| s.contains("needs level l2; you have l1")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|s| s == "Acknowledged #1."), "{texts:?}");
    assert!(texts.iter().any(|s| s.contains("already acknowledged")), "{texts:?}");

    // Resolve by button, then a click on the resolved incident changes nothing.
    t.click(L2, "incident_resolve", "1").await;
    t.drained(10).await;
    let posts_before = t.slack.ok_calls("chat.postMessage").len();
    let updates_before = t.slack.ok_calls("chat.update").len();
    for action in ["incident_ack", "incident_resolve"] {
        assert_eq!(t.click(L2, action, "1").await.status(), 200);
    }
    t.drained(10).await;
    assert_eq!(t.slack.ok_calls("chat.postMessage").len(), posts_before);
    assert_eq!(t.slack.ok_calls("chat.update").len(), updates_before);
    let last = t.slack.ok_calls("response_url").last().unwrap().body["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(last.contains("already resolved"), "{last}");
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incident_events WHERE kind = 'resolved'")
            .await,
        1
    );

    // Buttons that carry garbage are refused without effect.
    t.click(L2, "incident_resolve", "1 OR 1=1").await;
    t.click(L2, "some_other_action", "1").await;
    t.drained(10).await;
    let texts: Vec<String> = t
        .slack
        .ok_calls("response_url")
        .iter()
        .map(|c| c.body["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(texts.iter().any(|s| s.contains("no valid incident")));
    assert!(texts.iter().any(|s| s.contains("not one of ours")));
    t.finish().await;
}

async fn concurrent_commands_change_state_once(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    t.command(L2, "p1 Race").await;
    let replies = futures_join(&t, 6).await;
    let acked = replies.iter().filter(|r| r.as_str() == "Acknowledged #1.").count();
    assert_eq!(acked, 1, "{replies:?}");
    assert!(
        replies.iter().filter(|r| r.contains("already acknowledged")).count() == 5,
        "{replies:?}"
    );
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incident_events WHERE kind = 'acknowledged'")
            .await,
        1
    );
    t.finish().await;
}

/// `n` acks sent at the same time by two on-call engineers.
async fn futures_join(t: &TestApp, n: usize) -> Vec<String> {
    let acks = (0..n).map(|i| t.command(if i % 2 == 0 { L2 } else { L2B }, "ack"));
    futures_util::future::join_all(acks).await
}

both_backends!(
    declare_then_ack_threads_and_updates,
    full_lifecycle_records_a_timeline_and_postmortem,
    wrong_level_and_unknown_input_get_usage_and_change_nothing,
    group_members_get_the_groups_level,
    buttons_follow_the_same_rules,
    concurrent_commands_change_state_once,
);
