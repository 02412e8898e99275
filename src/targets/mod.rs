//! Targets: the application databases catalog commands run against.
//!
//! Pools connect lazily (a target that is down does not stop the bot from
//! starting) with a short connect timeout. Diagnostics run in a `READ ONLY`
//! transaction with `statement_timeout` from the step, and a failure names
//! the target and the cause, never the URL or its password.
//!
//! A target never has more than `MAX_CONNECTIONS` connections open: every
//! connection, pooled or the cold-start probe, is taken under one of that
//! many slots (`slots.rs`), so no caller can open one beside the pool.

pub mod exact;
pub mod rls;
mod slots;
pub mod sqlstate;
pub mod values;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool, Row};
use tokio::sync::Semaphore;

use crate::catalog::args::Bound;
use crate::config::TargetConfig;
use crate::error::UserError;
pub use slots::TargetConn;
pub use sqlstate::SqlState;

/// Connections one target may have open at once, whoever asks: diagnostics,
/// automatic diagnostics, approvals, follow-ups and the health poller share them.
pub const MAX_CONNECTIONS: u32 = 4;

pub struct Target {
    pub name: String,
    pool: PgPool,
    /// One permit per connection the target may have open (see `slots.rs`).
    slots: std::sync::Arc<Semaphore>,
    /// Held by the one caller probing a cold pool.
    cold: tokio::sync::Mutex<()>,
    options: PgConnectOptions,
    pub connect_timeout: Duration,
    pub attempts: u32,
    /// What row-level security hides from this target's role, recently.
    rls: rls::Cache,
}

#[derive(Default)]
pub struct Targets {
    map: BTreeMap<String, Target>,
}

impl Targets {
    pub fn from_config(targets: &BTreeMap<String, TargetConfig>) -> anyhow::Result<Targets> {
        let mut map = BTreeMap::new();
        for (name, t) in targets {
            let options = PgConnectOptions::from_str(t.url.expose_secret())
                .map_err(|_| anyhow::anyhow!("target {name}: the URL does not parse"))?
                .application_name("runbook-bot");
            let pool = PgPoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .min_connections(0)
                .acquire_timeout(t.connect_timeout)
                .idle_timeout(Duration::from_secs(300))
                .connect_lazy_with(options.clone());
            map.insert(
                name.clone(),
                Target {
                    name: name.clone(),
                    pool,
                    slots: std::sync::Arc::new(Semaphore::new(MAX_CONNECTIONS as usize)),
                    cold: tokio::sync::Mutex::new(()),
                    options,
                    connect_timeout: t.connect_timeout,
                    attempts: t.attempts,
                    rls: rls::Cache::default(),
                },
            );
        }
        Ok(Targets { map })
    }

    pub fn get(&self, name: &str) -> Option<&Target> {
        self.map.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    /// The target a catalog command runs against: the one the person named,
    /// else the catalog file's, else the config's default.
    pub fn pick(
        &self,
        named: Option<&str>,
        file_default: Option<&str>,
        config_default: Option<&str>,
    ) -> Result<&Target, UserError> {
        let name = named
            .or(file_default)
            .or(config_default)
            .ok_or_else(|| UserError::new("No target is configured: add one under `[targets]` in the config."))?;
        self.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.names().collect();
            UserError::new(format!(
                "Unknown target `{}`. Targets: {}.",
                crate::slack::text::escape(name),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }
}

/// Why a step did not produce rows, in words safe to show in Slack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("timed out after {0} ms (statement_timeout)")]
    Timeout(u64),
    /// The database refused the statement; `code` says why in a way code
    /// can match on, `message` in PostgreSQL's words.
    #[error("query failed: {}", query_words(code.as_ref(), message))]
    Query { code: Option<SqlState>, message: String },
    /// A serialization failure or deadlock: a concurrent transaction changed
    /// what this one read or wrote.
    #[error("changed by a concurrent transaction")]
    Conflict,
    /// A step needs an extension the target does not have.
    #[error("extension `{0}` is not installed")]
    NotInstalled(String),
    /// Every one of the target's connections stayed in use for the whole
    /// connect timeout: the step did not run, which says nothing about the data.
    #[error("all {0} connections to the target stayed busy; not run")]
    Busy(u32),
}

fn query_words(code: Option<&SqlState>, message: &str) -> String {
    match code {
        Some(c) => format!("{message} ({c})"),
        None => message.to_string(),
    }
}

impl StepError {
    /// Worth another attempt: the database may answer next time.
    pub fn transient(&self) -> bool {
        matches!(self, StepError::Unreachable(_) | StepError::Timeout(_))
    }

    /// A failure with no SQLSTATE (a driver or decoding problem).
    pub fn other(message: impl Into<String>) -> StepError {
        StepError::Query {
            code: None,
            message: message.into(),
        }
    }
}

/// Rows of a step: column names, the first rows as text, and the full count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub total: i64,
}

pub const TOTAL_COLUMN: &str = "__rb_total";

impl Target {
    /// Run one read-only statement in its own `READ ONLY` transaction.
    pub async fn query(&self, sql: &str, params: &[Bound], timeout_ms: u64, limit: u32) -> Result<Table, StepError> {
        self.read(None, sql, params, timeout_ms, limit).await
    }

