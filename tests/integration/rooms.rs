//! Dedicated incident channels end to end: the real app against the fake
//! Slack's conversations.create / invite / setTopic / archive and
//! bookmarks.add, on both backends; asserted at the fake and in the store.

use serde_json::{Value, json};

use crate::both_backends;
use crate::support::*;

const ROOM: &str = "C0ROOM1";
const RESPONDER: &str = "U0RESPONDER";
const GROUP: &str = "S0ONCALL";
const HOUR_MS: i64 = 3_600_000;

/// An app whose P0/P1 incidents get rooms, with responders and bookmarks.
async fn spawn_rooms(backend: Backend) -> TestApp {
    let t = TestApp::spawn_configured(backend, room_config).await;
    t.slack.set_group(GROUP, &["U0GROUPIE1", "U0GROUPIE2"]);
    t
}

fn room_config(c: &mut runbook_bot::config::Config) {
    use runbook_bot::severity::Severity;
    use runbook_bot::slack::ids::RoleSubject;
    c.incidents.dedicated_channel = vec![Severity::P0, Severity::P1];
    c.incidents.responders[1] = vec![
        RoleSubject::parse(RESPONDER).unwrap(),
        RoleSubject::parse(GROUP).unwrap(),
    ];
    c.incidents.runbook_url = Some("https://runbooks.example.com/incidents".into());
    c.incidents.status_page_url = Some("https://status.example.com/drafts".into());
}

/// Everyone invited to `room`, as the fake Slack keeps it.
fn invited(t: &TestApp, room: &str) -> Vec<String> {
    t.slack.members(room)
}

fn posts_in(t: &TestApp, channel: &str) -> Vec<String> {
    t.slack
        .ok_calls("chat.postMessage")
        .iter()
        .filter(|c| c.body["channel"] == channel)
        .map(|c| c.body.to_string())
        .collect()
}

async fn room_of(t: &TestApp) -> Option<String> {
    sqlx::query_scalar("SELECT room_channel FROM incidents WHERE id = 1")
        .fetch_one(&t.state().store.pool)
        .await
        .unwrap()
}

async fn a_p1_gets_a_room_with_invitees_topic_and_bookmarks(backend: Backend) {
    let t = spawn_rooms(backend).await;
    let reply = t.command(L2, "p1 Checkout 502s").await;
    assert!(reply.contains("its own channel"), "{reply}");
    t.slack
        .wait_for(10, "the room's bookmarks", |c| {
            c.iter().filter(|c| c.ok && c.method == "bookmarks.add").count() == 2
        })
        .await;
    t.drained(10).await;

    let created = t.slack.ok_calls("conversations.create");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].body["name"], "inc-1-checkout-502s");
    assert_eq!(room_of(&t).await.as_deref(), Some(ROOM));
    assert_eq!(
        invited(&t, ROOM),
        ["U0GROUPIE1", "U0GROUPIE2", L2, RESPONDER],
        "declarer and commander, the P1 responders and the group's members"
    );
    let topic = &t.slack.ok_calls("conversations.setTopic")[0].body;
    assert_eq!(topic["channel"], ROOM);
    let topic = topic["topic"].as_str().unwrap();
    assert!(
        topic.contains("P1") && topic.contains("Investigating") && topic.contains(L2),
        "{topic}"
    );
    let links: Vec<_> = t
        .slack
        .ok_calls("bookmarks.add")
        .iter()
        .map(|c| (c.body["channel_id"].clone(), c.body["link"].clone()))
        .collect();
    assert_eq!(links[0], (json!(ROOM), json!("https://runbooks.example.com/incidents")));
    assert_eq!(links[1].1, json!("https://status.example.com/drafts"));
    // #incidents keeps the index: its root links the room, once it exists.
    let update = t.slack.ok_calls("chat.update").last().unwrap().body.to_string();
    assert!(update.contains(&format!("<#{ROOM}>")), "{update}");
    assert!(posts_in(&t, ROOM)[0].contains("This channel is for incident *#1*"));

    // Updates go to the room, the topic follows, the root in #incidents too.
    t.command_in(L2B, ROOM, "ack").await;
    t.command_in(L2, ROOM, "status rolled back the deploy").await;
    t.drained(10).await;
    let room_posts = posts_in(&t, ROOM);
    assert!(
        room_posts.iter().any(|p| p.contains("acknowledged #1")),
        "{room_posts:?}"
    );
    assert!(room_posts.iter().any(|p| p.contains("rolled back the deploy")));
    let thread_replies = t
        .slack
        .ok_calls("chat.postMessage")
        .iter()
        .filter(|c| c.body["channel"] == CHANNEL && !c.body["thread_ts"].is_null())
        .count();
    assert_eq!(thread_replies, 1, "only the status-page draft threads in #incidents");
    let topics = t.slack.ok_calls("conversations.setTopic");
    assert!(
        topics.last().unwrap().body["topic"]
            .as_str()
            .unwrap()
            .contains("Acknowledged")
    );
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM outbox WHERE status NOT IN ('sent', 'superseded')")
            .await,
        0
    );
    t.finish().await;
}

async fn a_p3_stays_a_thread(backend: Backend) {
    let t = spawn_rooms(backend).await;
    let reply = t.command(L2, "p3 Typo on the pricing page").await;
    assert!(reply.contains("Updates thread under its message"), "{reply}");
    t.command(L2, "status fixed in the CMS").await;
    t.command(L2, "resolve").await;
    t.drained(10).await;
    let calls = t.slack.calls();
    assert!(
        calls
            .iter()
            .all(|c| !c.method.starts_with("conversations.") && c.method != "bookmarks.add"),
        "{:?}",
        fake_slack::summary(&calls)
    );
    assert!(
        t.slack
            .ok_calls("chat.postMessage")
            .iter()
            .all(|c| c.body["channel"] == CHANNEL)
    );
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incidents WHERE room_state IS NULL AND archive_at IS NULL")
            .await,
        1
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM outbox WHERE kind = 'room'").await, 0);
    t.finish().await;
}

