//! A fake Slack Web API: records every call the real slack-morphism client
//! makes, answers like Slack does, and can be scripted to answer 429 with
//! Retry-After, 500, or `ok:false` errors.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub enum Scripted {
    RateLimited {
        retry_after_secs: u64,
    },
    ServerError,
    SlackError(&'static str),
    /// Do what the call asks, then answer 500 (Slack acted; we never learn it).
    ServerErrorAfterDoing,
    /// Answer as usual (to script a later call of the method).
    Normal,
    /// Answer as usual, after this long.
    Slow {
        ms: u64,
    },
}

#[derive(Debug, Clone)]
pub struct Call {
    /// `chat.postMessage`, `chat.update`, `response_url`, …
    pub method: String,
    pub body: Value,
    /// True when the fake answered with success.
    pub ok: bool,
    pub at: Instant,
    /// The ts the fake gave a successful post.
    pub ts: Option<String>,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    script: VecDeque<Scripted>,
    next_ts: u64,
    groups: HashMap<String, Vec<String>>,
    /// What `apps.connections.open` hands out (the fake Socket Mode server).
    socket_url: Option<String>,
    /// Answers for the next calls of one method, before `script`.
    by_method: HashMap<String, VecDeque<Scripted>>,
    /// Channels made by `conversations.create`: name → id.
    channels: HashMap<String, String>,
    /// Names of the channels the bot made (its own, for `users.conversations`).
    made_by_bot: Vec<String>,
    /// Deactivated users: `conversations.invite` refuses them.
    inactive: Vec<String>,
    /// Who was invited to each channel.
    members: HashMap<String, Vec<String>>,
    /// Messages `conversations.history` and `reactions.get` know: (channel, ts) → text.
    messages: HashMap<(String, String), String>,
}

