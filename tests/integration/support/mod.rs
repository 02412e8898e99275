//! Test harness: spawn the real `App` on port 0 against a fresh state
//! database (a SQLite file or a new PostgreSQL database), point its real
//! Slack client at the fake Slack, and send requests signed like Slack's.

pub mod alertmanager;
pub mod approvals;
pub mod console;
pub mod diagnose;
pub mod exposition;
pub mod fake_slack;
pub mod fake_socket;
pub mod supabase;
pub mod webdriver;

use std::path::PathBuf;
use std::sync::Arc;

use runbook_bot::clock::OffsetClock;
use runbook_bot::config::{Config, Level};
use runbook_bot::slack::ids::RoleSubject;
use runbook_bot::slack::verify::sign;
use runbook_bot::{App, clock::Clock};
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};

pub use approvals::*;
pub use fake_slack::{FakeSlack, Scripted};
pub use fake_socket::FakeSocket;
pub use supabase::{AppSchema, SupabaseDb};

pub const SECRET: &str = "test-signing-secret";
pub const ALERT_TOKEN: &str = "test-alert-token";
pub const CHANNEL: &str = "CINCIDENTS";
/// Users with each level (see `roles`).
pub const L1: &str = "U0SUPPORT";
pub const L2: &str = "U0ONCALL";
pub const L2B: &str = "U0ONCALL2";
pub const L3: &str = "U0LEAD";
pub const NOBODY: &str = "U0STRANGER";

/// A form POST signed the way Slack signs it, with `secret`, at `ts`: for
/// callers that hold no `TestApp` (an app in a child process, the benches).
pub fn signed_form(req: reqwest::RequestBuilder, secret: &str, ts: i64, body: String) -> reqwest::RequestBuilder {
    req.header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", sign(secret.as_bytes(), ts, body.as_bytes()))
        .body(body)
}

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// For the benchmarks: PostgreSQL when `postgres` is among the arguments.
    #[allow(dead_code, reason = "the benches include this module; the tests do not call it")]
    pub fn from_args() -> Backend {
        if std::env::args().any(|a| a == "postgres") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// PostgreSQL for tests: the machine's server, trust auth. Unreachable is a
/// loud failure, never a skip.
pub fn pg_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Create a new, empty PostgreSQL database; returns its name and URL.
/// A failed attempt is retried a few times (a busy server can refuse one);
/// unreachable PostgreSQL is a loud failure.
async fn create_database(prefix: &str) -> (String, String) {
    let admin = pg_admin_url();
    let mut conn = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is required for the tests and is unreachable at {admin}: {e}"));
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut attempt = 0;
    // template0 takes no connections, so a session someone else holds on
    // template1 cannot make our CREATE DATABASE fail.
    while let Err(e) = conn
        .execute(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE template0"
        )))
        .await
    {
        attempt += 1;
        assert!(attempt < 10, "CREATE DATABASE {name} failed: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
    }
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b)
        .expect("TEST_POSTGRES_URL must end in /dbname");
    (name.clone(), format!("{base}/{name}"))
}

async fn drop_database(name: &str) {
    if let Ok(mut conn) = PgConnection::connect(&pg_admin_url()).await {
        let _ = conn
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .await;
    }
}

/// Drops the PostgreSQL database a test created when it goes out of scope,
/// also when the test panics; `cleanup` does it earlier, awaited.
struct DropGuard(Option<String>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        let Some(name) = self.0.take() else { return };
        // Drop cannot await: drop the database from a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(drop_database(&name));
            }
        })
        .join();
    }
}

impl DropGuard {
    async fn drop_now(mut self) {
        if let Some(name) = self.0.take() {
            drop_database(&name).await;
        }
    }
}

/// A state database that exists for one test.
pub struct TestDb {
    pub url: String,
    guard: DropGuard,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path: PathBuf = dir.path().join("state.db");
                TestDb {
                    url: format!("sqlite://{}", path.display()),
                    guard: DropGuard(None),
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let (name, url) = create_database("rb_test").await;
                TestDb {
                    url,
                    guard: DropGuard(Some(name)),
                    _dir: None,
                }
            }
        }
    }

    /// Drop a PostgreSQL test database (SQLite files go with their temp dir).
    pub async fn cleanup(self) {
        self.guard.drop_now().await;
    }
}

pub struct TestApp {
    pub app: Option<App>,
    pub addr: String,
    pub slack: FakeSlack,
    pub db: TestDb,
    pub clock: Arc<OffsetClock>,
    pub http: reqwest::Client,
    pub config: Config,
}