async fn commands_in_the_room_need_no_id(backend: Backend) {
    let t = spawn_rooms(backend).await;
    t.command(L2, "p3 Something else, in #incidents").await;
    t.command(L2, "p1 Login failing").await;
    t.drained(10).await;
    let room = sqlx::query_scalar::<_, String>("SELECT room_channel FROM incidents WHERE id = 2")
        .fetch_one(&t.state().store.pool)
        .await
        .unwrap();
    assert_eq!(t.command_in(L2B, &room, "ack").await, "Acknowledged #2.");
    assert!(t.command_in(L2, &room, "sev p0").await.contains("#2 is now P0"));
    assert!(t.command_in(L2, &room, "timeline").await.contains("Login failing"));
    // Elsewhere, without #id, there is still nothing to act on.
    let lost = t.command_in(L2, "C0ELSEWHERE", "ack").await;
    assert!(lost.contains("no open incident in this channel"), "{lost}");
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incidents WHERE id = 1 AND state = 'declared'")
            .await,
        1,
        "the thread incident was not touched"
    );
    t.finish().await;
}

/// A signed Events API callback.
async fn send_event(t: &TestApp, event_id: &str, event: Value) {
    let body = json!({
        "token": "x", "team_id": "T0TEAM", "api_app_id": "A0APP", "type": "event_callback",
        "event_id": event_id, "event_time": 1_700_000_000, "event": event,
    })
    .to_string();
    let r = t.post_signed("/slack/events", "application/json", body, 0).await;
    assert_eq!(r.status(), 200, "event {event_id}");
}

fn pin(room: &str, ts: &str, text: &str) -> Value {
    json!({
        "type": "pin_added", "user": L2, "channel_id": room, "event_ts": "1700000100.000100",
        "item": {"type": "message", "channel": room, "created": 1_700_000_100, "created_by": L2,
                 "message": {"type": "message", "user": L2B, "text": text, "ts": ts}}
    })
}

async fn a_pinned_message_reaches_the_postmortem_once(backend: Backend) {
    let t = spawn_rooms(backend).await;
    t.command(L2, "p1 Checkout 502s").await;
    t.drained(10).await;
    let msg_ts = "1700000050.000100";
    let event = pin(ROOM, msg_ts, "Found it: the pool is exhausted by the report job");
    send_event(&t, "Ev0PIN1", event.clone()).await;
    send_event(&t, "Ev0PIN1", event).await; // Slack's retry of the same event
    // A second, different event for the same message: the reaction.
    t.slack
        .add_message(ROOM, msg_ts, "Found it: the pool is exhausted by the report job");
    let reaction = json!({
        "type": "reaction_added", "user": L2B, "reaction": "pushpin", "item_user": L2B,
        "item": {"type": "message", "channel": ROOM, "ts": msg_ts}, "event_ts": "1700000101.000100"
    });
    send_event(&t, "Ev0REACT1", reaction.clone()).await;
    // A reaction with the emoji on another message, whose text the bot reads
    // once: Slack's redelivery of the event costs no second call.
    t.slack.add_message(ROOM, "1700000060.000100", "Report job paused");
    let mut other = reaction.clone();
    other["item"]["ts"] = json!("1700000060.000100");
    send_event(&t, "Ev0REACT2", other.clone()).await;
    send_event(&t, "Ev0REACT2", other).await;
    let fetched: Vec<_> = t
        .slack
        .calls()
        .into_iter()
        .filter(|c| c.method == "reactions.get" || c.method == "conversations.history")
        .collect();
    assert_eq!(fetched.len(), 1, "only the message not yet on the timeline, once");
    assert_eq!(fetched[0].body["timestamp"], "1700000060.000100");
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incident_pins").await, 2);
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incident_events WHERE kind = 'pinned'")
            .await,
        2
    );

    t.command_in(L2, ROOM, "resolve pool sized for the report job").await;
    t.drained(10).await;
    let postmortem = posts_in(&t, ROOM)
        .into_iter()
        .find(|p| p.contains("Postmortem draft"))
        .expect("the postmortem is posted in the room");
    assert_eq!(
        postmortem.matches("the pool is exhausted by the report job").count(),
        1,
        "{postmortem}"
    );
    assert!(postmortem.contains("Report job paused"), "{postmortem}");
    t.finish().await;
}

/// In a thread incident, a pin of a reply in its thread counts too; a pin
/// anywhere else is not an incident's business.
async fn a_pin_in_an_incident_thread_reaches_its_timeline(backend: Backend) {
    let t = spawn_rooms(backend).await;
    t.command(L2, "p3 Cache misses").await;
    t.drained(10).await;
    let root_ts = t.slack.ok_calls("chat.postMessage")[0].ts.clone().unwrap();
    let mut in_thread = pin(CHANNEL, "1700000080.000100", "TTL was set to 0 by the last deploy");
    in_thread["item"]["message"]["thread_ts"] = json!(root_ts);
    send_event(&t, "Ev0THREADPIN", in_thread).await;
    send_event(&t, "Ev0ELSEWHERE", pin("C0RANDOM", "1700000081.000100", "lunch?")).await;
    let mut loose = pin(CHANNEL, "1700000082.000100", "not in any thread");
    loose["item"]["message"]["thread_ts"] = json!("1600000000.000100");
    send_event(&t, "Ev0LOOSE", loose).await;
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incident_pins").await, 1);
    let timeline = t.command(L1, "timeline #1").await;
    assert!(
        timeline.contains("TTL was set to 0") && !timeline.contains("lunch"),
        "{timeline}"
    );
    assert!(
        t.slack
            .calls()
            .iter()
            .all(|c| c.method != "conversations.history" && c.method != "reactions.get"),
        "pins carry their text"
    );
    t.finish().await;
}