#[derive(Clone)]
pub struct FakeSlack {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let inner = Arc::new(Mutex::new(Inner {
            next_ts: 1_700_000_000_000_100,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/api/usergroups.users.list", get(usergroup_members))
            .route("/api/conversations.history", get(history))
            .route("/api/auth.test", get(auth_test))
            .route("/api/reactions.get", get(reactions_get))
            .route("/api/users.conversations", get(users_conversations))
            .route("/api/apps.connections.open", post(connections_open))
            .route("/api/{method}", post(api))
            .route("/response/{id}", post(response_url))
            .with_state(inner.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake slack");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeSlack {
            base: format!("http://{addr}"),
            inner,
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api/", self.base)
    }

    /// A response_url the fake accepts, as Slack would put in a command.
    pub fn response_url(&self, id: &str) -> String {
        format!("{}/response/{id}", self.base)
    }

    /// The next calls (of any method) get these answers, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.inner.lock().unwrap().script.extend(answers);
    }

    /// The next calls of `method` get these answers, in order (other
    /// methods are not affected).
    pub fn script_method(&self, method: &str, answers: impl IntoIterator<Item = Scripted>) {
        let mut i = self.inner.lock().unwrap();
        i.by_method.entry(method.to_string()).or_default().extend(answers);
    }

    /// A channel of this name exists already (`conversations.create` answers `name_taken`).
    pub fn add_channel(&self, name: &str, id: &str) {
        self.inner.lock().unwrap().channels.insert(name.into(), id.into());
    }

    /// The channels `conversations.create` made or knows: name → id.
    pub fn channels(&self) -> HashMap<String, String> {
        self.inner.lock().unwrap().channels.clone()
    }

    /// Who has been invited to `channel`, sorted.
    pub fn members(&self, channel: &str) -> Vec<String> {
        let mut m = self
            .inner
            .lock()
            .unwrap()
            .members
            .get(channel)
            .cloned()
            .unwrap_or_default();
        m.sort();
        m
    }

    pub fn deactivate(&self, user: &str) {
        self.inner.lock().unwrap().inactive.push(user.into());
    }

    /// A message `conversations.history` returns.
    pub fn add_message(&self, channel: &str, ts: &str, text: &str) {
        self.inner
            .lock()
            .unwrap()
            .messages
            .insert((channel.into(), ts.into()), text.into());
    }

    pub fn set_group(&self, group: &str, members: &[&str]) {
        self.inner
            .lock()
            .unwrap()
            .groups
            .insert(group.into(), members.iter().map(|s| s.to_string()).collect());
    }

    /// `apps.connections.open` answers with this WebSocket URL.
    pub fn set_socket_url(&self, url: &str) {
        self.inner.lock().unwrap().socket_url = Some(url.to_string());
    }

    /// `usergroups.users.list` fails for this group from now on.
    pub fn forget_group(&self, group: &str) {
        self.inner.lock().unwrap().groups.remove(group);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().unwrap().calls.clone()
    }

    /// Successful calls of one method.
    pub fn ok_calls(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.ok && c.method == method)
            .collect()
    }

    /// Wait until `pred` holds over the recorded calls, or panic after `secs`.
    pub async fn wait_for(&self, secs: u64, what: &str, pred: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let calls = self.calls();
            if pred(&calls) {
                return calls;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; calls so far: {:#?}", summary(&calls));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

pub fn summary(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| {
            format!(
                "{} ok={} thread_ts={} ts={} text={}",
                c.method,
                c.ok,
                c.body["thread_ts"].as_str().unwrap_or("-"),
                c.body["ts"].as_str().unwrap_or("-"),
                c.body["text"]
                    .as_str()
                    .unwrap_or("-")
                    .chars()
                    .take(60)
                    .collect::<String>()
            )
        })
        .collect()
}

fn scripted(inner: &Mutex<Inner>, method: &str) -> Option<Response> {
    let next = {
        let mut i = inner.lock().unwrap();
        match i.by_method.get_mut(method).and_then(VecDeque::pop_front) {
            Some(s) => s,
            None => i.script.pop_front()?,
        }
    };
    Some(match next {
        Scripted::RateLimited { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::RETRY_AFTER, retry_after_secs.to_string()),
                (header::CONTENT_TYPE, "application/json".into()),
            ],
            json!({"ok": false, "error": "ratelimited"}).to_string(),
        )
            .into_response(),
        Scripted::ServerError => (StatusCode::INTERNAL_SERVER_ERROR, "upstream failure").into_response(),
        Scripted::SlackError(code) => axum::Json(json!({"ok": false, "error": code})).into_response(),
        Scripted::ServerErrorAfterDoing | Scripted::Normal | Scripted::Slow { .. } => return None,
    })
}

/// The next scripted answer of `method` when it acts as well (fails after
/// doing, or is slow), taken from the script.
fn special(inner: &Mutex<Inner>, method: &str) -> Option<Scripted> {
    let mut i = inner.lock().unwrap();
    let q = i.by_method.get_mut(method)?;
    match q.front() {
        Some(Scripted::ServerErrorAfterDoing | Scripted::Slow { .. }) => q.pop_front(),
        _ => None,
    }
}

fn record(inner: &Mutex<Inner>, method: &str, body: Value, ok: bool, ts: Option<String>) {
    inner.lock().unwrap().calls.push(Call {
        method: method.into(),
        body,
        ok,
        at: Instant::now(),
        ts,
    });
}

fn decode(headers: &HeaderMap, body: &Bytes) -> Value {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        serde_json::from_slice(body).unwrap_or(Value::Null)
    } else {
        let m: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        json!(m)
    }
}

async fn api(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = decode(&headers, &body);
    let authed = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer xoxb-"));
    if !authed {
        record(&inner, &method, body, false, None);
        return axum::Json(json!({"ok": false, "error": "not_authed"})).into_response();
    }
    match special(&inner, &method) {
        Some(Scripted::ServerErrorAfterDoing) => {
            let _ = rooms(&inner, &method, &body);
            inner.lock().unwrap().calls.last_mut().unwrap().ok = false;
            return (StatusCode::INTERNAL_SERVER_ERROR, "upstream failure").into_response();
        }
        Some(Scripted::Slow { ms }) => tokio::time::sleep(Duration::from_millis(ms)).await,
        _ => {}
    }
    if let Some(r) = scripted(&inner, &method) {
        record(&inner, &method, body, false, None);
        return r;
    }
    if let Some(r) = rooms(&inner, &method, &body) {
        return r;
    }
    let channel = body["channel"].as_str().unwrap_or("").to_string();
    match method.as_str() {
        "chat.postMessage" => {
            let ts = {
                let mut i = inner.lock().unwrap();
                i.next_ts += 100;
                let n = i.next_ts;
                format!("{}.{:06}", n / 1_000_000, n % 1_000_000)
            };
            let text = body["text"].clone();
            record(&inner, &method, body, true, Some(ts.clone()));
            axum::Json(json!({"ok": true, "channel": channel, "ts": ts, "message": {"type": "message", "ts": ts, "text": text, "bot_id": "B0BOT"}}))
                .into_response()
        }
        "chat.update" => {
            let ts = body["ts"].as_str().unwrap_or("").to_string();
            let text = body["text"].clone();
            record(&inner, &method, body, true, None);
            axum::Json(json!({"ok": true, "channel": channel, "ts": ts, "text": text, "message": {"text": text}}))
                .into_response()
        }
        _ => {
            record(&inner, &method, body, false, None);
            axum::Json(json!({"ok": false, "error": "unknown_method"})).into_response()
        }
    }
}

/// The methods of incident channels, answered like Slack: `name_taken`
/// for a name in use, `user_is_inactive` for a call naming a deactivated user.
fn rooms(inner: &Mutex<Inner>, method: &str, body: &Value) -> Option<Response> {
    let (ok, answer) = match method {
        "conversations.create" => {
            let name = body["name"].as_str().unwrap_or_default().to_string();
            let mut i = inner.lock().unwrap();
            if i.channels.contains_key(&name) {
                (false, json!({"ok": false, "error": "name_taken"}))
            } else {
                let id = format!("C0ROOM{}", i.channels.len() + 1);
                i.channels.insert(name.clone(), id.clone());
                i.made_by_bot.push(name.clone());
                (
                    true,
                    json!({"ok": true, "channel": {"id": id, "name": name, "created": 1_700_000_000}}),
                )
            }
        }
        "conversations.invite" => {
            let users: Vec<String> = match &body["users"] {
                Value::Array(a) => a.iter().filter_map(|u| u.as_str().map(str::to_string)).collect(),
                Value::String(s) => s.split(',').map(str::to_string).collect(),
                _ => Vec::new(),
            };
            invite(&mut inner.lock().unwrap(), body, &users)
        }
        "conversations.setTopic" | "bookmarks.add" | "conversations.archive" => (true, json!({"ok": true})),
        _ => return None,
    };
    record(inner, method, body.clone(), ok, None);
    Some(axum::Json(answer).into_response())
}

/// Like Slack: one inactive user, or one already in the channel, refuses
/// the whole call, unless `force` is set: then the others are invited and
/// the refused ones listed in `errors`.
fn invite(i: &mut Inner, body: &Value, users: &[String]) -> (bool, Value) {
    let channel = body["channel"].as_str().unwrap_or_default().to_string();
    let force = body["force"] == json!(true) || body["force"] == json!("true");
    let members = i.members.get(&channel).cloned().unwrap_or_default();
    let errors: Vec<Value> = users
        .iter()
        .filter_map(|u| {
            let error = if i.inactive.contains(u) {
                "user_is_inactive"
            } else if members.contains(u) {
                "already_in_channel"
            } else {
                return None;
            };
            Some(json!({"user": u, "ok": false, "error": error}))
        })
        .collect();
    if errors.is_empty() || force {
        let refused: Vec<&str> = errors.iter().filter_map(|e| e["user"].as_str()).collect();
        let fresh: Vec<String> = users
            .iter()
            .filter(|u| !refused.contains(&u.as_str()))
            .cloned()
            .collect();
        i.members.entry(channel.clone()).or_default().extend(fresh);
    }
    match errors.first() {
        None => (
            true,
            json!({"ok": true, "channel": {"id": channel, "created": 1_700_000_000}}),
        ),
        Some(first) if force => (false, json!({"ok": false, "error": first["error"], "errors": errors})),
        Some(first) => (false, json!({"ok": false, "error": first["error"]})),
    }
}

/// Socket Mode's URL, for the app-level token only (as Slack: a bot token
/// gets `not_allowed_token_type`).
async fn connections_open(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    let body = decode(&headers, &body);
    let app_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer xapp-"));
    let method = "apps.connections.open";
    if !app_token {
        record(&inner, method, body, false, None);
        return axum::Json(json!({"ok": false, "error": "not_allowed_token_type"})).into_response();
    }
    if let Some(r) = scripted(&inner, method) {
        record(&inner, method, body, false, None);
        return r;
    }
    let url = inner.lock().unwrap().socket_url.clone();
    record(&inner, method, body, url.is_some(), None);
    match url {
        Some(url) => axum::Json(json!({"ok": true, "url": url})).into_response(),
        None => axum::Json(json!({"ok": false, "error": "socket_mode_not_enabled"})).into_response(),
    }
}

/// `conversations.history` (a GET): the message at `latest`, when known.
async fn history(State(inner): State<Arc<Mutex<Inner>>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let key = (
        q.get("channel").cloned().unwrap_or_default(),
        q.get("latest").cloned().unwrap_or_default(),
    );
    let text = inner.lock().unwrap().messages.get(&key).cloned();
    let messages: Vec<Value> = text
        .map(|t| json!({"type": "message", "user": "U0SOMEONE", "text": t, "ts": key.1}))
        .into_iter()
        .collect();
    record(&inner, "conversations.history", json!(q), true, None);
    axum::Json(json!({"ok": true, "messages": messages, "has_more": false})).into_response()
}

async fn usergroup_members(
    State(inner): State<Arc<Mutex<Inner>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let group = q.get("usergroup").cloned().unwrap_or_default();
    let members = inner.lock().unwrap().groups.get(&group).cloned();
    record(&inner, "usergroups.users.list", json!(q), members.is_some(), None);
    match members {
        Some(m) => axum::Json(json!({"ok": true, "users": m})).into_response(),
        None => axum::Json(json!({"ok": false, "error": "no_such_subteam"})).into_response(),
    }
}

async fn response_url(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut body = decode(&headers, &body);
    body["response_id"] = json!(id);
    if let Some(r) = scripted(&inner, "response_url") {
        record(&inner, "response_url", body, false, None);
        return r;
    }
    record(&inner, "response_url", body, true, None);
    (StatusCode::OK, "ok").into_response()
}

const BOT_USER: &str = "U0BOT";

async fn auth_test(State(inner): State<Arc<Mutex<Inner>>>) -> Response {
    record(&inner, "auth.test", json!({}), true, None);
    axum::Json(
        json!({"ok": true, "user_id": BOT_USER, "team_id": "T0TEAM", "team": "acme",
                      "url": "https://acme.slack.com/", "bot_id": "B0BOT"}),
    )
    .into_response()
}

/// The bot's channels: those `conversations.create` made, one page.
async fn users_conversations(
    State(inner): State<Arc<Mutex<Inner>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let channels: Vec<Value> = {
        let i = inner.lock().unwrap();
        i.made_by_bot
            .iter()
            .map(|name| {
                json!({"id": i.channels[name], "name": name, "created": 1_700_000_000,
                               "creator": BOT_USER, "is_channel": true})
            })
            .collect()
    };
    record(&inner, "users.conversations", json!(q), true, None);
    axum::Json(json!({"ok": true, "channels": channels, "response_metadata": {"next_cursor": ""}})).into_response()
}

/// `reactions.get` (a GET): the message at `timestamp`, when known.
async fn reactions_get(State(inner): State<Arc<Mutex<Inner>>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let channel = q.get("channel").cloned().unwrap_or_default();
    let ts = q.get("timestamp").cloned().unwrap_or_default();
    let text = inner
        .lock()
        .unwrap()
        .messages
        .get(&(channel.clone(), ts.clone()))
        .cloned();
    record(&inner, "reactions.get", json!(q), text.is_some(), None);
    match text {
        Some(t) => axum::Json(json!({"ok": true, "type": "message", "channel": channel,
                                     "message": {"type": "message", "user": "U0SOMEONE", "text": t, "ts": ts}}))
        .into_response(),
        None => axum::Json(json!({"ok": false, "error": "message_not_found"})).into_response(),
    }
}
