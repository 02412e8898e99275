//! People's write transactions on SQLite, committed in groups.
//!
//! On SQLite every statement is a round trip to the thread sqlx runs the
//! connection on, and every commit writes each page it changed to the log:
//! one `/incident status` changes about a dozen pages (the incident, two
//! outbox rows and a timeline row, and their indexes). So a person's
//! transaction that starts while others wait for the writer stays open for
//! them: each later command runs inside a savepoint of the same transaction,
//! and one COMMIT makes them all durable. N commands share one BEGIN, one
//! COMMIT and one copy of the pages they all touched.
//!
//! Nobody is answered before the commit that holds their change. A command
//! that fails (or is cancelled, or panics) is rolled back to its savepoint
//! and leaves the others' changes alone; one that fails alone in its group
//! rolls the whole transaction back. The group is committed by its last
//! member when nobody else is waiting, or else by a task queued behind the
//! members waiting at the time, so it never stays open because the people
//! in it went away. sqlx has no group commit, hence this module.
//!
//! On PostgreSQL each person gets a transaction of their own: the server
//! runs them side by side.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::anyhow;
use sqlx::{Any, AnyConnection, AnyPool, Executor, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use super::PeopleFirst;

/// Commands in one transaction at most: the first of them waits for all.
const MAX_MEMBERS: usize = 16;

/// How long a person waits for their turn before the command fails (the
/// writer pool's own acquire timeout).
const TURN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the members of a group learn when it ends: `None` until then.
type Outcome = Option<Result<(), Arc<str>>>;

/// The one open group, if any, behind a FIFO lock (people take turns in
/// arrival order).
#[derive(Default)]
pub(super) struct Group {
    /// The transaction, from `BEGIN IMMEDIATE` on the writer until COMMIT.
    tx: Option<Transaction<'static, Any>>,
    /// Which group `tx` is, so a finisher knows whether its group has ended.
    generation: u64,
    /// Members whose work is done and waits for the commit.
    done: usize,
    /// The last member's savepoint is still open; whoever runs next releases
    /// it in the same round trip as their own statement.
    savepoint_open: bool,
    /// The last member left without committing: roll back to its savepoint
    /// before anything else runs.
    abandoned: bool,
    outcome: Option<watch::Sender<Outcome>>,
}

/// A person's write transaction: derefs to the connection, like sqlx's
/// `Transaction`; `commit` returns once the change is durable.
pub enum PersonTx {
    Own(Transaction<'static, Any>),
    Grouped(Member),
}

/// A person's turn in a SQLite group.
pub struct Member {
    turn: Option<OwnedMutexGuard<Group>>,
    lock: Arc<Mutex<Group>>,
    people: Arc<PeopleFirst>,
    /// This member runs inside a savepoint (it is not the group's first).
    savepoint: bool,
}

pub(super) async fn begin(
    writer: &AnyPool,
    lock: &Arc<Mutex<Group>>,
    people: &Arc<PeopleFirst>,
) -> Result<PersonTx, sqlx::Error> {
    people.waiting.fetch_add(1, Ordering::AcqRel);
    let _waiting = super::Waiting(people);
    let mut turn = tokio::time::timeout(TURN_TIMEOUT, lock.clone().lock_owned())
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?;
    let (abandoned, savepoint_open) = (turn.abandoned, turn.savepoint_open);
    let savepoint = match turn.tx.as_mut() {
        None => {
            turn.tx = Some(writer.begin_with("BEGIN IMMEDIATE").await?);
            turn.generation += 1;
            turn.done = 0;
            turn.outcome = Some(watch::channel(None).0);
            false
        }
        Some(tx) => {
            // One round trip: tidy up after the member before, open ours.
            let sql = if abandoned {
                "ROLLBACK TO member; RELEASE member; SAVEPOINT member"
            } else if savepoint_open {
                "RELEASE member; SAVEPOINT member"
            } else {
                "SAVEPOINT member"
            };
            if let Err(e) = tx.execute(sql).await {
                fail(&mut turn, &e);
                return Err(e);
            }
            turn.abandoned = false;
            turn.savepoint_open = true;
            true
        }
    };
    Ok(PersonTx::Grouped(Member {
        turn: Some(turn),
        lock: lock.clone(),
        people: people.clone(),
        savepoint,
    }))
}

impl PersonTx {
    /// Make the change durable. In a group this may wait for the members
    /// behind; an error means the change was not committed.
    pub async fn commit(self) -> anyhow::Result<()> {
        match self {
            PersonTx::Own(tx) => Ok(tx.commit().await?),
            PersonTx::Grouped(m) => m.commit().await,
        }
    }
}

impl Member {
    async fn commit(mut self) -> anyhow::Result<()> {
        let mut turn = self.turn.take().expect("a member holds its turn until it ends");
        turn.done += 1;
        let more_coming = self.people.waiting.load(Ordering::Acquire) > 0 && turn.done < MAX_MEMBERS;
        if !more_coming {
            return finish(&mut turn).await.map_err(Into::into);
        }
        let mut outcome = turn.outcome.as_ref().expect("an open group has an outcome").subscribe();
        turn.savepoint_open = self.savepoint;
        // A member that does not stay ends the group, so the first to stay
        // is the first of this group: it queues the group's finisher.
        if turn.done == 1 {
            tokio::spawn(finisher(self.lock.clone(), turn.generation));
        }
        drop(turn);
        match outcome.wait_for(Option::is_some).await {
            Ok(ended) => match ended.as_ref() {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err(anyhow!("the shared commit failed: {e}")),
                None => unreachable!("wait_for returns a value that passed its test"),
            },
            Err(_) => Err(anyhow!("the shared transaction ended before its commit was confirmed")),
        }
    }
}

/// Leave without committing (an error, a panic, a cancelled request): the
/// first member takes the whole transaction with it (sqlx rolls it back when
/// the connection goes back to the pool); a later one is rolled back to its
/// savepoint by whoever runs next, at the latest the group's finisher.
impl Drop for Member {
    fn drop(&mut self) {
        let Some(mut turn) = self.turn.take() else { return };
        if self.savepoint {
            turn.abandoned = true;
        } else {
            turn.tx = None;
            turn.outcome = None;
        }
    }
}

/// Commit the group, if it is still the one this task was queued for.
async fn finisher(lock: Arc<Mutex<Group>>, generation: u64) {
    let mut turn = lock.lock_owned().await;
    if turn.generation == generation
        && turn.tx.is_some()
        && let Err(e) = finish(&mut turn).await
    {
        tracing::error!(error = ?e, "a shared commit of people's changes failed");
    }
}

/// COMMIT the open group and tell its members how it went.
async fn finish(turn: &mut Group) -> Result<(), sqlx::Error> {
    let mut tx = turn.tx.take().expect("finish runs on an open group");
    // Taken first: should this future be dropped mid-commit, the members
    // learn that the commit was not confirmed instead of waiting for good.
    let outcome = turn.outcome.take();
    let result = async {
        if turn.abandoned {
            tx.execute("ROLLBACK TO member; RELEASE member").await?;
        }
        tx.commit().await
    }
    .await;
    turn.abandoned = false;
    turn.savepoint_open = false;
    if let Some(outcome) = outcome {
        outcome.send_replace(Some(result.as_ref().map(|_| ()).map_err(|e| e.to_string().into())));
    }
    result
}

/// A statement that tidies up between members failed: nobody's change in the
/// group can be trusted to commit, so it is rolled back and everyone told.
fn fail(turn: &mut Group, e: &sqlx::Error) {
    turn.tx = None;
    turn.abandoned = false;
    turn.savepoint_open = false;
    if let Some(outcome) = turn.outcome.take() {
        outcome.send_replace(Some(Err(e.to_string().into())));
    }
}

impl Deref for PersonTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            PersonTx::Own(tx) => tx,
            PersonTx::Grouped(m) => m.conn(),
        }
    }
}

