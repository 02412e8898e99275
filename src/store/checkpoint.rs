//! SQLite's write-ahead log is copied back into the database file here, off
//! the writer. Left to itself SQLite checkpoints inside the commit that takes
//! the log past 1,000 pages, syncing the database file while that commit
//! still holds the one writer every person's command queues for: on
//! `/incident status`, 8 concurrent, that was p95 7–10 ms and p99 11–20 ms
//! against p95 2.5–4.5 ms and p99 5.7 ms without it. So the connections
//! open with `wal_autocheckpoint = 0` (`Store::connect`) and this task runs
//! a PASSIVE checkpoint on a reader connection every `INTERVAL`: PASSIVE
//! copies what no reader still needs and never waits for the writer, which
//! goes on appending meanwhile.
//!
//! The log only starts over from its beginning when a write begins after
//! *everything* in it was copied. Under a steady stream of writes that never
//! happens on its own: each checkpoint ends a little behind the writer, and
//! the log grew by 100 MB a second under `/incident status` (1 GB after 16,000
//! commands). So each round ends with a short PASSIVE on the writer
//! connection itself, taken after people like any background writer: no
//! write is under way there, so it copies the few frames appended since the
//! reader's pass, and the next write restarts the log. `journal_size_limit`
//! then trims the file, so its size stays bounded by what about one round
//! writes.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Backend, Store};

const INTERVAL: Duration = Duration::from_millis(250);

pub async fn run(store: Store, cancel: CancellationToken) {
    if store.backend != Backend::Sqlite {
        return;
    }
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(INTERVAL) => {}
        }
        if let Err(e) = checkpoint(&store, &mut seen).await {
            tracing::warn!(error = ?e, "WAL checkpoint failed; retrying");
        }
    }
    // A clean stop leaves the log copied back, where no reader still needs it.
    if let Err(e) = checkpoint(&store, &mut seen).await {
        tracing::warn!(error = ?e, "WAL checkpoint on shutdown failed");
    }
}

/// One round: frames in the log, and how many of them are now in the
/// database file. `seen` is the log's length after the round before; a log
/// that has not grown since and is all copied needs nothing more.
pub async fn checkpoint(store: &Store, seen: &mut i64) -> anyhow::Result<(i64, i64)> {
    // The bulk, beside the writer.
    let (log, copied) = passive(&mut *store.pool.acquire().await?).await?;
    if log == 0 || (log == *seen && copied == log) {
        *seen = log;
        return Ok((log, copied));
    }
    store.defer_to_people().await;
    // What came in while people went first, still beside the writer.
    passive(&mut *store.pool.acquire().await?).await?;
    // The last few frames, with no write under way.
    let (log, copied) = passive(&mut *store.writer.acquire().await?).await?;
    *seen = log;
    Ok((log, copied))
}

async fn passive(conn: &mut sqlx::AnyConnection) -> anyhow::Result<(i64, i64)> {
    let (_busy, log, copied): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(conn).await?;
    Ok((log, copied))
}

#[cfg(test)]
mod tests {
    use super::super::temp_sqlite;
    use super::*;

    /// One write transaction: a row of about `size` bytes.
    async fn commit_row(store: &Store, n: i64, size: usize) {
        let mut tx = store.begin().await.unwrap();
        sqlx::query("INSERT INTO slack_events (event_id, received_at) VALUES ($1, $2)")
            .bind(format!("e{n}-{}", "x".repeat(size)))
            .bind(n)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// With SQLite's own checkpoints off, the log only reaches the database
    /// file through this task; a reader (`query_only`) connection may run it.
    #[tokio::test]
    async fn a_reader_copies_the_log_back_and_commits_leave_it_to_us() {
        let (store, dir) = temp_sqlite().await;
        checkpoint(&store, &mut 0).await.unwrap();
        for n in 0..600 {
            commit_row(&store, n, 16_000).await;
        }
        // Twice the 1,000 pages' worth of commits, none of them checkpointed.
        let wal = dir.path().join("s.db-wal");
        let before = std::fs::metadata(&wal).unwrap().len();
        assert!(
            before > 4096 * 2000,
            "the log holds {before} bytes: a commit checkpointed"
        );
        let (log, copied) = checkpoint(&store, &mut 0).await.unwrap();
        assert!(log > 2000 && copied == log, "{copied} of {log} frames copied");
    }

    /// Under a steady stream of commits the log still starts over from its
    /// beginning after each round; a pass on a reader alone never catches
    /// up with the writer, and the log grew for as long as the writes went on.
    #[tokio::test]
    async fn the_log_restarts_under_steady_writes() {
        let (store, dir) = temp_sqlite().await;
        let writes = tokio::spawn({
            let store = store.clone();
            async move {
                let started = std::time::Instant::now();
                let mut n = 0;
                while started.elapsed() < Duration::from_secs(2) {
                    commit_row(&store, n, 4_000).await;
                    n += 1;
                }
            }
        });
        // The log's header counts its restarts (bytes 12..16, big-endian).
        let wal = dir.path().join("s.db-wal");
        let restarts = || {
            let header = std::fs::read(&wal).unwrap();
            u32::from_be_bytes(header[12..16].try_into().unwrap())
        };
        let (mut seen, mut rounds) = (0, 0);
        let first = restarts();
        while !writes.is_finished() {
            tokio::time::sleep(INTERVAL).await;
            checkpoint(&store, &mut seen).await.unwrap();
            rounds += 1;
        }
        writes.await.unwrap();
        let restarts = restarts() - first;
        assert!(
            restarts >= 2,
            "the log started over {restarts} times in {rounds} rounds"
        );
    }
}