/// Over Socket Mode the same pin, sent twice (two envelopes of one event,
/// on two connections), is added once.
async fn a_pin_over_socket_mode_is_added_once(backend: Backend) {
    let socket = FakeSocket::start().await;
    let slack = FakeSlack::start().await;
    slack.set_socket_url(&socket.url);
    let db = TestDb::new(backend).await;
    let mut config = config(&db.url, &slack);
    room_config(&mut config);
    config.slack.app_token = Some(secrecy::SecretString::from("xapp-1-A0APP-test".to_string()));
    let t = TestApp::spawn_with(config, slack, db).await;
    let conns = socket.wait_open(2, 2, 10).await;
    t.command(L2, "p1 Checkout 502s").await;
    t.drained(10).await;
    let envelope = |id: &str| {
        json!({
            "type": "events_api", "envelope_id": id, "accepts_response_payload": false,
            "payload": {
                "token": "x", "team_id": "T0TEAM", "api_app_id": "A0APP", "type": "event_callback",
                "event_id": "Ev0SOCKETPIN", "event_time": 1_700_000_000,
                "event": pin(ROOM, "1700000070.000100", "Socket pin: disk full on db-2"),
            }
        })
    };
    socket.send(conns[0], &envelope("env-pin-1"));
    socket.wait_acks("env-pin-1", 1, 5).await;
    socket.send(conns[1], &envelope("env-pin-2"));
    socket.wait_acks("env-pin-2", 1, 5).await;
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incident_pins").await, 1);
    let timeline = t.command_in(L1, ROOM, "timeline").await;
    assert_eq!(timeline.matches("disk full on db-2").count(), 1, "{timeline}");
    t.finish().await;
}

async fn resolve_archives_after_the_delay_across_a_restart(backend: Backend) {
    let mut t = spawn_rooms(backend).await;
    t.command(L2, "p1 Checkout 502s").await;
    t.drained(10).await;
    let reply = t.command_in(L2, ROOM, "resolve").await;
    assert!(reply.contains("archive in 24 h"), "{reply}");
    t.drained(10).await;
    let topic = t
        .slack
        .ok_calls("conversations.setTopic")
        .last()
        .unwrap()
        .body
        .to_string();
    assert!(topic.contains("Resolved"), "{topic}");
    let root = t.slack.ok_calls("chat.update").last().unwrap().body.to_string();
    assert!(
        root.contains("Resolved by") && root.contains(&format!("<#{ROOM}>")),
        "{root}"
    );

    t.restart().await;
    t.clock.advance(23 * HOUR_MS);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        t.slack.ok_calls("conversations.archive").is_empty(),
        "not before the delay"
    );
    t.clock.advance(HOUR_MS + 1000);
    let calls = t
        .slack
        .wait_for(10, "the archive", |c| {
            c.iter().any(|c| c.ok && c.method == "conversations.archive")
        })
        .await;
    assert_eq!(calls.iter().filter(|c| c.method == "conversations.archive").count(), 1);
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incidents WHERE archive_at IS NOT NULL")
            .await,
        0
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(t.slack.ok_calls("conversations.archive").len(), 1, "archived once");
    t.drained(10).await;
    let root = t.slack.ok_calls("chat.update").last().unwrap().body.to_string();
    assert!(root.contains("(archived)"), "{root}");

    // Reopened after the archive, it goes on in its thread in #incidents.
    let reply = t.command(L2, "reopen #1").await;
    assert!(reply.contains("was archived already"), "{reply}");
    t.command(L2, "status back again").await;
    t.drained(10).await;
    let update = t.slack.ok_calls("chat.postMessage").last().unwrap().body.clone();
    assert_eq!(update["channel"], CHANNEL);
    assert!(!update["thread_ts"].is_null() && update.to_string().contains("back again"));
    t.finish().await;
}

