//! The bot's own state store: SQLite (default, one replica) or PostgreSQL
//! (several replicas). One `AnyPool` and portable SQL (`$n` placeholders,
//! `ON CONFLICT`, `RETURNING`) keep both backends on the same code path; the
//! schema differs only in its migrations folder.

pub mod events;
pub mod janitor;
pub mod lease;
pub mod timeline;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pub pool: AnyPool,
    pub backend: Backend,
}

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    pub async fn connect(url: &SecretString) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let raw = url.expose_secret();
        let (backend, url) = if raw.starts_with("sqlite:") {
            // Create the file on first start; `mode` may already be given.
            let u = if raw.contains("mode=") {
                raw.to_string()
            } else if raw.contains('?') {
                format!("{raw}&mode=rwc")
            } else {
                format!("{raw}?mode=rwc")
            };
            (Backend::Sqlite, u)
        } else {
            (Backend::Postgres, raw.to_string())
        };
        // Never put the URL in an error: it may carry a password.
        let opts = AnyConnectOptions::from_str(&url).context("state store URL does not parse")?;
        let mut pool = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 });
        if backend == Backend::Sqlite {
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = pool
            .connect_with(opts)
            .await
            .with_context(|| format!("cannot connect to the {backend:?} state store"))?;
        Ok(Store { pool, backend })
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator.run(&self.pool).await.context("state store migration failed")
    }

    /// Start a write transaction. SQLite gets `BEGIN IMMEDIATE` so the write
    /// lock is taken up front: a deferred transaction that read first could
    /// otherwise fail with SQLITE_BUSY when another writer committed meanwhile.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
