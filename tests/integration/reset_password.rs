//! `/user reset-password`: runbook 004's "Generate Link" behind an approval.
//! A fake GoTrue admin endpoint stands in for Supabase Auth; the target is a
//! Supabase-shaped database with GoTrue's real `auth.users`. The link must
//! reach the requester's DMs and nowhere else: not the channel, the thread,
//! the card, the audit log, the timeline or the outbox once delivered.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use runbook_bot::config::SupabaseAuth;
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::*;

const KEY: &str = "eyJ-test-service-role-key";
/// In every generated link and one-time code: found anywhere but the DM, it leaked.
const SECRET: &str = "rb9s3cret";
const ANN: &str = "b0000000-0000-4000-8000-000000000001";

/// What the fake answers next.
enum Answer {
    /// 200 with `action_link` in the user (newer GoTrue), or `{properties, user}` (older).
    Link {
        older: bool,
    },
    Status(u16, &'static str),
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Answer>,
    /// Each call's `apikey`, `Authorization` and JSON body.
    seen: Vec<(String, String, Value)>,
}

/// GoTrue's `POST /auth/v1/admin/generate_link`, as a small axum server.
#[derive(Clone)]
struct FakeGoTrue {
    base: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeGoTrue {
    async fn start() -> FakeGoTrue {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let state = inner.clone();
        let app = axum::Router::new().route(
            "/auth/v1/admin/generate_link",
            axum::routing::post(move |h: HeaderMap, body: axum::Json<Value>| generate_link(state.clone(), h, body.0)),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeGoTrue { base, inner }
    }

    fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.inner.lock().unwrap().script.extend(answers);
    }

    fn seen(&self) -> Vec<(String, String, Value)> {
        self.inner.lock().unwrap().seen.clone()
    }

    fn config(&self) -> SupabaseAuth {
        SupabaseAuth {
            url: self.base.clone(),
            service_role_key: secrecy::SecretString::from(KEY.to_string()),
        }
    }
}

/// The link the fake makes for the n-th call.
fn link(n: usize) -> String {
    format!(
        "https://abcd.supabase.co/auth/v1/verify?token=pkce_{SECRET}_{n}&type=recovery&redirect_to=https://app.example.com"
    )
}

async fn generate_link(inner: Arc<Mutex<Inner>>, h: HeaderMap, body: Value) -> Response {
    let header = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (apikey, authorization) = (header("apikey"), header("authorization"));
    let mut i = inner.lock().unwrap();
    i.seen.push((apikey.clone(), authorization.clone(), body.clone()));
    if apikey != KEY || authorization != format!("Bearer {KEY}") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "Invalid API key"})),
        )
            .into_response();
    }
    let n = i.seen.len();
    match i.script.pop_front().unwrap_or(Answer::Link { older: false }) {
        Answer::Link { older } => {
            let props = json!({"action_link": link(n), "email_otp": format!("{SECRET}-otp"), "hashed_token": format!("{SECRET}-hash"), "verification_type": "recovery"});
            let mut user = json!({"id": ANN, "aud": "authenticated", "email": body["email"], "user_metadata": {}});
            if older {
                return axum::Json(json!({"properties": props, "user": user})).into_response();
            }
            user.as_object_mut().unwrap().extend(props.as_object().unwrap().clone());
            axum::Json(user).into_response()
        }
        Answer::Status(code, body) => (StatusCode::from_u16(code).unwrap(), body.to_string()).into_response(),
    }
}

/// Log lines (every crate, at debug) that hold the secret, and lines that
/// hold a probe proving lines are seen. The subscriber is process-wide, so
/// it is installed once; no other test installs one.
fn log_lines() -> &'static (AtomicUsize, AtomicUsize) {
    static COUNTS: OnceLock<Arc<(AtomicUsize, AtomicUsize)>> = OnceLock::new();
    COUNTS.get_or_init(|| {
        let counts = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let writer = counts.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(move || LineCounter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one log subscriber per test process");
        counts
    })
}

