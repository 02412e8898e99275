//! The HTTP edge: signatures, body limits, malformed payloads, Events API.

use crate::both_backends;
use crate::support::*;

async fn nothing_happened(t: &TestApp) {
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        t.slack.calls().is_empty(),
        "Slack was called: {:?}",
        fake_slack::summary(&t.slack.calls())
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incidents").await, 0);
    assert_eq!(t.scalar("SELECT COUNT(*) FROM outbox").await, 0);
}

async fn forged_stale_and_unsigned_requests_get_401_and_change_nothing(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let body = t.command_body(L2, CHANNEL, "p1 Login failing");
    let url = format!("{}/slack/commands", t.addr);
    let form = "application/x-www-form-urlencoded";

    // Forged: signed with another secret.
    let ts = t.now_secs();
    let forged = runbook_bot::slack::verify::sign(b"not-the-secret", ts, body.as_bytes());
    let r = t
        .post_with_slack_headers(&url, form, Some(ts), Some(forged), body.clone())
        .await;
    assert_eq!(r.status(), 401);

    // Signed correctly but six minutes old, or six minutes in the future.
    assert_eq!(
        t.post_signed("/slack/commands", form, body.clone(), -360)
            .await
            .status(),
        401
    );
    assert_eq!(
        t.post_signed("/slack/commands", form, body.clone(), 360).await.status(),
        401
    );

    // Missing headers.
    let sig = runbook_bot::slack::verify::sign(SECRET.as_bytes(), ts, body.as_bytes());
    for (ts, sig) in [(None, None), (Some(ts), None), (None, Some(sig.clone()))] {
        let r = t.post_with_slack_headers(&url, form, ts, sig, body.clone()).await;
        assert_eq!(r.status(), 401);
    }

    // A valid signature over a different body (tampered in transit).
    let tampered = body.replace("Login", "Logout");
    let r = t
        .post_with_slack_headers(&url, form, Some(ts), Some(sig), tampered)
        .await;
    assert_eq!(r.status(), 401);

    // The other Slack routes verify first too.
    for path in ["/slack/interactions", "/slack/events"] {
        let r = t
            .http
            .post(format!("{}{path}", t.addr))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    nothing_happened(&t).await;
    let metrics = t.metrics().await;
    assert!(
        metrics.contains(r#"runbook_bot_slack_requests_total{route="commands",outcome="mismatch"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"runbook_bot_slack_requests_total{route="commands",outcome="stale"} 2"#),
        "{metrics}"
    );
    t.finish().await;
}

async fn oversized_and_malformed_bodies_are_rejected(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let form = "application/x-www-form-urlencoded";
    let big = format!("text={}", "a".repeat(1024 * 1024 + 1));
    assert_eq!(t.post_signed("/slack/commands", form, big, 0).await.status(), 413);

    let r = t.post_signed("/slack/commands", form, "user_id=U1&%zz".into(), 0).await;
    assert_eq!(r.status(), 400);
    let r = t.post_signed("/slack/commands", form, "text=p1+x".into(), 0).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("slash command"));
    let bad_user = t.command_body("bob'; --", CHANNEL, "list");
    assert_eq!(t.post_signed("/slack/commands", form, bad_user, 0).await.status(), 400);

    let r = t
        .post_signed("/slack/interactions", form, "nothing=here".into(), 0)
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("payload"));
    let r = t
        .post_signed("/slack/interactions", form, "payload=%7Bnot+json".into(), 0)
        .await;
    assert_eq!(r.status(), 400);
    let r = t
        .post_signed("/slack/events", "application/json", "{\"type\":".into(), 0)
        .await;
    assert_eq!(r.status(), 400);
    let r = t
        .post_signed("/slack/events", "application/json", "{\"type\":\"nonsense\"}".into(), 0)
        .await;
    assert_eq!(r.status(), 400);
    nothing_happened(&t).await;
    t.finish().await;
}

async fn ssl_check_and_url_verification_answer(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let r = t
        .post_signed(
            "/slack/commands",
            "application/x-www-form-urlencoded",
            "ssl_check=1&token=x".into(),
            0,
        )
        .await;
    assert_eq!(r.status(), 200);
    let body =
        r#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let r = t.post_signed("/slack/events", "application/json", body.into(), 0).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["challenge"], "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
    nothing_happened(&t).await;
    t.finish().await;
}

async fn event_retries_act_once(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    let event = serde_json::json!({
        "token": "x", "team_id": "T0TEAM", "api_app_id": "A0APP", "type": "event_callback",
        "event_id": "Ev0MENTION1", "event_time": 1700000000,
        "event": {"type": "app_mention", "user": L2, "text": "<@U0BOT> help", "ts": "1700000000.000500",
                  "channel": CHANNEL, "event_ts": "1700000000.000500"}
    })
    .to_string();
    for retry in 0..3 {
        let ts = t.now_secs();
        let sig = runbook_bot::slack::verify::sign(SECRET.as_bytes(), ts, event.as_bytes());
        let mut req = t
            .http
            .post(format!("{}/slack/events", t.addr))
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig)
            .body(event.clone());
        if retry > 0 {
            req = req
                .header("x-slack-retry-num", retry.to_string())
                .header("x-slack-retry-reason", "http_timeout");
        }
        assert_eq!(req.send().await.unwrap().status(), 200);
    }
    t.drained(10).await;
    let posts = t.slack.ok_calls("chat.postMessage");
    assert_eq!(posts.len(), 1, "{:?}", fake_slack::summary(&posts));
    assert_eq!(posts[0].body["thread_ts"], "1700000000.000500");
    assert_eq!(t.scalar("SELECT COUNT(*) FROM slack_events").await, 1);

    // A day later the id is forgotten by the housekeeping worker, which
    // sweeps when the bot starts (Slack stopped retrying long before).
    let mut t = t;
    t.clock.advance(25 * 3_600_000);
    t.restart().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while t.scalar("SELECT COUNT(*) FROM slack_events").await > 0 {
        assert!(std::time::Instant::now() < deadline, "the janitor did not run");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    t.finish().await;
}

async fn health_readiness_and_metrics(backend: Backend) {
    let t = TestApp::spawn(backend).await;
    for (path, want) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let r = t.http.get(format!("{}{path}", t.addr)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap().trim(), want);
    }
    let m = t.metrics().await;
    assert!(m.contains("runbook_bot_outbox_pending 0"), "{m}");
    // Readiness follows the state store, as of the next background check.
    t.state().store.close().await;
    let deadline = std::time::Instant::now() + 3 * t.config.http.readiness_check;
    loop {
        let r = t.http.get(format!("{}/readyz", t.addr)).send().await.unwrap();
        if r.status() == 503 {
            assert_eq!(r.text().await.unwrap(), "state store unreachable\n");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still ready with the store closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(t.metrics().await.contains("runbook_bot_outbox_pending -1"));
    t.finish().await;
}

both_backends!(
    forged_stale_and_unsigned_requests_get_401_and_change_nothing,
    oversized_and_malformed_bodies_are_rejected,
    ssl_check_and_url_verification_answer,
    event_retries_act_once,
    health_readiness_and_metrics,
);