    /// Like `query`, with `extension`'s schema on the search path, so that
    /// catalog SQL need not know where it is installed (Supabase puts
    /// extensions in `extensions`, which a bot role's path may lack).
    pub async fn query_with_extension(
        &self,
        extension: &str,
        sql: &str,
        params: &[Bound],
        timeout_ms: u64,
        limit: u32,
    ) -> Result<Table, StepError> {
        self.read(Some(extension), sql, params, timeout_ms, limit).await
    }

    async fn read(
        &self,
        extension: Option<&str>,
        sql: &str,
        params: &[Bound],
        timeout_ms: u64,
        limit: u32,
    ) -> Result<Table, StepError> {
        let mut conn = self.acquire().await?;
        let mut tx = conn
            .begin_with("BEGIN READ ONLY")
            .await
            .map_err(|e| classify(&e, timeout_ms))?;
        if let Some(ext) = extension {
            with_extension_schema(&mut tx, ext).await?;
        }
        let table = query_on(&mut tx, sql, params, timeout_ms, limit).await?;
        let _ = tx.rollback().await;
        Ok(table)
    }

    /// `SELECT 1` round trip, for the health diagnostic.
    pub async fn ping(&self) -> Result<Duration, StepError> {
        let started = Instant::now();
        let mut conn = self.acquire().await?;
        conn.execute("SELECT 1").await.map_err(|e| classify(&e, 0))?;
        Ok(started.elapsed())
    }

    /// Connections open now (pooled, idle or in use), for tests and `/metrics`.
    pub fn open_connections(&self) -> u32 {
        self.pool.size()
    }
}

/// Append the schema `ext` is installed in to this transaction's search
/// path (after the rest, so nothing that already resolves changes meaning).
async fn with_extension_schema(conn: &mut PgConnection, ext: &str) -> Result<(), StepError> {
    let schema: Option<String> = sqlx::query_scalar(
        "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = $1",
    )
    .bind(ext)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| classify(&e, 0))?;
    let schema = schema.ok_or_else(|| StepError::NotInstalled(ext.to_string()))?;
    sqlx::query(
        "SELECT set_config('search_path', concat_ws(', ', nullif(current_setting('search_path'), ''), quote_ident($1)), true)",
    )
    .bind(schema)
    .execute(&mut *conn)
    .await
    .map_err(|e| classify(&e, 0))?;
    Ok(())
}

pub(crate) fn bind_all<'q, Q: Bindable<'q>>(mut q: Q, params: &[Bound]) -> Q {
    for p in params {
        q = match p {
            Bound::Uuid(v) => q.bind_uuid(*v),
            Bound::Text(v) => q.bind_text(v.clone()),
            Bound::TextList(v) => q.bind_texts(v.clone()),
            Bound::Int(v) => q.bind_int(*v),
        };
    }
    q
}

/// `query` and `query_as` both take bound values the same way.
pub(crate) trait Bindable<'q>: Sized {
    fn bind_uuid(self, v: Option<uuid::Uuid>) -> Self;
    fn bind_text(self, v: Option<String>) -> Self;
    fn bind_texts(self, v: Vec<String>) -> Self;
    fn bind_int(self, v: Option<i64>) -> Self;
}

