//! Delivery through the outbox when Slack misbehaves: 429 with Retry-After,
//! 5xx, `ok:false` errors, restarts, and per-channel pacing.

use std::time::Duration;

use crate::both_backends;
use crate::support::*;

fn texts(calls: &[fake_slack::Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| c.body["text"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn rate_limited_messages_arrive_once_in_order_across_a_restart(backend: Backend) {
    let mut t = TestApp::spawn(backend).await;
    t.slack
        .script((0..5).map(|_| Scripted::RateLimited { retry_after_secs: 2 }));
    t.command(L2, "p1 Login failing").await;
    t.command(L2, "ack").await;
    t.command(L2, "status rolling back the deploy").await;

    // Restart while the outbox is still being rate limited.
    t.slack
        .wait_for(10, "two 429s", |c| c.iter().filter(|c| !c.ok).count() >= 2)
        .await;
    t.restart().await;
    t.drained(40).await;

    let calls = t.slack.calls();
    let failed: Vec<_> = calls.iter().filter(|c| !c.ok).collect();
    assert_eq!(failed.len(), 5, "{:#?}", fake_slack::summary(&calls));
    // Retry-After was honoured between every 429 and the next attempt.
    for pair in calls.windows(2).take(5) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}");
    }
    let posts = t.slack.ok_calls("chat.postMessage");
    let got = texts(&posts);
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(got[0].starts_with("P1 incident #1: Login failing"), "{got:#?}");
    assert!(got[1].contains("INVESTIGATING"));
    assert!(got[2].contains("acknowledged #1"));
    assert!(got[3].contains("rolling back the deploy"));
    let root_ts = posts[0].ts.clone().unwrap();
    assert!(posts[1..].iter().all(|p| p.body["thread_ts"] == root_ts.as_str()));
    // The root ends up showing the latest state; stale updates may be skipped, never reordered.
    let updates = t.slack.ok_calls("chat.update");
    assert!(!updates.is_empty() && updates.len() <= 2);
    assert!(
        updates
            .last()
            .unwrap()
            .body
            .to_string()
            .contains("rolling back the deploy")
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM outbox WHERE status = 'failed'").await, 0);
    t.finish().await;
}

async fn server_errors_and_retryable_slack_errors_are_retried(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    t.slack.script([
        Scripted::ServerError,
        Scripted::SlackError("internal_error"),
        Scripted::SlackError("ratelimited"),
    ]);
    t.command(L2, "p2 Flaky").await;
    t.drained(20).await;
    let posts = t.slack.ok_calls("chat.postMessage");
    assert_eq!(posts.len(), 2, "{:?}", fake_slack::summary(&t.slack.calls()));
    assert_eq!(t.slack.calls().len(), 5);
    let m = t.metrics().await;
    assert!(m.contains("runbook_bot_outbox_total{outcome=\"retry\"} 3\n"), "{m}");
    t.finish().await;
}

async fn permanent_errors_fail_visibly_without_retrying(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    t.slack.script([Scripted::SlackError("channel_not_found")]);
    t.command(L2, "p1 Nowhere to post").await;
    t.drained(10).await;

    // The root failed for good; its thread reply cannot be threaded and fails too.
    assert_eq!(t.scalar("SELECT COUNT(*) FROM outbox WHERE status = 'failed'").await, 2);
    let failed = t
        .slack
        .calls()
        .iter()
        .filter(|c| c.method == "chat.postMessage")
        .count();
    assert_eq!(failed, 1, "channel_not_found is not retried");
    // The person who declared is told, through their command's response_url.
    let notes = texts(&t.slack.ok_calls("response_url"));
    assert!(
        notes
            .iter()
            .any(|n| n.contains("channel_not_found") && n.contains("/invite")),
        "{notes:?}"
    );
    // And the incident's timeline says so.
    let timeline = t.command(L1, "timeline #1").await.replace('\u{200B}', "");
    assert!(
        timeline.contains("channel CINCIDENTS was not delivered: channel_not_found"),
        "{timeline}"
    );
    let m = t.metrics().await;
    assert!(m.contains("runbook_bot_outbox_total{outcome=\"failed\"} 2"), "{m}");
    t.finish().await;
}

async fn posts_are_paced_per_channel(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |cfg| {
        cfg.outbox.per_channel_per_second = 1.0;
        cfg.outbox.burst = 3;
    })
    .await;
    t.command(L2, "p3 Pacing").await;
    for n in 0..3 {
        t.command(L2, &format!("status update {n}")).await;
    }
    t.drained(20).await;
    let posts = t.slack.ok_calls("chat.postMessage");
    assert_eq!(posts.len(), 5);
    // Three go at once, then one a second.
    let span = posts[4].at.duration_since(posts[0].at);
    assert!(span >= Duration::from_millis(1800), "5 posts in {span:?}");
    assert!(texts(&posts)[4].contains("update 2"));
    t.finish().await;
}

async fn slow_commands_reply_later_through_response_url(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    // Hold the state store's writes so the command cannot finish inline.
    let blocker = t.hold_writes("incidents").await;
    let reply = t.command(L2, "p1 Slow path").await;
    assert!(reply.contains("Working on it"), "{reply}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    blocker.rollback().await.unwrap();
    t.slack
        .wait_for(10, "late reply", |c| {
            c.iter().any(|c| c.method == "response_url" && c.ok)
        })
        .await;
    let late = texts(&t.slack.ok_calls("response_url"));
    assert!(late[0].contains("Declared incident *#1*"), "{late:?}");
    t.finish().await;
}

/// A direct message carrying a secret waits out a 429 like any other, and
/// once delivered (or given up) the state store keeps no copy of it.
async fn sensitive_messages_are_delivered_and_leave_no_copy_behind(backend: Backend) {
    use runbook_bot::outbox::{Outgoing, enqueue, text_content};
    use runbook_bot::slack::ids::{ChannelId, UserId};
    let t = TestApp::spawn(backend).await;
    // In id order: the first DM is rate limited once, the second fails for good.
    t.slack.script([
        Scripted::RateLimited { retry_after_secs: 1 },
        Scripted::SlackError("channel_not_found"),
    ]);
    let dm = |user: &str, secret: &str| {
        Outgoing::direct(&UserId::parse(user).unwrap(), text_content(format!("link: {secret}"))).sensitive()
    };
    let plain = Outgoing::post(
        &ChannelId::parse(CHANNEL).unwrap(),
        None,
        text_content("not secret".into()),
    );
    let mut tx = t.state().store.begin().await.unwrap();
    let msgs = [dm(L2, "otp-42-delivered"), dm(L3, "otp-42-given-up"), plain];
    enqueue(&mut tx, &msgs, None, 0).await.unwrap();
    t.state().outbox.commit(tx).await.unwrap();
    t.drained(20).await;

    let delivered = t.slack.ok_calls("chat.postMessage");
    let dm = delivered
        .iter()
        .find(|c| c.body["channel"] == L2)
        .expect("the DM arrived");
    assert!(dm.body.to_string().contains("otp-42-delivered"));
    assert_eq!(t.scalar("SELECT COUNT(*) FROM outbox WHERE status = 'failed'").await, 1);
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM outbox WHERE payload LIKE '%otp-42%'")
            .await,
        0,
        "neither the delivered nor the failed secret is kept"
    );
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM outbox WHERE payload LIKE '%not secret%'")
            .await,
        1,
        "ordinary rows keep their payload"
    );
    t.finish().await;
}