pub fn config(db_url: &str, slack: &FakeSlack) -> Config {
    let mut c = Config::for_tests(db_url, &slack.api_url(), SECRET);
    c.slack.incident_channel = runbook_bot::slack::ids::ChannelId::parse(CHANNEL).unwrap();
    for (id, level) in [(L1, Level::L1), (L2, Level::L2), (L2B, Level::L2), (L3, Level::L3)] {
        c.roles.subjects.push((RoleSubject::parse(id).unwrap(), level));
    }
    c.alerts.token = Some(secrecy::SecretString::from(ALERT_TOKEN.to_string()));
    // The health poller runs only in the tests that turn it on.
    c.alerts.health_poll = std::time::Duration::ZERO;
    // Fast pacing and backoff keep tests short; the pacing itself is unit-tested.
    c.outbox.per_channel_per_second = 50.0;
    c.outbox.burst = 50;
    c.outbox.base_backoff = std::time::Duration::from_millis(50);
    c
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        let slack = FakeSlack::start().await;
        let db = TestDb::new(backend).await;
        let config = config(&db.url, &slack);
        Self::spawn_with(config, slack, db).await
    }

    pub async fn spawn_with(config: Config, slack: FakeSlack, db: TestDb) -> TestApp {
        let clock = OffsetClock::new();
        let app = App::build_with_clock(config.clone(), clock.clone())
            .await
            .expect("app builds");
        let addr = format!("http://{}", app.addr);
        TestApp {
            app: Some(app),
            addr,
            slack,
            db,
            clock,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            config,
        }
    }

    /// An app on a fresh state database and fake Slack, with the test
    /// config adjusted by `adjust`.
    pub async fn spawn_configured(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let slack = FakeSlack::start().await;
        let db = TestDb::new(backend).await;
        let mut config = config(&db.url, &slack);
        adjust(&mut config);
        Self::spawn_with(config, slack, db).await
    }

    /// Stop the app and start a fresh one on the same database and fake Slack.
    pub async fn restart(&mut self) {
        self.app.take().unwrap().shutdown().await;
        let app = App::build_with_clock(self.config.clone(), self.clock.clone())
            .await
            .expect("app restarts");
        self.addr = format!("http://{}", app.addr);
        self.app = Some(app);
    }

    pub fn state(&self) -> &runbook_bot::state::AppState {
        &self.app.as_ref().unwrap().state
    }

    /// Hold writes to `table` until the returned transaction is rolled back,
    /// so a command that writes there cannot finish inline: on SQLite the
    /// open `BEGIN IMMEDIATE` holds the one write lock, on PostgreSQL the
    /// table is locked.
    pub async fn hold_writes(&self, table: &'static str) -> sqlx::Transaction<'static, sqlx::Any> {
        let store = &self.state().store;
        let mut blocker = store.begin().await.unwrap();
        if store.backend == runbook_bot::store::Backend::Postgres {
            sqlx::query(sqlx::AssertSqlSafe(format!("LOCK TABLE {table} IN EXCLUSIVE MODE")))
                .execute(&mut *blocker)
                .await
                .unwrap();
        }
        blocker
    }

    pub async fn finish(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        self.db.cleanup().await;
    }

    pub fn now_secs(&self) -> i64 {
        self.clock.now_secs()
    }

    /// POST a body signed as Slack would, at `now + skew_secs`.
    pub async fn post_signed(&self, path: &str, content_type: &str, body: String, skew_secs: i64) -> reqwest::Response {
        let ts = self.now_secs() + skew_secs;
        let sig = sign(SECRET.as_bytes(), ts, body.as_bytes());
        let url = format!("{}{path}", self.addr);
        self.post_with_slack_headers(&url, content_type, Some(ts), Some(sig), body)
            .await
    }

    /// POST to `url` with exactly these Slack headers (`None` leaves one
    /// out): the building block of signed, forged and unsigned requests.
    pub async fn post_with_slack_headers(
        &self,
        url: &str,
        content_type: &str,
        ts: Option<i64>,
        sig: Option<String>,
        body: String,
    ) -> reqwest::Response {
        let mut req = self.http.post(url).header("content-type", content_type);
        if let Some(ts) = ts {
            req = req.header("x-slack-request-timestamp", ts.to_string());
        }
        if let Some(sig) = sig {
            req = req.header("x-slack-signature", sig);
        }
        req.body(body).send().await.unwrap()
    }

    pub fn command_body(&self, user: &str, channel: &str, text: &str) -> String {
        serde_urlencoded::to_string([
            ("token", "legacy-unused"),
            ("team_id", "T0TEAM"),
            ("team_domain", "acme"),
            ("channel_id", channel),
            ("channel_name", "incidents"),
            ("user_id", user),
            ("user_name", "someone"),
            ("command", "/incident"),
            ("text", text),
            (
                "response_url",
                &self
                    .slack
                    .response_url(&format!("cmd-{}", uuid::Uuid::new_v4().simple())),
            ),
            ("trigger_id", "13345224609.738474920.8088930838d88f008e0"),
            ("api_app_id", "A0APP"),
        ])
        .unwrap()
    }

    /// Run a slash command; returns the ephemeral text Slack would show.
    pub async fn command(&self, user: &str, text: &str) -> String {
        self.command_in(user, CHANNEL, text).await
    }

    pub async fn command_in(&self, user: &str, channel: &str, text: &str) -> String {
        self.slash_in(user, channel, "/incident", text).await
    }

    /// Any slash command (`/diagnose …`), in the incident channel.
    pub async fn slash(&self, user: &str, command: &str, text: &str) -> String {
        self.slash_in(user, CHANNEL, command, text).await
    }

    pub async fn slash_in(&self, user: &str, channel: &str, command: &str, text: &str) -> String {
        let body = self
            .command_body(user, channel, text)
            .replace("%2Fincident", &command.replace('/', "%2F"));
        let resp = self
            .post_signed("/slack/commands", "application/x-www-form-urlencoded", body, 0)
            .await;
        assert_eq!(resp.status(), 200, "command `{text}` was not accepted");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["response_type"], "ephemeral");
        v["text"].as_str().unwrap().to_string()
    }

    /// Click a button on a message, as Slack's block_actions payload.
    pub async fn click(&self, user: &str, action_id: &str, value: &str) -> reqwest::Response {
        let payload = block_actions(user, CHANNEL, action_id, value, &self.slack.response_url("click"));
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        self.post_signed("/slack/interactions", "application/x-www-form-urlencoded", body, 0)
            .await
    }

    /// `/metrics` as Prometheus asks for it: OpenMetrics.
    pub async fn openmetrics(&self) -> String {
        let r = self
            .http
            .get(format!("{}/metrics", self.addr))
            .header(
                "accept",
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            )
            .send()
            .await
            .unwrap();
        let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        r.text().await.unwrap()
    }

    /// The Prometheus text of `/metrics` (the classic text format).
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// One counter's value as `/metrics` serves it, by its series as
    /// written there (`name{label="value",…}`); 0 while it has no sample.
    pub async fn counter(&self, series: &str) -> u64 {
        let text = self.metrics().await;
        let line = text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' '));
        line.map_or(0, |v| v.parse().unwrap_or_else(|e| panic!("{series} {v}: {e}")))
    }

    /// POST a monitoring webhook with the alert token.
    pub async fn alert(&self, source: &str, body: &str) -> reqwest::Response {
        self.alert_with(source, &[], body).await
    }

    /// A monitoring webhook with extra headers (a source's signature, Sentry's resource).
    pub async fn alert_with(&self, source: &str, headers: &[(&str, &str)], body: &str) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/alerts/{source}", self.addr))
            .bearer_auth(ALERT_TOKEN)
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(body.to_string()).send().await.unwrap()
    }

    pub async fn scalar(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.state().store.pool)
            .await
            .unwrap()
    }

    /// Wait until every alert payload received has been processed.
    pub async fn inbox_processed(&self, secs: u64) {
        self.until_none(
            "SELECT COUNT(*) FROM alert_inbox WHERE processed_at IS NULL",
            "unprocessed alert payloads",
            secs,
        )
        .await;
    }

    /// Wait until the outbox has nothing left to deliver.
    pub async fn drained(&self, secs: u64) {
        self.until_none(
            "SELECT COUNT(*) FROM outbox WHERE status = 'pending'",
            "pending outbox rows",
            secs,
        )
        .await;
    }

    /// Wait until `count` (a `SELECT COUNT(*)`) reads 0.
    async fn until_none(&self, count: &'static str, what: &str, secs: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let n = self.scalar(count).await;
            if n == 0 {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "still {n} {what}");
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }
}

pub fn block_actions(user: &str, channel: &str, action_id: &str, value: &str, response_url: &str) -> Value {
    serde_json::json!({
        "type": "block_actions",
        "team": {"id": "T0TEAM", "domain": "acme"},
        "user": {"id": user, "username": "someone", "team_id": "T0TEAM"},
        "api_app_id": "A0APP",
        "token": "legacy-unused",
        "container": {"type": "message", "message_ts": "1700000000.000200", "channel_id": channel, "is_ephemeral": false},
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "channel": {"id": channel, "name": "incidents"},
        "response_url": response_url,
        "actions": [{
            "type": "button",
            "action_id": action_id,
            "block_id": "b1",
            "text": {"type": "plain_text", "text": "Acknowledge"},
            "value": value,
            "action_ts": "1700000001.000300"
        }]
    })
}

/// Generate one test per backend from an `async fn(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}

impl TestDb {
    /// The PostgreSQL database's name, when it is one.
    pub fn pg_name(&self) -> Option<&str> {
        self.guard.0.as_deref()
    }
}

/// Whether a database of this name exists on the test server.
pub async fn database_exists(name: &str) -> bool {
    let mut conn = PgConnection::connect(&pg_admin_url()).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    n == 1
}
