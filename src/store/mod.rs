//! The bot's own state store: SQLite (default, one replica) or PostgreSQL
//! (several replicas). `AnyPool`s and portable SQL (`$n` placeholders,
//! `ON CONFLICT`, `RETURNING`) keep both backends on the same code path; the
//! schema differs only in its migrations folder.
//!
//! SQLite has one writer at a time. Writers that each hold a connection
//! wait for one another inside SQLite's busy handler, which sleeps in
//! growing steps (hundreds of milliseconds under load), so on SQLite every
//! write goes through one connection (`writer`): writers queue for it in
//! order, in the pool's fair queue, and readers use their own connections
//! (WAL lets them read while a write is under way). Reader connections are
//! `query_only`, so a write sent to the wrong pool fails instead of
//! contending. On PostgreSQL both are the same pool.

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
    /// Reads.
    pub pool: AnyPool,
    /// Writes: one connection on SQLite, the same pool on PostgreSQL.
    pub writer: AnyPool,
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
        let connect = |max: u32, read_only: bool| {
            let mut pool = AnyPoolOptions::new()
                .acquire_timeout(Duration::from_secs(5))
                .max_connections(max);
            if backend == Backend::Sqlite {
                pool = pool.after_connect(move |conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA mmap_size = 268435456; PRAGMA cache_size = -16384;")
                            .await?;
                        if read_only {
                            conn.execute("PRAGMA query_only = ON;").await?;
                        }
                        Ok(())
                    })
                });
            }
            pool.connect_with(opts.clone())
        };
        let unreachable = || format!("cannot connect to the {backend:?} state store");
        let store = match backend {
            Backend::Sqlite => {
                // The writer first: it creates the file and switches it to WAL.
                let writer = connect(1, false).await.with_context(unreachable)?;
                let pool = connect(4, true).await.with_context(unreachable)?;
                Store { pool, writer, backend }
            }
            Backend::Postgres => {
                let pool = connect(10, false).await.with_context(unreachable)?;
                Store {
                    writer: pool.clone(),
                    pool,
                    backend,
                }
            }
        };
        Ok(store)
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator.run(&self.writer).await.context("state store migration failed")
    }

    /// Start a write transaction. SQLite gets `BEGIN IMMEDIATE` so the write
    /// lock is taken up front: a deferred transaction that read first could
    /// otherwise fail with SQLITE_BUSY when another writer committed meanwhile.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.writer.begin().await,
        }
    }

    /// Close both pools.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