/// Queue `n` automated posts (alerts) in the incident channel, top level,
/// or in `incident`'s thread.
async fn queue_alert_posts(t: &TestApp, n: usize, incident: Option<i64>) {
    use runbook_bot::outbox::{Outgoing, text_content};
    let channel = runbook_bot::slack::ids::ChannelId::parse(CHANNEL).unwrap();
    let posts: Vec<Outgoing> = (0..n)
        .map(|i| {
            let content = text_content(format!("alert post {i}"));
            match incident {
                Some(id) => Outgoing::thread(id, &channel, content),
                None => Outgoing::post(&channel, None, content),
            }
            .automated()
        })
        .collect();
    queue(t, &posts).await;
}

/// Queue `msgs` as a command would: enqueued, committed, the outbox woken.
async fn queue(t: &TestApp, msgs: &[runbook_bot::outbox::Outgoing]) {
    use runbook_bot::clock::Clock;
    let mut tx = t.state().store.begin().await.unwrap();
    runbook_bot::outbox::enqueue(&mut tx, msgs, None, t.clock.now_ms())
        .await
        .unwrap();
    t.state().outbox.commit(tx).await.unwrap();
}

/// Index of the first post whose text contains `needle`.
fn position(t: &TestApp, needle: &str) -> Option<usize> {
    texts(&t.slack.ok_calls("chat.postMessage"))
        .iter()
        .position(|x| x.contains(needle))
}