const PROBE: &str = "reset-password-log-probe";

struct LineCounter(Arc<(AtomicUsize, AtomicUsize)>);

impl std::io::Write for LineCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let has = |s: &str| buf.windows(s.len()).any(|w| w == s.as_bytes());
        if has(SECRET) {
            self.0.0.fetch_add(1, Ordering::SeqCst);
        }
        if has(PROBE) {
            self.0.1.fetch_add(1, Ordering::SeqCst);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn app(backend: Backend, db: &SupabaseDb, gotrue: Option<&FakeGoTrue>) -> TestApp {
    TestApp::spawn_configured(backend, |cfg| {
        db.attach(cfg);
        if let Some(g) = gotrue {
            cfg.supabase_auth.insert("production".into(), g.config());
        }
    })
    .await
}

/// Request as the on-call engineer; the approval's id.
async fn request(t: &TestApp, who: &str) -> i64 {
    let reply = t.slash(L2, "/user", &format!("reset-password {who}")).await;
    reply
        .split("Approval #")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request in: {reply}"))
}

async fn approve(t: &TestApp, id: i64, want: &str) -> String {
    click_reply(t, L3, "approval_approve", id).await;
    wait_state(t, id, want).await;
    t.drained(20).await;
    sqlx::query_scalar::<_, Option<String>>("SELECT result FROM approval_requests WHERE id = $1")
        .bind(id)
        .fetch_one(&t.state().store.pool)
        .await
        .unwrap()
        .unwrap_or_default()
}

/// Every Slack call that is not a direct message to `user`.
fn not_dms_to(t: &TestApp, user: &str) -> String {
    t.slack
        .calls()
        .iter()
        .filter(|c| c.body["channel"] != user)
        .map(|c| c.body.to_string())
        .collect()
}

/// Rows of the state store that hold the secret, wherever the bot writes
/// text. The pattern is bound, so these queries' own log lines hold no secret.
async fn copies_in_the_state_store(t: &TestApp) -> i64 {
    let mut n = 0;
    for sql in [
        "SELECT COUNT(*) FROM outbox WHERE payload LIKE $1 OR coalesce(last_error, '') LIKE $1",
        "SELECT COUNT(*) FROM audit_events WHERE detail LIKE $1",
        "SELECT COUNT(*) FROM incident_events WHERE text LIKE $1",
        "SELECT COUNT(*) FROM approval_requests WHERE coalesce(result, '') || plan || coalesce(snapshot, '') LIKE $1",
    ] {
        n += sqlx::query_scalar::<_, i64>(sql)
            .bind(format!("%{SECRET}%"))
            .fetch_one(&t.state().store.pool)
            .await
            .unwrap();
    }
    n
}

async fn a_recovery_link_reaches_the_requester_and_nowhere_else(backend: Backend) {
    let logs = log_lines();
    tracing::info!("{PROBE}");
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let gotrue = FakeGoTrue::start().await;
    let t = app(backend, &db, Some(&gotrue)).await;
    t.command(L2, "p2 Ann cannot sign in").await;
    let id = request(&t, "Ann@acme.test").await;
    let card = t
        .slack
        .wait_for(10, "the card", |c| {
            c.iter().any(|c| c.ok && c.body.to_string().contains("Approval #"))
        })
        .await
        .into_iter()
        .find(|c| c.body.to_string().contains("Approval #"))
        .unwrap()
        .body
        .to_string();
    for shown in [
        "ann@acme.test",
        ANN,
        "last_sign_in_at",
        "banned",
        "deleted",
        "sends a password-recovery link to the requester, privately",
    ] {
        assert!(card.contains(shown), "the card shows {shown}: {card}");
    }
    assert!(card.contains(&gotrue.base), "where it calls, as scheme and host");
    assert!(!card.contains(KEY), "never the key");

    let result = approve(&t, id, "applied").await;
    let words = format!("recovery link generated for ann@acme.test and sent privately to <@{L2}>");
    assert_eq!(result, format!("Password-recovery link — {words}"));
    let seen = gotrue.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].0.as_str(), seen[0].1.as_str()),
        (KEY, format!("Bearer {KEY}").as_str())
    );
    assert_eq!(seen[0].2, json!({"type": "recovery", "email": "ann@acme.test"}));

    let dms: Vec<_> = t
        .slack
        .ok_calls("chat.postMessage")
        .into_iter()
        .filter(|c| c.body["channel"] == L2)
        .collect();
    assert_eq!(dms.len(), 1, "one DM, to the requester");
    assert!(dms[0].body.to_string().contains(&link(1)), "{}", dms[0].body);
    assert!(dms[0].body.get("thread_ts").is_none_or(Value::is_null));
    assert!(
        !dms[0].body["text"].as_str().unwrap().contains(SECRET),
        "not in the notification text"
    );
    let elsewhere = not_dms_to(&t, L2);
    assert!(
        !elsewhere.contains(SECRET),
        "no channel post, update or reply holds the link or code"
    );
    assert!(
        elsewhere.contains(&format!("{words}.")),
        "the thread says where it went: {elsewhere}"
    );
    assert!(elsewhere.contains("sent privately to"), "and so does the card");
    assert_eq!(copies_in_the_state_store(&t).await, 0, "the state store keeps no copy");
    assert!(audit_kinds(&t, id).await.contains(&"recovery_link_sent".to_string()));
    assert!(t.command(L1, "timeline").await.contains("sent privately"));
    assert!(logs.1.load(Ordering::SeqCst) > 0, "log lines are seen");
    assert_eq!(
        logs.0.load(Ordering::SeqCst),
        0,
        "no log line holds the link or the code"
    );
    t.finish().await;
    db.cleanup().await;
}