macro_rules! bindable {
    ($($t:ty),*) => {$(
        impl<'q> Bindable<'q> for $t {
            fn bind_uuid(self, v: Option<uuid::Uuid>) -> Self { self.bind(v) }
            fn bind_text(self, v: Option<String>) -> Self { self.bind(v) }
            fn bind_texts(self, v: Vec<String>) -> Self { self.bind(v) }
            fn bind_int(self, v: Option<i64>) -> Self { self.bind(v) }
        }
    )*};
}
bindable!(
    sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    sqlx::query::QueryAs<'q, sqlx::Postgres, (String, i64), sqlx::postgres::PgArguments>
);

/// Run one statement inside the caller's transaction, with its statement
/// timeout; at most `limit` rows come back, plus the total count.
pub async fn query_on(
    conn: &mut PgConnection,
    sql: &str,
    params: &[Bound],
    timeout_ms: u64,
    limit: u32,
) -> Result<Table, StepError> {
    // Integers from validated config: nothing user-typed reaches this string.
    conn.execute(sqlx::AssertSqlSafe(format!(
        "SET LOCAL statement_timeout = {timeout_ms}"
    )))
    .await
    .map_err(|e| classify(&e, timeout_ms))?;
    // MATERIALIZED plans the statement on its own: a LIMIT around a plain
    // subquery would push "first rows fast" plans into it (index scans and
    // nested loops that are many times slower when every row is counted).
    let wrapped =
        format!("WITH q AS MATERIALIZED ({sql}\n) SELECT q.*, count(*) OVER () AS {TOTAL_COLUMN} FROM q LIMIT {limit}");
    let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(wrapped)), params)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify(&e, timeout_ms))?;
    let mut table = Table::default();
    if let Some(first) = rows.first() {
        table.columns = first
            .columns()
            .iter()
            .map(|c| sqlx::Column::name(c).to_string())
            .collect();
        table.columns.retain(|c| c != TOTAL_COLUMN);
        table.total = first.try_get::<i64, _>(TOTAL_COLUMN).unwrap_or(rows.len() as i64);
    }
    table.rows = rows
        .iter()
        .map(|r| values::row_to_strings(r, table.columns.len()))
        .collect();
    Ok(table)
}

/// Run one data-changing statement inside the caller's transaction;
/// returns the rows it changed.
pub async fn execute_on(conn: &mut PgConnection, sql: &str, params: &[Bound]) -> Result<u64, StepError> {
    let done = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql.to_string())), params)
        .execute(&mut *conn)
        .await
        .map_err(|e| classify(&e, 0))?;
    Ok(done.rows_affected())
}

/// Map a driver error to words that carry no URL, host or password.
pub fn classify(e: &sqlx::Error, timeout_ms: u64) -> StepError {
    match e {
        sqlx::Error::Io(io) => StepError::Unreachable(match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::TimedOut => "connection timed out".into(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => "connection reset".into(),
            std::io::ErrorKind::NotFound => "host not found".into(),
            kind => format!("network error ({kind})"),
        }),
        sqlx::Error::Tls(_) => StepError::Unreachable("TLS handshake failed".into()),
        sqlx::Error::PoolTimedOut => StepError::Unreachable("no connection within the connect timeout".into()),
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => StepError::Unreachable("connection pool closed".into()),
        sqlx::Error::Database(db) => {
            let code = db.code().as_deref().and_then(SqlState::parse);
            match code {
                Some(SqlState::QUERY_CANCELED) => StepError::Timeout(timeout_ms),
                Some(SqlState::SERIALIZATION_FAILURE | SqlState::DEADLOCK_DETECTED) => StepError::Conflict,
                Some(SqlState::INVALID_PASSWORD | SqlState::INVALID_AUTHORIZATION) => {
                    StepError::Unreachable("authentication failed".into())
                }
                Some(SqlState::INVALID_CATALOG_NAME) => StepError::Unreachable("database does not exist".into()),
                Some(SqlState::CANNOT_CONNECT_NOW) => StepError::Unreachable("the database is starting up".into()),
                Some(SqlState::TOO_MANY_CONNECTIONS) => StepError::Unreachable("too many connections".into()),
                code => StepError::Query {
                    code,
                    message: db.message().chars().take(300).collect(),
                },
            }
        }
        sqlx::Error::Configuration(_) => StepError::Unreachable("bad target configuration".into()),
        other => StepError::other(other.to_string().chars().take(200).collect::<String>()),
    }
}
