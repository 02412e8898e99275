//! Socket Mode end to end: the real app opens its connections through the
//! fake Web API's `apps.connections.open` and receives envelopes from the
//! fake Socket Mode server; what it acks, what it posts and what it stores
//! are checked, alongside the HTTP routes.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::both_backends;
use crate::support::*;

/// An app in Socket Mode (and HTTP), with its two connections up.
async fn spawn_socket(backend: Backend) -> (TestApp, FakeSocket) {
    let socket = FakeSocket::start().await;
    let slack = FakeSlack::start().await;
    slack.set_socket_url(&socket.url);
    let db = TestDb::new(backend).await;
    let mut config = config(&db.url, &slack);
    config.slack.app_token = Some(secrecy::SecretString::from("xapp-1-A0APP-test".to_string()));
    let t = TestApp::spawn_with(config, slack, db).await;
    socket.wait_open(2, 2, 10).await;
    (t, socket)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn command_envelope(t: &TestApp, envelope_id: &str, user: &str, text: &str) -> Value {
    json!({
        "type": "slash_commands", "envelope_id": envelope_id, "accepts_response_payload": true,
        "payload": {
            "token": "legacy-unused", "team_id": "T0TEAM", "team_domain": "acme",
            "channel_id": CHANNEL, "channel_name": "incidents", "user_id": user, "user_name": "someone",
            "command": "/incident", "text": text, "api_app_id": "A0APP", "is_enterprise_install": "false",
            "response_url": t.slack.response_url(&unique("cmd")), "trigger_id": unique("trigger"),
        }
    })
}

fn click_envelope(t: &TestApp, envelope_id: &str, user: &str, action_id: &str, value: &str) -> Value {
    let mut payload = block_actions(user, CHANNEL, action_id, value, &t.slack.response_url("click"));
    payload["trigger_id"] = json!(unique("trigger"));
    json!({"type": "interactive", "envelope_id": envelope_id, "accepts_response_payload": false, "payload": payload})
}

fn mention_envelope(envelope_id: &str, event_id: &str) -> Value {
    json!({
        "type": "events_api", "envelope_id": envelope_id, "accepts_response_payload": false,
        "payload": {
            "token": "x", "team_id": "T0TEAM", "api_app_id": "A0APP", "type": "event_callback",
            "event_id": event_id, "event_time": 1700000000,
            "event": {"type": "app_mention", "user": L2, "text": "<@U0BOT> help", "ts": "1700000000.000700",
                      "channel": CHANNEL, "event_ts": "1700000000.000700"}
        }
    })
}

/// Send an envelope and wait for its one ack; returns the ack frame.
async fn send_and_ack(socket: &FakeSocket, conn: usize, envelope: &Value) -> Value {
    let id = envelope["envelope_id"].as_str().unwrap();
    let sent = Instant::now();
    socket.send(conn, envelope);
    let ack = socket.wait_acks(id, 1, 3).await.remove(0);
    assert!(
        ack.at - sent < Duration::from_secs(3),
        "acked after {:?}",
        ack.at - sent
    );
    assert_eq!(ack.conn, conn, "acked on the connection it came on");
    ack.frame
}

fn roots(t: &TestApp, title: &str) -> usize {
    t.slack
        .ok_calls("chat.postMessage")
        .iter()
        .filter(|c| c.body["thread_ts"].is_null() && c.body.to_string().contains(title))
        .count()
}

async fn a_slash_command_is_acked_in_time_with_its_reply_and_acted_on_once(backend: Backend) {
    let (t, socket) = spawn_socket(backend).await;
    let opens = t.slack.ok_calls("apps.connections.open");
    assert_eq!(opens.len(), 2, "{:?}", fake_slack::summary(&t.slack.calls()));

    let envelope = command_envelope(&t, "env-declare", L2, "p1 Socket login failing");
    let ack = send_and_ack(&socket, 0, &envelope).await;
    assert_eq!(ack["payload"]["response_type"], "ephemeral", "{ack}");
    let reply = ack["payload"]["text"].as_str().unwrap();
    assert!(reply.contains("Declared incident *#1* (P1)"), "{reply}");

    t.drained(10).await;
    assert_eq!(roots(&t, "Socket login failing"), 1);
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incidents").await, 1);
    // The dispatcher audited it as it audits HTTP commands.
    let declared = t
        .scalar("SELECT COUNT(*) FROM incident_events WHERE kind = 'declared'")
        .await;
    assert_eq!(declared, 1);

    // HTTP keeps working alongside.
    let list = t.command(L2, "list").await;
    assert!(list.contains("Socket login failing"), "{list}");

    // Shutdown closes the sockets and does not reconnect.
    let started = Instant::now();
    let connects = socket.connects();
    t.finish().await;
    assert!(started.elapsed() < Duration::from_secs(10));
    socket.wait_open(0, connects, 3).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(socket.connects(), connects, "reconnected after shutdown");
}

async fn a_slow_command_is_acked_in_time_and_replies_later(backend: Backend) {
    let (t, socket) = spawn_socket(backend).await;
    let blocker = t.hold_writes("incidents").await;
    let ack = send_and_ack(
        &socket,
        0,
        &command_envelope(&t, "env-slow", L2, "p1 Slow over the socket"),
    )
    .await;
    assert!(
        ack["payload"]["text"].as_str().unwrap().contains("Working on it"),
        "{ack}"
    );
    blocker.rollback().await.unwrap();
    let calls = t
        .slack
        .wait_for(10, "late reply", |c| {
            c.iter().any(|c| c.method == "response_url" && c.ok)
        })
        .await;
    let late = calls.iter().find(|c| c.method == "response_url").unwrap();
    assert!(
        late.body.to_string().contains("Declared incident *#1*"),
        "{:?}",
        late.body
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incidents").await, 1);
    t.finish().await;
}

async fn one_envelope_delivered_twice_and_over_two_connections_is_acted_on_once(backend: Backend) {
    let (t, socket) = spawn_socket(backend).await;
    let envelope = command_envelope(&t, "env-twice", L2, "p2 Delivered thrice");
    socket.send(0, &envelope);
    socket.send(0, &envelope);
    socket.send(1, &envelope);
    let acks = socket.wait_acks("env-twice", 3, 5).await;
    let with_reply: Vec<_> = acks.iter().filter(|a| !a.frame["payload"].is_null()).collect();
    assert_eq!(
        with_reply.len(),
        1,
        "one delivery answers, the others are bare acks: {acks:?}"
    );

    // Slack's redelivery under another envelope id carries the same trigger_id.
    let mut again = envelope.clone();
    again["envelope_id"] = json!("env-twice-retry");
    socket.send(1, &again);
    let ack = socket.wait_acks("env-twice-retry", 1, 3).await;
    assert!(ack[0].frame["payload"].is_null(), "{:?}", ack[0].frame);

    // An event delivered over both connections, under two envelope ids.
    socket.send(0, &mention_envelope("env-mention-a", "Ev0SOCKET1"));
    socket.send(1, &mention_envelope("env-mention-b", "Ev0SOCKET1"));
    socket.wait_acks("env-mention-a", 1, 3).await;
    socket.wait_acks("env-mention-b", 1, 3).await;

    t.drained(10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incidents").await, 1);
    assert_eq!(roots(&t, "Delivered thrice"), 1);
    let mentions: Vec<_> = t
        .slack
        .ok_calls("chat.postMessage")
        .into_iter()
        .filter(|c| c.body["thread_ts"] == "1700000000.000700")
        .collect();
    assert_eq!(mentions.len(), 1, "{:?}", fake_slack::summary(&mentions));
    let metrics = t.metrics().await;
    assert!(
        metrics.contains(r#"runbook_bot_slack_requests_total{route="commands",outcome="duplicate"} 3"#),
        "{metrics}"
    );
    // Counted as over HTTP: once accepted, dispatched and timed once; the
    // HTTP request histogram has nothing from Socket Mode.
    for line in [
        r#"runbook_bot_slack_requests_total{route="commands",outcome="accepted"} 1"#,
        r#"runbook_bot_slack_requests_total{route="events",outcome="accepted"} 1"#,
        r#"runbook_bot_slack_requests_total{route="events",outcome="duplicate"} 1"#,
        r#"runbook_bot_commands_total{command="incident.declare",outcome="ok"} 1"#,
        r#"runbook_bot_command_duration_seconds_count{command="incident.declare",outcome="ok"} 1"#,
    ] {
        assert!(metrics.contains(&format!("{line}\n")), "lacks {line}\n{metrics}");
    }
    assert!(
        !metrics.contains(r#"runbook_bot_http_request_duration_seconds_count{route="/slack/"#),
        "{metrics}"
    );
    t.finish().await;
}

async fn two_replicas_on_one_store_act_on_an_envelope_once(backend: Backend) {
    let (t, socket) = spawn_socket(backend).await;
    // A second instance on the same state store, fake Slack and app token.
    let replica = runbook_bot::App::build_with_clock(t.config.clone(), t.clock.clone())
        .await
        .expect("replica builds");
    let open = socket.wait_open(4, 4, 10).await;
    let envelope = command_envelope(&t, "env-replicas", L2, "p1 Seen by every replica");
    for conn in &open {
        socket.send(*conn, &envelope);
    }
    let acks = socket.wait_acks("env-replicas", 4, 5).await;
    let answered = acks.iter().filter(|a| !a.frame["payload"].is_null()).count();
    assert_eq!(answered, 1, "{acks:?}");
    t.drained(10).await;
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incidents").await, 1);
    assert_eq!(roots(&t, "Seen by every replica"), 1);
    replica.shutdown().await;
    t.finish().await;
}

async fn reconnects_after_a_close_a_disconnect_message_and_a_failed_open(backend: Backend) {
    let (t, socket) = spawn_socket(backend).await;
    socket.close(0);
    let open = socket.wait_open(2, 3, 5).await;
    assert_eq!(open, [1, 2]);

    socket.disconnect(1, "refresh_requested");
    let open = socket.wait_open(2, 4, 5).await;
    assert_eq!(open, [2, 3]);
    // A warning is only a warning.
    socket.disconnect(2, "warning");

    // apps.connections.open failing is retried too.
    t.slack
        .script([Scripted::ServerError, Scripted::SlackError("internal_error")]);
    socket.close(3);
    let open = socket.wait_open(2, 5, 10).await;
    assert_eq!(open, [2, 4]);
    let failed = t
        .slack
        .calls()
        .iter()
        .filter(|c| c.method == "apps.connections.open" && !c.ok)
        .count();
    assert_eq!(failed, 2);

    let ack = send_and_ack(
        &socket,
        4,
        &command_envelope(&t, "env-after", L2, "p3 After reconnects"),
    )
    .await;
    assert!(ack["payload"]["text"].as_str().unwrap().contains("Declared"), "{ack}");
    let ack = send_and_ack(&socket, 2, &command_envelope(&t, "env-warned", L2, "list")).await;
    assert!(
        ack["payload"]["text"].as_str().unwrap().contains("After reconnects"),
        "{ack}"
    );
    t.finish().await;
}

async fn a_button_click_over_the_socket_acknowledges_the_incident(backend: Backend) {
    let (t, socket) = spawn_socket(backend).await;
    send_and_ack(
        &socket,
        0,
        &command_envelope(&t, "env-p0", L2, "p0 Clicked over the socket"),
    )
    .await;
    t.drained(10).await;

    let ack = send_and_ack(&socket, 1, &click_envelope(&t, "env-click", L2B, "incident_ack", "1")).await;
    assert_eq!(ack, json!({"envelope_id": "env-click"}));
    t.drained(10).await;
    let replies: Vec<String> = t
        .slack
        .ok_calls("response_url")
        .iter()
        .map(|c| c.body["text"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(replies.iter().any(|s| s == "Acknowledged #1."), "{replies:?}");
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incidents WHERE state = 'acknowledged'")
            .await,
        1
    );
    t.finish().await;
}

async fn garbage_frames_do_not_kill_the_connection(backend: Backend) {
    let (t, socket) = spawn_socket(backend).await;
    socket.send_raw(0, Message::text("not json at all"));
    socket.send_raw(0, Message::binary(vec![0u8, 159, 146, 150]));
    socket.send(
        0,
        &json!({"type": "slash_commands", "envelope_id": "env-bad", "payload": {"user_id": "U0"}}),
    );
    socket.send(
        0,
        &json!({"type": "shiny_new_thing", "envelope_id": "env-new", "payload": {}}),
    );
    let ack = socket.wait_acks("env-bad", 1, 3).await;
    assert_eq!(ack[0].frame, json!({"envelope_id": "env-bad"}));
    socket.wait_acks("env-new", 1, 3).await;

    // A command from someone with a malformed user id is a bad request: acked, not acted on.
    let bad_user = command_envelope(&t, "env-bad-user", "bob", "p1 Nope");
    assert_eq!(
        send_and_ack(&socket, 0, &bad_user).await,
        json!({"envelope_id": "env-bad-user"})
    );

    let ack = send_and_ack(&socket, 0, &command_envelope(&t, "env-good", L2, "p2 Still listening")).await;
    assert!(ack["payload"]["text"].as_str().unwrap().contains("Declared"), "{ack}");
    assert_eq!(socket.connects(), 2, "no reconnect was needed");
    assert_eq!(socket.open(), [0, 1]);
    let metrics = t.metrics().await;
    assert!(
        metrics.contains(r#"runbook_bot_socket_total{event="invalid_frame"} 5"#),
        "{metrics}"
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incidents").await, 1);
    t.finish().await;
}

/// A connection handles at most 64 envelopes at once; the 65th is left
/// unacknowledged for Slack to send again, and counted.
async fn envelopes_beyond_the_in_flight_cap_are_left_for_slack_to_resend(backend: Backend) {
    let (t, socket) = spawn_socket(backend).await;
    let blocker = t.hold_writes("incidents").await;
    for n in 0..65 {
        socket.send(
            0,
            &command_envelope(&t, &format!("env-cap-{n}"), L2, &format!("p3 Burst {n}")),
        );
    }
    // The first 64 are acked within Slack's 3 s ("Working on it"); the 65th never.
    for n in 0..64 {
        socket.wait_acks(&format!("env-cap-{n}"), 1, 5).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(socket.acks("env-cap-64").is_empty(), "the 65th was acked");
    blocker.rollback().await.unwrap();
    let metrics = t.metrics().await;
    assert!(
        metrics.contains("runbook_bot_socket_total{event=\"over_capacity\"} 1"),
        "{metrics}"
    );
    // Slack sends it again once the burst is over: acted on then.
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.scalar("SELECT COUNT(*) FROM incidents").await < 64 {
        assert!(Instant::now() < deadline, "the 64 acked commands did not all run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send_and_ack(&socket, 0, &command_envelope(&t, "env-cap-64", L2, "p3 Burst 64")).await;
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incidents").await, 65);
    t.finish().await;
}

both_backends!(
    envelopes_beyond_the_in_flight_cap_are_left_for_slack_to_resend,
    a_slash_command_is_acked_in_time_with_its_reply_and_acted_on_once,
    a_slow_command_is_acked_in_time_and_replies_later,
    one_envelope_delivered_twice_and_over_two_connections_is_acted_on_once,
    two_replicas_on_one_store_act_on_an_envelope_once,
    reconnects_after_a_close_a_disconnect_message_and_a_failed_open,
    a_button_click_over_the_socket_acknowledges_the_incident,
    garbage_frames_do_not_kill_the_connection,
);

/// The Socket Mode manifest is the HTTP one without URLs: same commands,
/// scopes and events, so the two cannot drift apart.
#[test]
fn the_socket_manifest_declares_what_the_http_manifest_does() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let (http, socket) = (read("slack-app-manifest.yaml"), read("slack-app-manifest-socket.yaml"));
    let body = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter(|l| !l.contains("url:") && !l.contains("socket_mode_enabled"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(body(&http), body(&socket));
    assert!(http.contains("socket_mode_enabled: false") && socket.contains("socket_mode_enabled: true"));
    assert!(!socket.contains("url:"), "Socket Mode needs no request URLs");
}