async fn reopen_cancels_the_archive(backend: Backend) {
    let t = spawn_rooms(backend).await;
    t.command(L2, "p1 Checkout 502s").await;
    t.drained(10).await;
    t.command_in(L2, ROOM, "resolve").await;
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incidents WHERE archive_at IS NOT NULL")
            .await,
        1
    );
    assert_eq!(t.command_in(L2, ROOM, "reopen").await, "Reopened #1.");
    assert!(t.command_in(L2, ROOM, "reopen").await.contains("not resolved"));
    assert!(
        t.command_in(L1, ROOM, "reopen").await.contains("l2"),
        "reopen needs the level of resolve"
    );
    t.clock.advance(25 * HOUR_MS);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    t.drained(10).await;
    assert!(t.slack.ok_calls("conversations.archive").is_empty());
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incidents WHERE state = 'declared' AND archive_at IS NULL")
            .await,
        1
    );
    assert!(posts_in(&t, ROOM).iter().any(|p| p.contains("reopened #1")));

    // Resolved again and due: the archive is queued, and Slack rate limits
    // it. A reopen now still keeps the room.
    t.slack
        .script_method("conversations.archive", [Scripted::RateLimited { retry_after_secs: 2 }]);
    t.command_in(L2, ROOM, "resolve").await;
    t.clock.advance(25 * HOUR_MS);
    t.slack
        .wait_for(10, "the queued archive's first try", |c| {
            c.iter().any(|c| c.method == "conversations.archive")
        })
        .await;
    assert_eq!(t.command_in(L2, ROOM, "reopen").await, "Reopened #1.");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    t.drained(10).await;
    assert!(
        t.slack.ok_calls("conversations.archive").is_empty(),
        "reopened: not archived"
    );
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incidents WHERE id = 1 AND room_state = 'made'")
            .await,
        1
    );
    t.command_in(L2, ROOM, "status still in the room").await;
    t.drained(10).await;
    assert!(posts_in(&t, ROOM).iter().any(|p| p.contains("still in the room")));
    // Reopened and resolved again while an old archive waits on Slack: that
    // one does not jump the new resolve's delay.
    t.slack
        .script_method("conversations.archive", [Scripted::RateLimited { retry_after_secs: 2 }]);
    t.command_in(L2, ROOM, "resolve").await;
    t.clock.advance(25 * HOUR_MS);
    t.slack
        .wait_for(10, "the second queued archive's first try", |c| {
            c.iter().filter(|c| c.method == "conversations.archive").count() == 2
        })
        .await;
    assert_eq!(t.command_in(L2, ROOM, "reopen").await, "Reopened #1.");
    t.command_in(L2, ROOM, "resolve").await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    t.drained(10).await;
    assert!(
        t.slack.ok_calls("conversations.archive").is_empty(),
        "not before the new resolve's delay"
    );
    // A thread incident reopens too.
    t.command(L2, "p3 Small thing").await;
    t.command(L2, "resolve #2").await;
    assert_eq!(t.command(L2, "reopen #2").await, "Reopened #2.");
    t.finish().await;
}

async fn name_taken_gets_a_suffix(backend: Backend) {
    let t = spawn_rooms(backend).await;
    t.slack.add_channel("inc-1-checkout-502s", "C0OLD1");
    t.slack.add_channel("inc-1-checkout-502s-2", "C0OLD2");
    t.command(L2, "p1 Checkout 502s").await;
    t.drained(10).await;
    let tried: Vec<_> = t
        .slack
        .calls()
        .into_iter()
        .filter(|c| c.method == "conversations.create")
        .map(|c| (c.body["name"].as_str().unwrap().to_string(), c.ok))
        .collect();
    assert_eq!(
        tried,
        [
            ("inc-1-checkout-502s".to_string(), false),
            ("inc-1-checkout-502s-2".to_string(), false),
            ("inc-1-checkout-502s-3".to_string(), true)
        ]
    );
    let room = room_of(&t).await.unwrap();
    assert_eq!(t.slack.channels()["inc-1-checkout-502s-3"], room);
    assert!(!invited(&t, &room).is_empty());

    // Every name up to -9 taken: bounded, and the incident stays a thread.
    for n in 1..=9 {
        let name = if n == 1 {
            "inc-2-busy".to_string()
        } else {
            format!("inc-2-busy-{n}")
        };
        t.slack.add_channel(&name, &format!("C0BUSY{n}"));
    }
    t.command(L2, "p1 Busy").await;
    t.drained(10).await;
    let tries = t
        .slack
        .calls()
        .iter()
        .filter(|c| c.method == "conversations.create" && c.body["name"].as_str().unwrap().starts_with("inc-2-"))
        .count();
    assert_eq!(tries, 9);
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incidents WHERE id = 2 AND room_state = 'failed'")
            .await,
        1
    );
    let told = t.slack.ok_calls("response_url");
    assert!(
        told.iter()
            .any(|c| c.body.to_string().contains("Every name tried is taken"))
    );
    t.finish().await;
}

async fn an_alert_declared_p1_gets_a_room_and_a_thread_notice_if_it_cannot(backend: Backend) {
    use runbook_bot::config::{Matcher, Route};
    let t = TestApp::spawn_configured(backend, |c| {
        room_config(c);
        c.alerts.routes = vec![Route {
            matcher: Matcher {
                source: None,
                severity: vec!["critical".into()],
                labels: Default::default(),
            },
            declare: Some("p1".into()),
            ..Route::default()
        }];
    })
    .await;
    t.slack.set_group(GROUP, &["U0GROUPIE1", "U0GROUPIE2"]);
    let payload = |fp: &str| alertmanager::notification(fp, vec![alertmanager::alert(fp, "firing", "critical")]);
    t.alert("alertmanager", &payload("db1")).await;
    t.inbox_processed(10).await;
    t.drained(10).await;
    assert_eq!(room_of(&t).await.as_deref(), Some(ROOM));
    assert_eq!(
        invited(&t, ROOM),
        ["U0GROUPIE1", "U0GROUPIE2", RESPONDER],
        "no declarer to invite: the bot"
    );

    // The next one cannot get a room: nobody has a response_url, so the
    // notice goes to its thread in #incidents.
    t.slack
        .script_method("conversations.create", [Scripted::SlackError("restricted_action")]);
    t.alert("alertmanager", &payload("db2")).await;
    t.inbox_processed(10).await;
    t.drained(10).await;
    let notice = t
        .slack
        .ok_calls("chat.postMessage")
        .into_iter()
        .filter(|c| c.body["channel"] == CHANNEL && !c.body["thread_ts"].is_null())
        .filter(|c| c.body.to_string().contains("could not create a dedicated channel"))
        .count();
    assert_eq!(notice, 1);
    t.finish().await;
}

