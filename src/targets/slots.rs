//! Connection slots: how a target keeps to `MAX_CONNECTIONS` whoever asks.
//!
//! The pool alone caps the connections it opens, but a cold pool answers a
//! refused connection only after its whole acquire timeout and then says
//! only "timed out"; one direct attempt fails fast and names why (refused,
//! unknown host, bad password). That attempt used to be made beside the
//! pool, so a storm of diagnostics on a cold or busy pool opened connections
//! beyond its cap. Now every connection is taken under a slot, a permit of
//! a semaphore with `MAX_CONNECTIONS` permits:
//!
//! - a pooled connection is used under one slot, and the pool has as many
//!   connections at most as there are slots;
//! - the direct attempt is made only while holding *every* slot and only
//!   when the pool has no connection at all, so it is then the only one.
//!   One caller at a time makes it (`cold`); the others wait for it and
//!   then find the pool warm, rather than each queueing for every slot.
//!
//! Waiting longer than the connect timeout for a slot is `StepError::Busy`:
//! the step could not check, which says nothing about the data and nothing
//! about the target being down.

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, Postgres};
use tokio::sync::OwnedSemaphorePermit;

use super::{MAX_CONNECTIONS, StepError, Target, classify};

/// A pooled connection, held under one of its target's slots; the slot is
/// given back after the connection has gone back to the pool.
pub struct TargetConn {
    conn: PoolConnection<Postgres>,
    _slot: OwnedSemaphorePermit,
}

impl Deref for TargetConn {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl DerefMut for TargetConn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

impl Target {
    /// A connection from the pool, never one beside it.
    pub async fn acquire(&self) -> Result<TargetConn, StepError> {
        if self.pool.size() == 0
            && let Some(conn) = self.acquire_cold().await?
        {
            return Ok(conn);
        }
        let slot = self.take_slots(1).await?;
        self.pooled(slot).await
    }

    /// Wait up to the connect timeout for `n` slots.
    async fn take_slots(&self, n: u32) -> Result<OwnedSemaphorePermit, StepError> {
        let wait = self.slots.clone().acquire_many_owned(n);
        match tokio::time::timeout(self.connect_timeout, wait).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) => Err(StepError::Unreachable("connection pool closed".into())),
            Err(_) => Err(StepError::Busy(MAX_CONNECTIONS)),
        }
    }

    async fn pooled(&self, slot: OwnedSemaphorePermit) -> Result<TargetConn, StepError> {
        match self.pool.acquire().await {
            Ok(conn) => Ok(TargetConn { conn, _slot: slot }),
            // Under a slot the pool always has room, so a timeout means it
            // kept failing to connect; the next cold attempt names why.
            Err(sqlx::Error::PoolTimedOut) => Err(StepError::Unreachable(format!(
                "no connection within {} ms",
                self.connect_timeout.as_millis()
            ))),
            Err(e) => Err(classify(&e, 0)),
        }
    }

    /// The pool has no connection: try one directly (fast, and it names the
    /// cause) while holding every slot, then take the pool's first one.
    /// `None` when another caller warmed the pool meanwhile.
    async fn acquire_cold(&self) -> Result<Option<TargetConn>, StepError> {
        // The caller ahead makes at most a probe and a connection, each
        // within the connect timeout.
        let Ok(_gate) = tokio::time::timeout(self.connect_timeout * 2, self.cold.lock()).await else {
            return Err(no_answer(self));
        };
        if self.pool.size() > 0 {
            return Ok(None);
        }
        let mut all = self.take_slots(MAX_CONNECTIONS).await?;
        let slot = all.split(1).expect("MAX_CONNECTIONS is at least 1");
        let probe = tokio::time::timeout(self.connect_timeout, PgConnection::connect_with(&self.options)).await;
        match probe {
            Err(_) => return Err(no_answer(self)),
            Ok(Err(e)) => return Err(classify(&e, 0)),
            Ok(Ok(c)) => {
                let _ = c.close().await;
            }
        }
        // Keep the other slots until the pool has its connection, so that
        // nobody else probes meanwhile.
        let conn = self.pooled(slot).await;
        drop(all);
        conn.map(Some)
    }
}

fn no_answer(t: &Target) -> StepError {
    StepError::Unreachable(format!("no answer within {} ms", t.connect_timeout.as_millis()))
}
