//! Readiness, checked in the background: a worker asks the state store
//! every `http.readiness_check` and keeps the answer here; `/readyz` and
//! `/metrics` read it. A scrape or probe storm therefore costs no query,
//! and an unauthenticated client cannot make the bot query its store.
//! The check is the outbox's backlog (`Outbox::backlog`): one read answers
//! both whether the store is reachable and the backlog gauges of `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::OutboxBacklog;
use crate::outbox::Outbox;

/// How long one check may take before it counts as a failure.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The last check's result, shared by the worker and the handlers.
#[derive(Clone)]
pub struct Readiness(Arc<watch::Sender<Option<Check>>>);

#[derive(Clone, Debug)]
struct Check {
    at: Instant,
    /// What waits in the outbox, or why the store did not answer.
    outcome: Result<OutboxBacklog, &'static str>,
}

/// What `/readyz` says.
#[derive(Debug, PartialEq, Eq)]
pub enum Status {
    /// The store answered; this is what waits in the outbox.
    Ready {
        backlog: OutboxBacklog,
    },
    NotReady(&'static str),
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness(Arc::new(watch::Sender::new(None)))
    }
}

impl Readiness {
    /// The last answer, unless it is older than three check intervals (the
    /// worker is stuck or gone: that is not ready either).
    pub fn status(&self, every: Duration) -> Status {
        let last = self.0.borrow().clone();
        match last {
            None => Status::NotReady("state store not checked yet"),
            Some(c) if c.at.elapsed() > every * 3 + CHECK_TIMEOUT => Status::NotReady("state store check is stale"),
            Some(Check {
                outcome: Ok(backlog), ..
            }) => Status::Ready { backlog },
            Some(Check { outcome: Err(why), .. }) => Status::NotReady(why),
        }
    }

    /// The outbox's backlog as of the last check, for `/metrics`; `None`
    /// whenever `/readyz` would say not ready.
    pub fn backlog(&self, every: Duration) -> Option<OutboxBacklog> {
        match self.status(every) {
            Status::Ready { backlog } => Some(backlog),
            Status::NotReady(_) => None,
        }
    }

    /// Ask the store once and remember the answer.
    pub async fn check(&self, outbox: &Outbox) {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, outbox.backlog()).await {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => {
                tracing::warn!(error = ?e, "readiness: state store unreachable");
                Err("state store unreachable")
            }
            Err(_) => Err("state store timed out"),
        };
        self.0.send_replace(Some(Check {
            at: Instant::now(),
            outcome,
        }));
    }
}

/// Check every `every` until shutdown. The app checks once before it
/// serves, so the first check here waits a full interval (checking again at
/// once only doubled the start-up query, and raced whatever happened to the
/// store in between).
pub async fn run(readiness: Readiness, outbox: Outbox, every: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        readiness.check(&outbox).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(n: i64) -> OutboxBacklog {
        OutboxBacklog {
            pending: n,
            lanes: n.min(1),
            fullest_lane: n,
            oldest_age_ms: 0,
        }
    }

    #[test]
    fn unchecked_failed_and_stale_are_not_ready() {
        let r = Readiness::default();
        let every = Duration::from_secs(2);
        assert_eq!(r.status(every), Status::NotReady("state store not checked yet"));
        assert_eq!(r.backlog(every), None);
        r.0.send_replace(Some(Check {
            at: Instant::now(),
            outcome: Ok(pending(3)),
        }));
        assert_eq!(r.status(every), Status::Ready { backlog: pending(3) });
        assert_eq!(r.backlog(every), Some(pending(3)));
        r.0.send_replace(Some(Check {
            at: Instant::now(),
            outcome: Err("state store unreachable"),
        }));
        assert_eq!(r.status(every), Status::NotReady("state store unreachable"));
        assert_eq!(r.backlog(every), None);
        r.0.send_replace(Some(Check {
            at: Instant::now() - Duration::from_secs(60),
            outcome: Ok(pending(0)),
        }));
        assert_eq!(r.status(every), Status::NotReady("state store check is stale"));
        assert_eq!(r.backlog(every), None);
    }
}