async fn escalations_of_a_room_incident_go_to_the_room(backend: Backend) {
    let t = spawn_rooms(backend).await;
    t.command(L2, "p1 Nobody answers").await;
    t.drained(10).await;
    t.clock.advance(16 * 60_000);
    t.slack
        .wait_for(10, "the first escalation", |c| {
            c.iter()
                .any(|c| c.ok && c.body["channel"] == ROOM && c.body.to_string().contains("Escalation"))
        })
        .await;
    assert!(
        t.slack
            .ok_calls("chat.postMessage")
            .iter()
            .all(|c| c.body["channel"] == ROOM || !c.body.to_string().contains("Escalation"))
    );
    // Slack notifies nobody mentioned in a channel they are not in: the
    // rung's people (L2, here L2B new to the room) are invited first.
    assert!(invited(&t, ROOM).contains(&L2B.to_string()), "{:?}", invited(&t, ROOM));
    let calls = t.slack.calls();
    let invite_at = calls
        .iter()
        .position(|c| c.method == "conversations.invite" && c.body.to_string().contains(L2B))
        .unwrap();
    let ping_at = calls
        .iter()
        .position(|c| c.ok && c.body["channel"] == ROOM && c.body.to_string().contains("Escalation"))
        .unwrap();
    assert!(invite_at < ping_at, "invited before the ping");
    t.finish().await;
}

async fn missing_scope_degrades_to_the_thread_with_one_message(backend: Backend) {
    let t = spawn_rooms(backend).await;
    t.slack
        .script_method("conversations.create", [Scripted::SlackError("missing_scope")]);
    t.command(L2, "p1 Checkout 502s").await;
    t.command(L2, "status looking at the load balancer").await;
    t.drained(10).await;
    assert_eq!(room_of(&t).await, None);
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incidents WHERE room_state = 'failed'")
            .await,
        1
    );
    let told: Vec<_> = t
        .slack
        .ok_calls("response_url")
        .into_iter()
        .filter(|c| c.body.to_string().contains("could not create a dedicated channel"))
        .collect();
    assert_eq!(told.len(), 1, "the declarer is told once");
    let notice = told[0].body.to_string();
    assert!(
        notice.contains("missing_scope") && notice.contains("channels:manage"),
        "{notice}"
    );
    // The incident goes on in its thread: the update is there, nothing is lost.
    let posts = t.slack.ok_calls("chat.postMessage");
    assert!(posts.iter().all(|c| c.body["channel"] == CHANNEL));
    assert!(
        posts
            .iter()
            .any(|c| !c.body["thread_ts"].is_null() && c.body.to_string().contains("looking at the load balancer"))
    );
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incident_events WHERE kind = 'room_failed'")
            .await,
        1
    );
    let root = t.slack.ok_calls("chat.update").last().unwrap().body.to_string();
    assert!(!root.contains("being created"), "{root}");
    assert!(t.slack.calls().iter().all(|c| c.method != "conversations.invite"));
    t.finish().await;
}

async fn rate_limits_wait_and_restricted_actions_degrade(backend: Backend) {
    let t = spawn_rooms(backend).await;
    t.slack
        .script_method("conversations.create", [Scripted::RateLimited { retry_after_secs: 1 }]);
    t.command(L2, "p1 First").await;
    t.drained(15).await;
    assert_eq!(room_of(&t).await.as_deref(), Some(ROOM), "made after Retry-After");
    let creates: Vec<_> = t
        .slack
        .calls()
        .into_iter()
        .filter(|c| c.method == "conversations.create")
        .collect();
    assert_eq!(creates.len(), 2);
    assert!(creates[1].at - creates[0].at >= std::time::Duration::from_millis(900));

    t.slack
        .script_method("conversations.create", [Scripted::SlackError("restricted_action")]);
    t.slack
        .script_method("conversations.setTopic", [Scripted::SlackError("too_long")]);
    t.command(L2, "p0 Second").await;
    t.drained(10).await;
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incidents WHERE id = 2 AND room_state = 'failed'")
            .await,
        1
    );
    t.finish().await;
}

async fn an_inactive_invitee_does_not_stop_the_others(backend: Backend) {
    let t = spawn_rooms(backend).await;
    t.slack.deactivate("U0GROUPIE1");
    t.command(L2, "p1 Checkout 502s").await;
    t.drained(10).await;
    assert_eq!(invited(&t, ROOM), ["U0GROUPIE2", L2, RESPONDER]);
    let warning = posts_in(&t, ROOM)
        .into_iter()
        .find(|p| p.contains("could not invite"))
        .expect("the room says who could not be invited");
    assert!(
        warning.contains("<@U0GROUPIE1>") && warning.contains("user_is_inactive"),
        "{warning}"
    );
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incidents WHERE room_state = 'made'")
            .await,
        1
    );
    t.finish().await;
}

async fn two_replicas_create_one_channel(backend: Backend) {
    let t = spawn_rooms(backend).await;
    let replica = runbook_bot::App::build_with_clock(t.config.clone(), t.clock.clone())
        .await
        .expect("replica builds");
    for n in 0..3 {
        t.command(L2, &format!("p1 Incident number {n}")).await;
    }
    t.drained(15).await;
    assert_eq!(
        t.slack.ok_calls("conversations.create").len(),
        3,
        "one channel per incident"
    );
    assert_eq!(t.scalar("SELECT COUNT(DISTINCT room_channel) FROM incidents").await, 3);
    assert!(t.slack.ok_calls("conversations.archive").is_empty(), "no stray channel");
    // A create step run again (a retry after a crash, a lapsed lease) finds
    // the stored channel and creates nothing.
    sqlx::query(
        "INSERT INTO outbox (lane, kind, channel, incident_id, payload, status, attempts, next_attempt_at,
           created_at, sensitive, priority, order_key)
         SELECT lane, kind, channel, incident_id, payload, 'pending', 0, next_attempt_at, created_at, 0, 0, order_key
         FROM outbox WHERE kind = 'room' AND payload LIKE '%create%'",
    )
    .execute(&t.state().store.writer)
    .await
    .unwrap();
    t.drained(10).await;
    assert_eq!(t.slack.ok_calls("conversations.create").len(), 3);
    replica.shutdown().await;
    t.finish().await;
}

