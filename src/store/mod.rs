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
//! contending. People's transactions queued for that connection share one
//! commit (`group`). On PostgreSQL both are the same pool.

pub mod checkpoint;
pub mod events;
pub mod group;
pub mod janitor;
pub mod lease;
pub mod timeline;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use tokio::sync::Notify;

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
    people: Arc<PeopleFirst>,
    /// People's open SQLite transaction, shared (`group`).
    group: Arc<tokio::sync::Mutex<group::Group>>,
}

/// On SQLite, writers queue for the one writer connection in arrival order.
/// During an alert storm several background writers can be queued at once
/// (the alert processor, whose transactions run to hundreds of statements,
/// automatic diagnostics' results), and a person's command would wait behind
/// all of them. People's transactions announce themselves here while they
/// wait; background writers start a transaction only when no person is
/// waiting, so a person waits for at most the one already running. (sqlx's
/// pool queue is FIFO with no priorities, hence this small gate.)
#[derive(Default)]
struct PeopleFirst {
    waiting: AtomicUsize,
    none_waiting: Notify,
}

/// The longest a background writer yields to people before it queues anyway.
const MAX_DEFERENCE: Duration = Duration::from_millis(200);

/// A person's place in the writer queue, given up once they have the writer
/// (or gave up on it).
struct Waiting<'a>(&'a PeopleFirst);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.0.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none_waiting.notify_waiters();
        }
    }
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
                // A file cannot drop a connection the way a network can: no
                // ping before every acquire (a round trip to SQLite's thread).
                pool = pool.test_before_acquire(false).after_connect(move |conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA mmap_size = 268435456; PRAGMA cache_size = -16384; PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;")
                            .await?;
                        if read_only {
                            conn.execute("PRAGMA query_only = ON;").await?;
                        } else {
                            // People's savepoints (`group`) copy each page they
                            // change into a statement journal, which SQLite moves
                            // to a temporary file past 64 KiB: keep it in memory.
                            conn.execute("PRAGMA temp_store = MEMORY;").await?;
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
                Store {
                    pool,
                    writer,
                    backend,
                    people: Arc::default(),
                    group: Arc::default(),
                }
            }
            Backend::Postgres => {
                let pool = connect(10, false).await.with_context(unreachable)?;
                Store {
                    writer: pool.clone(),
                    pool,
                    backend,
                    people: Arc::default(),
                    group: Arc::default(),
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

    /// `begin` for what a person is waiting on (a command, a click): goes
    /// before background writers that have not started yet, and on SQLite
    /// shares its transaction with the people queued behind it (`group`).
    pub async fn begin_for_person(&self) -> Result<group::PersonTx, sqlx::Error> {
        self.begin_for_person_lazy().await?.ready().await
    }

    /// `begin_for_person` whose first statement may carry what has to run
    /// before it in a SQLite group, saving a round trip (`LazyPersonTx`).
    pub async fn begin_for_person_lazy(&self) -> Result<group::LazyPersonTx, sqlx::Error> {
        match self.backend {
            Backend::Postgres => Ok(group::LazyPersonTx::ready_made(group::PersonTx::Own(
                self.begin().await?,
            ))),
            Backend::Sqlite => group::begin(&self.writer, &self.group, &self.people).await,
        }
    }

    /// `begin` for bulk background work (alert processing): waits until no
    /// person is waiting for the writer, or `MAX_DEFERENCE` at most. On
    /// PostgreSQL writers do not share one connection, so nothing waits.
    pub async fn begin_in_background(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        self.defer_to_people().await;
        self.begin().await
    }

    /// Wait until no person is waiting for the writer, or `MAX_DEFERENCE`
    /// at most; on PostgreSQL nothing waits.
    pub async fn defer_to_people(&self) {
        if self.backend == Backend::Sqlite {
            // People typing back to back could keep the count above zero for
            // good; background work yields for a bounded time, then queues.
            let _ = tokio::time::timeout(MAX_DEFERENCE, async {
                loop {
                    let none_waiting = self.people.none_waiting.notified();
                    if self.people.waiting.load(Ordering::Acquire) == 0 {
                        break;
                    }
                    none_waiting.await;
                }
            })
            .await;
        }
    }

    /// Close both pools.
    pub async fn close(&self) {
        group::close(&self.group).await;
        self.pool.close().await;
        self.writer.close().await;
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// A fresh, migrated SQLite store in a temporary directory, for this
/// module's tests and its children's (the directory goes with the guard).
#[cfg(test)]
async fn temp_sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = SecretString::from(format!("sqlite://{}", dir.path().join("s.db").display()));
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A background writer that is waiting lets people who come after it go
    /// first; without the gate it would hold its place in the FIFO queue.
    #[tokio::test]
    async fn people_go_before_waiting_background_writers() {
        let (store, _dir) = temp_sqlite().await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let busy = store.begin().await.unwrap();
        let take = |who: &'static str, person: bool| {
            let (store, order) = (store.clone(), order.clone());
            tokio::spawn(async move {
                let pause = || tokio::time::sleep(Duration::from_millis(20));
                if person {
                    let tx = store.begin_for_person().await.unwrap();
                    order.lock().unwrap().push(who);
                    pause().await;
                    tx.commit().await.unwrap();
                } else {
                    let tx = store.begin_in_background().await.unwrap();
                    order.lock().unwrap().push(who);
                    pause().await;
                    tx.commit().await.unwrap();
                }
            })
        };
        let settle = || tokio::time::sleep(Duration::from_millis(50));
        let first = take("first person", true);
        settle().await;
        let background = take("background", false);
        settle().await;
        let later = take("later person", true);
        settle().await;
        busy.commit().await.unwrap();
        for t in [first, background, later] {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["first person", "later person", "background"]);
    }
}