async fn a_persons_incident_goes_before_queued_alert_posts(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |cfg| {
        cfg.outbox.per_channel_per_second = 2.0;
        cfg.outbox.burst = 1;
    })
    .await;
    queue_alert_posts(&t, 30, None).await;
    t.command(L2, "p1 Checkout down").await;
    t.slack
        .wait_for(10, "the person's incident", |c| {
            c.iter().any(|c| c.ok && c.body.to_string().contains("Checkout down"))
        })
        .await;
    let root = position(&t, "Checkout down").unwrap();
    assert!(root <= 3, "the root went out after {root} of 30 queued alert posts");
    t.finish().await;
}

/// A storm in one channel (more queued heads than one look at the queue
/// takes) does not hold up another channel's posts.
async fn a_storm_in_one_channel_does_not_hold_up_another(backend: Backend) {
    use runbook_bot::outbox::{Outgoing, text_content};
    let t = TestApp::spawn_configured(backend, |cfg| {
        cfg.outbox.per_channel_per_second = 2.0;
        cfg.outbox.burst = 1;
    })
    .await;
    // Alert posts each keyed by their alert: every one heads its own queue.
    let channel = runbook_bot::slack::ids::ChannelId::parse(CHANNEL).unwrap();
    let storm: Vec<Outgoing> = (0..100)
        .map(|i| {
            let content = text_content(format!("alert post {i}"));
            Outgoing::post_keyed(&channel, None, Some(format!("alert:{i}")), content).automated()
        })
        .collect();
    queue(&t, &storm).await;
    let other = runbook_bot::slack::ids::ChannelId::parse("C0OTHER").unwrap();
    let post = Outgoing::post(&other, None, text_content("elsewhere".into())).automated();
    queue(&t, &[post]).await;
    t.slack
        .wait_for(3, "the other channel's post", |c| {
            c.iter().any(|c| c.ok && c.body.to_string().contains("elsewhere"))
        })
        .await;
    t.finish().await;
}

async fn a_thread_keeps_its_order_and_a_person_behind_an_alert_post_is_not_held_up(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |cfg| {
        cfg.outbox.per_channel_per_second = 2.0;
        cfg.outbox.burst = 1;
    })
    .await;
    t.command(L2, "p2 Search slow").await;
    t.drained(10).await;
    // A storm in the channel, and one alert post in the incident's thread,
    // then a person's status update in that thread.
    queue_alert_posts(&t, 30, None).await;
    queue_alert_posts(&t, 1, Some(1)).await;
    t.command(L2, "status rolling back").await;
    t.slack
        .wait_for(10, "the status update", |c| {
            c.iter().any(|c| c.ok && c.body.to_string().contains("rolling back"))
        })
        .await;
    let (alert, status) = (
        position(&t, "alert post 0").unwrap(),
        position(&t, "rolling back").unwrap(),
    );
    let in_thread = texts(&t.slack.ok_calls("chat.postMessage"))
        .iter()
        .position(|x| x == "alert post 0")
        .unwrap();
    assert!(
        alert <= in_thread && in_thread < status,
        "thread order kept: {in_thread} before {status}"
    );
    let storm_before = texts(&t.slack.ok_calls("chat.postMessage"))[..status]
        .iter()
        .filter(|x| x.starts_with("alert post"))
        .count();
    assert!(
        storm_before <= 4,
        "{storm_before} alert posts went before the person's update"
    );
    t.finish().await;
}

both_backends!(
    a_storm_in_one_channel_does_not_hold_up_another,
    a_persons_incident_goes_before_queued_alert_posts,
    a_thread_keeps_its_order_and_a_person_behind_an_alert_post_is_not_held_up,
    rate_limited_messages_arrive_once_in_order_across_a_restart,
    server_errors_and_retryable_slack_errors_are_retried,
    permanent_errors_fail_visibly_without_retrying,
    posts_are_paced_per_channel,
    slow_commands_reply_later_through_response_url,
    sensitive_messages_are_delivered_and_leave_no_copy_behind,
);