async fn a_sev_change_to_p1_makes_a_room_mid_incident(backend: Backend) {
    let t = spawn_rooms(backend).await;
    t.command(L2, "p3 Slow search").await;
    t.drained(10).await;
    assert!(t.slack.ok_calls("conversations.create").is_empty());
    let reply = t.command(L2, "sev p1").await;
    assert!(reply.contains("creating its own channel"), "{reply}");
    t.drained(10).await;
    assert_eq!(t.slack.ok_calls("conversations.create").len(), 1);
    assert_eq!(room_of(&t).await.as_deref(), Some(ROOM));
    let thread: Vec<_> = t
        .slack
        .ok_calls("chat.postMessage")
        .into_iter()
        .filter(|c| c.body["channel"] == CHANNEL && !c.body["thread_ts"].is_null())
        .map(|c| c.body.to_string())
        .collect();
    assert!(
        thread.iter().any(|p| p.contains("creating a dedicated channel")),
        "{thread:?}"
    );
    t.command(L2, "status now in the room").await;
    t.drained(10).await;
    assert!(posts_in(&t, ROOM).iter().any(|p| p.contains("now in the room")));
    t.finish().await;
}

async fn approval_cards_and_diagnostics_go_to_the_room(backend: Backend) {
    let db = SupabaseDb::new(AppSchema::Hotel).await;
    let t = TestApp::spawn_configured(backend, |c| {
        db.attach(c);
        room_config(c);
    })
    .await;
    t.command(L2, "p1 New tenant flow broken").await;
    t.drained(10).await;
    // Typed in #incidents, about the incident there: its card goes to the room.
    let reply = t.slash(L2, "/rollback", "flag new-tenant-flow").await;
    assert!(reply.contains("Approval #1 requested"), "{reply}");
    t.drained(10).await;
    let card = posts_in(&t, ROOM)
        .into_iter()
        .find(|p| p.contains("Approval #1"))
        .expect("the card is in the room");
    assert!(card.contains("approval_approve"), "{card}");
    assert_eq!(
        click_reply(&t, L3, "approval_approve", 1).await,
        "Approved #1; applying it now."
    );
    wait_state(&t, 1, "applied").await;
    t.drained(10).await;
    let card_update = t.slack.ok_calls("chat.update").last().unwrap().body.clone();
    assert_eq!(card_update["channel"], ROOM, "the card is updated where it was posted");
    assert!(card_update.to_string().contains("was applied and verified"));
    assert!(posts_in(&t, ROOM).iter().any(|p| p.contains("1 rows changed")));
    // A diagnostic typed in the room is posted there and on the timeline.
    let before = posts_in(&t, ROOM).len();
    let reply = t.slash_in(L1, ROOM, "/diagnose", "db-size").await;
    assert!(reply.contains("Running"), "{reply}");
    t.slack
        .wait_for(20, "the diagnostic's result in the room", |c| {
            c.iter()
                .filter(|c| c.ok && c.method == "chat.postMessage" && c.body["channel"] == ROOM)
                .count()
                > before
        })
        .await;
    let result = posts_in(&t, ROOM).pop().unwrap();
    assert!(!result.contains("thread_ts"), "top level in the room: {result}");
    let timeline = t.command_in(L1, ROOM, "timeline").await;
    assert!(
        timeline.contains("db-size"),
        "the result is on the incident's timeline: {timeline}"
    );
    t.finish().await;
    db.cleanup().await;
}

/// Make storing a room's id fail in the test's own database, as a store
/// outage between Slack's answer and our write would.
async fn refuse_room_ids(t: &TestApp, backend: Backend) {
    let pool = &t.state().store.writer;
    let sql: &[&'static str] = match backend {
        Backend::Sqlite => &[
            "CREATE TRIGGER room_id_refused BEFORE UPDATE OF room_channel ON incidents
             WHEN NEW.room_channel IS NOT NULL BEGIN SELECT RAISE(ABORT, 'room id refused'); END",
        ],
        Backend::Postgres => &[
            "CREATE FUNCTION refuse_room_id() RETURNS trigger AS $$
             BEGIN RAISE EXCEPTION 'room id refused'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER room_id_refused BEFORE UPDATE OF room_channel ON incidents FOR EACH ROW
             WHEN (NEW.room_channel IS NOT NULL) EXECUTE FUNCTION refuse_room_id()",
        ],
    };
    for s in sql {
        sqlx::raw_sql(*s).execute(pool).await.unwrap();
    }
}