/// Nothing reached the requester's DMs.
fn no_dm(t: &TestApp) -> bool {
    t.slack.calls().iter().all(|c| c.body["channel"] != L2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gotrue_failure_is_reported_and_sends_nothing() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let gotrue = FakeGoTrue::start().await;
    let t = app(Backend::Sqlite, &db, Some(&gotrue)).await;
    gotrue.script([
        Answer::Status(
            404,
            r#"{"code":404,"error_code":"user_not_found","msg":"User not found"}"#,
        ),
        Answer::Status(429, r#"{"code":429,"msg":"email rate limit exceeded"}"#),
        Answer::Status(503, "upstream connect error"),
        Answer::Status(
            200,
            r#"{"id":"b0000000-0000-4000-8000-000000000001","email":"ann@acme.test"}"#,
        ),
        // GoTrue found someone else by that email: their link must go nowhere.
        Answer::Status(
            200,
            r#"{"id":"b0000000-0000-4000-8000-000000000002","action_link":"https://abcd.supabase.co/auth/v1/verify?token=rb9s3cret_other"}"#,
        ),
    ]);
    for want in [
        "ann@acme.test: Supabase Auth does not know this user (404: User not found); no link was generated, nothing was sent",
        "ann@acme.test: Supabase Auth is rate limiting these requests (429); try again later; no link was generated",
        "ann@acme.test: Supabase Auth failed (503: upstream connect error); no link was generated",
        "ann@acme.test: Supabase Auth answered without a link; no link was generated",
        "ann@acme.test: Supabase Auth made the link for another user than the approved one (or did not say for whom); it was not sent",
    ] {
        let id = request(&t, "ann@acme.test").await;
        let result = approve(&t, id, "failed").await;
        assert!(result.contains(want), "{want}: {result}");
        assert!(not_dms_to(&t, L2).contains(want), "the thread is told: {want}");
    }
    assert_eq!(gotrue.seen().len(), 5, "one call per approval: a 429 is not retried");
    assert!(no_dm(&t), "nothing was sent to anyone");
    // The older answer shape works, and a user may be named by id.
    gotrue.script([Answer::Link { older: true }]);
    let id = request(&t, ANN).await;
    assert!(approve(&t, id, "applied").await.contains("sent privately"));
    let dm = t
        .slack
        .ok_calls("chat.postMessage")
        .into_iter()
        .find(|c| c.body["channel"] == L2)
        .unwrap();
    assert!(dm.body.to_string().contains(&link(6)));
    assert_eq!(copies_in_the_state_store(&t).await, 0);
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_supabase_auth_is_reported_and_sends_nothing() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let t = TestApp::spawn_configured(Backend::Sqlite, |cfg| {
        db.attach(cfg);
        let auth = SupabaseAuth {
            url: gone,
            service_role_key: secrecy::SecretString::from(KEY.to_string()),
        };
        cfg.supabase_auth.insert("production".into(), auth);
    })
    .await;
    let id = request(&t, "bob@acme.test").await;
    let result = approve(&t, id, "failed").await;
    assert!(
        result.contains("bob@acme.test: Supabase Auth refused the connection; no link was generated"),
        "{result}"
    );
    assert!(no_dm(&t));
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_supabase_settings_the_request_is_refused_naming_the_keys() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let t = app(Backend::Sqlite, &db, None).await;
    let reply = t.slash(L2, "/user", "reset-password ann@acme.test").await;
    assert!(
        reply.contains("`targets.production.supabase_url`") && reply.contains("`targets.production.service_role_key`"),
        "{reply}"
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM approval_requests").await, 0);
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supabase_url_edited_between_approval_and_apply_is_refused() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let (approved, other) = (FakeGoTrue::start().await, FakeGoTrue::start().await);
    let mut t = app(Backend::Sqlite, &db, Some(&approved)).await;
    let id = request(&t, "ann@acme.test").await;
    // Someone points the target at another project and the bot restarts.
    t.config.supabase_auth.insert("production".into(), other.config());
    t.restart().await;
    let result = approve(&t, id, "failed").await;
    assert!(
        result.contains("the Supabase Auth endpoint of target `production` (`supabase_url`) changed since approval"),
        "{result}"
    );
    assert!(
        approved.seen().is_empty() && other.seen().is_empty(),
        "neither was called"
    );
    assert!(no_dm(&t));
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banned_deleted_and_changed_users_get_no_link() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let gotrue = FakeGoTrue::start().await;
    let t = app(Backend::Sqlite, &db, Some(&gotrue)).await;
    db.as_superuser("UPDATE auth.users SET banned_until = now() + interval '1 day' WHERE email = 'dee@globex.test'")
        .await;
    db.as_superuser("UPDATE auth.users SET deleted_at = now() WHERE email = 'bob@acme.test'")
        .await;
    for (who, why) in [
        ("dee@globex.test", "the user is banned"),
        ("bob@acme.test", "the user was deleted"),
    ] {
        let reply = t.slash(L2, "/user", &format!("reset-password {who}")).await;
        assert!(
            reply.starts_with(&format!("Refusing: {who} (")) && reply.contains(why),
            "{reply}"
        );
    }
    assert_eq!(t.scalar("SELECT COUNT(*) FROM approval_requests").await, 0);
    // Approved for cy@globex.test, whose email changes before the apply.
    let id = request(&t, "cy@globex.test").await;
    db.as_superuser("UPDATE auth.users SET email = 'cy@initech.test' WHERE email = 'cy@globex.test'")
        .await;
    let result = approve(&t, id, "failed").await;
    assert!(
        result.contains("skipped cy@globex.test: the user's email changed since approval; no link was generated"),
        "{result}"
    );
    assert!(gotrue.seen().is_empty(), "Supabase Auth was never called");
    assert!(no_dm(&t));
    t.finish().await;
    db.cleanup().await;
}

both_backends!(a_recovery_link_reaches_the_requester_and_nowhere_else);