impl DerefMut for PersonTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            PersonTx::Own(tx) => tx,
            PersonTx::Grouped(m) => m.conn_mut(),
        }
    }
}

impl Member {
    fn conn(&self) -> &AnyConnection {
        self.turn
            .as_ref()
            .and_then(|t| t.tx.as_deref())
            .expect("a member's group is open while it runs")
    }

    fn conn_mut(&mut self) -> &mut AnyConnection {
        self.turn
            .as_mut()
            .and_then(|t| t.tx.as_deref_mut())
            .expect("a member's group is open while it runs")
    }
}

/// Drop the open group's transaction (rolled back) before the pools close.
pub(super) async fn close(lock: &Mutex<Group>) {
    let mut turn = lock.lock().await;
    turn.tx = None;
    turn.outcome = None;
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use tokio::task::JoinHandle;

    use super::super::Store;
    use super::*;

    async fn sqlite() -> (Store, tempfile::TempDir) {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = SecretString::from(format!("sqlite://{}", dir.path().join("s.db").display()));
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        (store, dir)
    }

    async fn write(tx: &mut PersonTx, key: &str) {
        sqlx::query("INSERT INTO slack_events (event_id, received_at) VALUES ($1, 0)")
            .bind(key.to_string())
            .execute(&mut **tx)
            .await
            .unwrap();
    }

    /// What a reader sees as committed.
    async fn committed(store: &Store) -> Vec<String> {
        sqlx::query_scalar("SELECT event_id FROM slack_events ORDER BY event_id")
            .fetch_all(&store.pool)
            .await
            .unwrap()
    }

    /// Long enough for a spawned task to reach the queue it waits in.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// A person who writes `key`, then commits (or, `fail`, leaves without).
    fn person(store: &Store, key: &'static str, fail: bool) -> JoinHandle<anyhow::Result<()>> {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin_for_person().await?;
            write(&mut tx, key).await;
            if fail {
                return Err(anyhow!("{key} failed"));
            }
            tx.commit().await
        })
    }

    /// The first member's commit waits for the people queued behind it, and
    /// nobody's change is visible (or reported committed) before the one
    /// COMMIT that holds them all.
    #[tokio::test]
    async fn people_queued_behind_share_one_commit() {
        let (store, _dir) = sqlite().await;
        let mut a = store.begin_for_person().await.unwrap();
        write(&mut a, "a").await;
        let go = Arc::new(tokio::sync::Notify::new());
        let b = {
            let (store, go) = (store.clone(), go.clone());
            tokio::spawn(async move {
                let mut tx = store.begin_for_person().await?;
                write(&mut tx, "b").await;
                go.notified().await;
                tx.commit().await
            })
        };
        let c = person(&store, "c", false);
        settle().await;
        let a = tokio::spawn(a.commit());
        settle().await;
        assert!(!a.is_finished(), "a's commit returned while b was still at work");
        assert!(
            committed(&store).await.is_empty(),
            "a reader saw a change before its commit"
        );
        go.notify_one();
        for t in [a, b, c] {
            t.await.unwrap().unwrap();
        }
        assert_eq!(committed(&store).await, ["a", "b", "c"]);
    }

    /// A member that fails takes only its own change with it.
    #[tokio::test]
    async fn a_failing_member_is_rolled_back_alone() {
        let (store, _dir) = sqlite().await;
        let mut a = store.begin_for_person().await.unwrap();
        write(&mut a, "a").await;
        let b = person(&store, "b", true);
        let c = person(&store, "c", false);
        settle().await;
        a.commit().await.unwrap();
        assert!(b.await.unwrap().is_err());
        c.await.unwrap().unwrap();
        assert_eq!(committed(&store).await, ["a", "c"]);
    }

    /// A group whose last member failed is still committed by its finisher,
    /// though nobody comes after, and the writer is free again afterwards.
    #[tokio::test]
    async fn a_group_is_committed_when_its_last_member_fails() {
        let (store, _dir) = sqlite().await;
        let mut a = store.begin_for_person().await.unwrap();
        write(&mut a, "a").await;
        let b = person(&store, "b", true);
        settle().await;
        let a = tokio::time::timeout(Duration::from_secs(5), a.commit());
        a.await.expect("the group was left open").unwrap();
        assert!(b.await.unwrap().is_err());
        assert_eq!(committed(&store).await, ["a"]);
        let background = tokio::time::timeout(Duration::from_secs(5), store.begin());
        background.await.expect("the writer is still held").unwrap();
    }

    /// The same when the last member's task is cancelled mid-transaction.
    #[tokio::test]
    async fn a_group_is_committed_when_its_last_member_is_cancelled() {
        let (store, _dir) = sqlite().await;
        let mut a = store.begin_for_person().await.unwrap();
        write(&mut a, "a").await;
        let b = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin_for_person().await.unwrap();
                write(&mut tx, "b").await;
                std::future::pending::<()>().await;
            })
        };
        settle().await;
        let a = tokio::spawn(a.commit());
        settle().await;
        b.abort();
        tokio::time::timeout(Duration::from_secs(5), a)
            .await
            .expect("the group was left open")
            .unwrap()
            .unwrap();
        assert_eq!(committed(&store).await, ["a"]);
    }

    /// A person who fails alone rolls the whole transaction back and frees
    /// the writer for whoever comes next.
    #[tokio::test]
    async fn the_first_member_failing_alone_frees_the_writer() {
        let (store, _dir) = sqlite().await;
        assert!(person(&store, "a", true).await.unwrap().is_err());
        let mut tx = tokio::time::timeout(Duration::from_secs(5), store.begin())
            .await
            .expect("the writer is still held")
            .unwrap();
        sqlx::query("INSERT INTO slack_events (event_id, received_at) VALUES ('z', 0)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(committed(&store).await, ["z"]);
    }

    /// Many people at once, every third failing: exactly the others' changes
    /// are committed, each of them told so, and groups stay within the cap.
    #[tokio::test]
    async fn many_people_at_once_commit_exactly_what_succeeded() {
        let (store, _dir) = sqlite().await;
        let keys: Vec<&'static str> = (0..60).map(|n| &*format!("k{n:02}").leak()).collect();
        let tasks: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(n, k)| person(&store, k, n % 3 == 0))
            .collect();
        let mut expected = Vec::new();
        for (n, t) in tasks.into_iter().enumerate() {
            let r = t.await.unwrap();
            if n % 3 == 0 {
                assert!(r.is_err());
            } else {
                r.unwrap();
                expected.push(keys[n].to_string());
            }
        }
        assert_eq!(committed(&store).await, expected);
    }
}