/// The create step's last attempt fails in the store: the incident goes on
/// in its thread (nothing queued for the room waits for ever), and the
/// declarer is told once, not also with a generic delivery failure.
async fn a_create_step_out_of_attempts_degrades_to_the_thread(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |c| {
        room_config(c);
        c.outbox.max_attempts = 2;
    })
    .await;
    refuse_room_ids(&t, backend).await;
    t.command(L2, "p1 Checkout 502s").await;
    t.command(L2, "status looking at the load balancer").await;
    t.drained(15).await;
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incidents WHERE room_state = 'failed' AND room_channel IS NULL")
            .await,
        1
    );
    let posts = t.slack.ok_calls("chat.postMessage");
    assert!(
        posts.iter().any(|c| c.body["channel"] == CHANNEL
            && !c.body["thread_ts"].is_null()
            && c.body.to_string().contains("looking at the load balancer")),
        "{:?}",
        fake_slack::summary(&t.slack.calls())
    );
    let root = t.slack.ok_calls("chat.update").last().unwrap().body.to_string();
    assert!(!root.contains("being created"), "{root}");
    let told: Vec<_> = t
        .slack
        .ok_calls("response_url")
        .into_iter()
        .map(|c| c.body.to_string())
        .filter(|b| b.contains("could not") || b.contains("could not be delivered"))
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].contains("could not create a dedicated channel"), "{told:?}");
    // The channel Slack made, whose id could not be stored, is archived.
    let made = t.slack.channels()["inc-1-checkout-502s"].clone();
    assert_eq!(t.slack.channels().len(), 1, "adopted on the retry, not made twice");
    assert!(
        t.slack
            .ok_calls("conversations.archive")
            .iter()
            .any(|c| c.body["channel"] == made.as_str())
    );

    // Backstop: a room left pending with no create step queued (one given
    // up before it could degrade) does not hold what is meant for the room.
    t.command(L2, "p3 Stuck room").await;
    t.drained(10).await;
    sqlx::query("UPDATE incidents SET room_state = 'pending' WHERE id = 2")
        .execute(&t.state().store.writer)
        .await
        .unwrap();
    t.command(L2, "status still going #2").await;
    t.drained(10).await;
    let last = t.slack.ok_calls("chat.postMessage").last().unwrap().body.clone();
    assert!(
        last.to_string().contains("still going") && last["channel"] == CHANNEL,
        "{last}"
    );
    t.finish().await;
}

/// Slack made the channel but its answer was lost: the retry adopts that
/// channel instead of making `-2` and leaving an orphan.
async fn a_lost_create_answer_adopts_the_channel(backend: Backend) {
    let t = spawn_rooms(backend).await;
    t.slack
        .script_method("conversations.create", [Scripted::ServerErrorAfterDoing]);
    t.command(L2, "p1 Checkout 502s").await;
    t.drained(15).await;
    let channels = t.slack.channels();
    assert_eq!(channels.len(), 1, "{channels:?}");
    assert_eq!(room_of(&t).await, Some(channels["inc-1-checkout-502s"].clone()));
    let room = room_of(&t).await.unwrap();
    assert!(!invited(&t, &room).is_empty());
    assert!(t.slack.ok_calls("conversations.archive").is_empty());
    assert!(posts_in(&t, &room)[0].contains("This channel is for incident *#1*"));
    t.finish().await;
}

/// More invitees than one call takes: a 429 on the second batch resumes
/// with that batch, not from the start.
async fn invites_resume_after_a_rate_limit(backend: Backend) {
    let t = spawn_rooms(backend).await;
    let many: Vec<String> = (0..1001).map(|n| format!("U0MANY{n:04}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    t.slack.set_group(GROUP, &refs);
    t.slack.script_method(
        "conversations.invite",
        [Scripted::Normal, Scripted::RateLimited { retry_after_secs: 1 }],
    );
    t.command(L2, "p1 Everyone in").await;
    t.drained(20).await;
    assert_eq!(
        invited(&t, ROOM).len(),
        1003,
        "the group, the declarer and the responder"
    );
    let calls: Vec<_> = t
        .slack
        .calls()
        .into_iter()
        .filter(|c| c.method == "conversations.invite")
        .collect();
    assert_eq!(calls.len(), 3, "first batch, the 429, the second batch once more");
    assert_eq!(calls[0].body["users"].as_str().unwrap().split(',').count(), 1000);
    assert_eq!(calls[1].body, calls[2].body);
    assert!(
        t.slack
            .ok_calls("conversations.invite")
            .iter()
            .all(|c| c.body["force"] == json!(true))
    );
    t.finish().await;
}

/// A message meant for the room whose row names the room (typed there)
/// falls back, once the room is archived, to the thread in #incidents: the
/// root's channel, not the room with the root's ts.
async fn a_fallback_to_the_thread_goes_to_the_roots_channel(backend: Backend) {
    use runbook_bot::outbox::{self, Outgoing};
    use runbook_bot::slack::ids::ChannelId;
    let t = spawn_rooms(backend).await;
    t.command(L2, "p1 Checkout 502s").await;
    t.drained(10).await;
    let root_ts = t.slack.ok_calls("chat.postMessage")[0].ts.clone().unwrap();
    sqlx::query("UPDATE incidents SET room_state = 'archived' WHERE id = 1")
        .execute(&t.state().store.writer)
        .await
        .unwrap();
    let state = t.state();
    let mut tx = state.store.begin().await.unwrap();
    let msg = Outgoing::to_room(
        1,
        &ChannelId::parse(ROOM).unwrap(),
        runbook_bot::incident::render::reply("a late diagnostic".into()),
    );
    outbox::enqueue(&mut tx, &[msg], None, state.clock.now_ms())
        .await
        .unwrap();
    state.outbox.commit(tx).await.unwrap();
    t.drained(10).await;
    let late = t
        .slack
        .ok_calls("chat.postMessage")
        .into_iter()
        .find(|c| c.body.to_string().contains("a late diagnostic"))
        .expect("delivered");
    assert_eq!(late.body["channel"], CHANNEL, "{}", late.body);
    assert_eq!(late.body["thread_ts"], json!(root_ts));
    t.finish().await;
}

/// One person reacting over and over cannot make the bot call Slack for
/// each: reactions share the mentions' per-user limit.
async fn reactions_are_throttled_per_user(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |c| {
        room_config(c);
        c.abuse.mention_burst = 2;
        c.abuse.mention_refill = std::time::Duration::from_secs(3600);
    })
    .await;
    t.command(L2, "p1 Checkout 502s").await;
    t.drained(10).await;
    for n in 0..5 {
        let ts = format!("17000001{n:02}.000100");
        t.slack.add_message(ROOM, &ts, &format!("finding {n}"));
        let reaction = json!({
            "type": "reaction_added", "user": L2B, "reaction": "pushpin", "item_user": L2B,
            "item": {"type": "message", "channel": ROOM, "ts": ts}, "event_ts": "1700000201.000100"
        });
        send_event(&t, &format!("Ev0SPAM{n}"), reaction).await;
    }
    let fetches = t
        .slack
        .calls()
        .iter()
        .filter(|c| c.method == "reactions.get" || c.method == "conversations.history")
        .count();
    assert_eq!(fetches, 2);
    assert_eq!(t.scalar("SELECT COUNT(*) FROM incident_pins").await, 2);
    t.finish().await;
}

/// A step run starts no Slack call past its budget (the worker runs it
/// inline, inside a lease): a slow first batch of invites leaves the rest,
/// recorded in the row, to the next run.
async fn a_slow_step_stops_at_its_budget_and_goes_on(backend: Backend) {
    let t = spawn_rooms(backend).await;
    let many: Vec<String> = (0..1001).map(|n| format!("U0MANY{n:04}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    t.slack.set_group(GROUP, &refs);
    t.slack
        .script_method("conversations.invite", [Scripted::Slow { ms: 10_500 }]);
    t.command(L2, "p1 Everyone in, slowly").await;
    t.drained(30).await;
    assert_eq!(invited(&t, ROOM).len(), 1003);
    let payload: String =
        sqlx::query_scalar("SELECT payload FROM outbox WHERE kind = 'room' AND payload LIKE '%inviting%'")
            .fetch_one(&t.state().store.pool)
            .await
            .expect("the invite recorded what was left");
    let left: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(left["users"].as_array().unwrap().len(), 3, "{payload}");
    assert_eq!(
        t.slack
            .calls()
            .iter()
            .filter(|c| c.method == "conversations.invite")
            .count(),
        2
    );
    t.finish().await;
}

/// A replica whose create answer comes back after the room was given up
/// (its lease ran out, the other replica got `restricted_action` and told
/// the declarer) does not bring the room back: it archives its channel.
async fn a_late_create_after_degrade_archives_its_channel(backend: Backend) {
    let t = spawn_rooms(backend).await;
    let replica = runbook_bot::App::build_with_clock(t.config.clone(), t.clock.clone())
        .await
        .expect("replica builds");
    t.slack.script_method(
        "conversations.create",
        [Scripted::Slow { ms: 4000 }, Scripted::SlackError("restricted_action")],
    );
    t.command(L2, "p1 Checkout 502s").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while t
        .scalar("SELECT COUNT(*) FROM outbox WHERE kind = 'room' AND lease_owner IS NOT NULL")
        .await
        == 0
    {
        assert!(std::time::Instant::now() < deadline, "the create step never started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    t.clock.advance(31_000);
    t.slack
        .wait_for(10, "the late create's answer", |c| {
            c.iter().any(|c| c.ok && c.method == "conversations.create")
        })
        .await;
    // The create row is finished already (by the replica that degraded):
    // wait for the archive itself, not for an empty outbox.
    let made = t.slack.channels()["inc-1-checkout-502s"].clone();
    t.slack
        .wait_for(10, "the stray channel's archive", |c| {
            c.iter()
                .any(|c| c.ok && c.method == "conversations.archive" && c.body["channel"] == made.as_str())
        })
        .await;
    t.drained(15).await;
    assert_eq!(
        t.scalar("SELECT COUNT(*) FROM incidents WHERE room_state = 'failed' AND room_channel IS NULL")
            .await,
        1
    );
    replica.shutdown().await;
    t.finish().await;
}

both_backends!(
    a_late_create_after_degrade_archives_its_channel,
    a_slow_step_stops_at_its_budget_and_goes_on,
    reactions_are_throttled_per_user,
    a_fallback_to_the_thread_goes_to_the_roots_channel,
    invites_resume_after_a_rate_limit,
    a_lost_create_answer_adopts_the_channel,
    a_create_step_out_of_attempts_degrades_to_the_thread,
    a_p1_gets_a_room_with_invitees_topic_and_bookmarks,
    a_p3_stays_a_thread,
    commands_in_the_room_need_no_id,
    a_pinned_message_reaches_the_postmortem_once,
    a_pin_over_socket_mode_is_added_once,
    a_pin_in_an_incident_thread_reaches_its_timeline,
    resolve_archives_after_the_delay_across_a_restart,
    reopen_cancels_the_archive,
    name_taken_gets_a_suffix,
    escalations_of_a_room_incident_go_to_the_room,
    an_alert_declared_p1_gets_a_room_and_a_thread_notice_if_it_cannot,
    missing_scope_degrades_to_the_thread_with_one_message,
    rate_limits_wait_and_restricted_actions_degrade,
    an_inactive_invitee_does_not_stop_the_others,
    two_replicas_create_one_channel,
    a_sev_change_to_p1_makes_a_room_mid_incident,
    approval_cards_and_diagnostics_go_to_the_room,
);
