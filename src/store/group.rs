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
//! A later member's prelude (releasing, or rolling back to, the savepoint
//! of the member before, then opening its own) can ride in front of its
//! first statement (`LazyPersonTx::fetch_all`): one round trip instead of
//! two. The group trusts a savepoint only once SQLite has confirmed every
//! statement of the prelude that opened it; a member that leaves with its
//! prelude sent but unconfirmed (it failed part-way, or the request was
//! cancelled in flight) rolls the whole group back, since nobody knows
//! which savepoint a rollback would reach.
//!
//! On PostgreSQL each person gets a transaction of their own: the server
//! runs them side by side.

use std::borrow::Cow;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::anyhow;
use futures_util::TryStreamExt;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, AssertSqlSafe, Either, Executor, Transaction};
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
    /// The savepoint of the last member that ran, still open: whoever runs
    /// next releases it (or rolls back to it) in front of their own work.
    open: Option<Savepoint>,
    outcome: Option<watch::Sender<Outcome>>,
}

#[derive(Clone, Copy)]
struct Savepoint {
    /// Its member left without committing: roll back to it first.
    abandoned: bool,
}

/// A person's write transaction: derefs to the connection, like sqlx's
/// `Transaction`; `commit` returns once the change is durable.
pub enum PersonTx {
    Own(Transaction<'static, Any>),
    Grouped(Member),
}

/// A person's transaction before its first statement: that statement
/// carries the member's prelude (`fetch_all`), or the prelude runs on its
/// own when the connection is first asked for (`conn`).
pub struct LazyPersonTx(PersonTx);

/// A person's turn in a SQLite group.
pub struct Member {
    turn: Option<OwnedMutexGuard<Group>>,
    lock: Arc<Mutex<Group>>,
    people: Arc<PeopleFirst>,
    /// The group's first member: it began the transaction and has no
    /// savepoint.
    first: bool,
    prelude: Prelude,
}

/// Where a later member's prelude is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Prelude {
    /// Not sent: the member has run nothing.
    Pending,
    /// Sent, not yet confirmed: if the member leaves now, nobody knows which
    /// savepoints are open.
    Sent,
    /// Every statement of it ran: the member's savepoint is open.
    Confirmed,
    /// It did not all run, and the group was rolled back.
    Failed,
}

/// A prelude, and how many statements it is.
struct PreludeSql(String, usize);

pub(super) async fn begin(
    writer: &AnyPool,
    lock: &Arc<Mutex<Group>>,
    people: &Arc<PeopleFirst>,
) -> Result<LazyPersonTx, sqlx::Error> {
    people.waiting.fetch_add(1, Ordering::AcqRel);
    let _waiting = super::Waiting(people);
    let mut turn = tokio::time::timeout(TURN_TIMEOUT, lock.clone().lock_owned())
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?;
    let first = turn.tx.is_none();
    if first {
        turn.tx = Some(writer.begin_with("BEGIN IMMEDIATE").await?);
        turn.generation += 1;
        turn.done = 0;
        turn.open = None;
        turn.outcome = Some(watch::channel(None).0);
    }
    Ok(LazyPersonTx(PersonTx::Grouped(Member {
        turn: Some(turn),
        lock: lock.clone(),
        people: people.clone(),
        first,
        prelude: if first { Prelude::Confirmed } else { Prelude::Pending },
    })))
}

impl LazyPersonTx {
    /// A transaction with nothing to run before its first statement.
    pub(super) fn ready_made(tx: PersonTx) -> LazyPersonTx {
        LazyPersonTx(tx)
    }

    /// The connection, after the prelude has run (on its own, if no
    /// statement has carried it yet).
    pub async fn conn(&mut self) -> Result<&mut AnyConnection, sqlx::Error> {
        if let PersonTx::Grouped(m) = &mut self.0 {
            m.run_prelude().await?;
        }
        Ok(&mut self.0)
    }

    /// Run `sql` (its binds added by `bind`, numbered `$1`…: the prelude
    /// takes none) and return its rows. The prelude, if it has not run yet,
    /// rides in front.
    pub async fn fetch_all<'q>(
        &mut self,
        sql: &'static str,
        bind: impl FnOnce(Query<'q>) -> Query<'q>,
    ) -> Result<Vec<AnyRow>, sqlx::Error> {
        let prelude = match &mut self.0 {
            PersonTx::Grouped(m) if !m.group_open() => return Err(rolled_back()),
            PersonTx::Grouped(m) => m.send_prelude(),
            PersonTx::Own(_) => None,
        };
        let (text, statements) = match prelude {
            Some(PreludeSql(p, n)) => (Cow::Owned(format!("{p}; {sql}")), n),
            None => (Cow::Borrowed(sql), 0),
        };
        let query = bind(sqlx::query(AssertSqlSafe(text)));
        // Each statement reports a result as it completes: the prelude is
        // confirmed once all of its statements have.
        let (mut completed, mut rows) = (0, Vec::new());
        let result = {
            let mut results = (&mut *self.0).fetch_many(query);
            loop {
                match results.try_next().await {
                    Ok(Some(Either::Left(_))) => completed += 1,
                    Ok(Some(Either::Right(row))) => rows.push(row),
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
        };
        if statements > 0
            && let PersonTx::Grouped(m) = &mut self.0
        {
            m.settle_prelude(completed >= statements);
        }
        result.map(|()| rows)
    }

    /// The transaction, its prelude run.
    pub async fn ready(mut self) -> Result<PersonTx, sqlx::Error> {
        self.conn().await?;
        Ok(self.0)
    }
}

type Query<'q> = sqlx::query::Query<'q, Any, AnyArguments>;

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
    /// The prelude, if it has not been sent; from here on it counts as
    /// sent, until `settle_prelude`.
    fn send_prelude(&mut self) -> Option<PreludeSql> {
        if self.prelude != Prelude::Pending {
            return None;
        }
        self.prelude = Prelude::Sent;
        let turn = self.turn.as_mut().expect("a member holds its turn until it ends");
        let sql = match turn.open {
            None => PreludeSql("SAVEPOINT member".into(), 1),
            Some(s) if s.abandoned => PreludeSql("ROLLBACK TO member; RELEASE member; SAVEPOINT member".into(), 3),
            Some(_) => PreludeSql("RELEASE member; SAVEPOINT member".into(), 2),
        };
        turn.open = Some(Savepoint { abandoned: false });
        Some(sql)
    }

    /// Whether every statement of the prelude ran. If not, nobody's change
    /// in the group can be trusted to commit: it is rolled back and everyone
    /// told.
    fn settle_prelude(&mut self, ran: bool) {
        if ran {
            self.prelude = Prelude::Confirmed;
        } else {
            self.prelude = Prelude::Failed;
            if let Some(turn) = self.turn.as_mut() {
                fail(turn, "a tidy-up between people's changes failed");
            }
        }
    }

    /// The group this member is in has not been rolled back.
    fn group_open(&self) -> bool {
        self.turn.as_ref().is_some_and(|t| t.tx.is_some())
    }

    /// Send the prelude on its own.
    async fn run_prelude(&mut self) -> Result<(), sqlx::Error> {
        if !self.group_open() {
            return Err(rolled_back());
        }
        let Some(PreludeSql(sql, _)) = self.send_prelude() else {
            return Ok(());
        };
        let turn = self.turn.as_mut().expect("a member holds its turn until it ends");
        let tx = turn
            .tx
            .as_mut()
            .expect("a member's group is open until its prelude fails");
        let result = tx.execute(AssertSqlSafe(sql)).await;
        self.settle_prelude(result.is_ok());
        result.map(|_| ())
    }

    async fn commit(mut self) -> anyhow::Result<()> {
        if !self.group_open() {
            return Err(rolled_back().into());
        }
        let mut turn = self.turn.take().expect("a member holds its turn until it ends");
        debug_assert_ne!(
            self.prelude,
            Prelude::Sent,
            "a prelude is settled before its member commits"
        );
        turn.done += 1;
        let more_coming = self.people.waiting.load(Ordering::Acquire) > 0 && turn.done < MAX_MEMBERS;
        if !more_coming {
            return finish(&mut turn).await.map_err(Into::into);
        }
        let mut outcome = turn.outcome.as_ref().expect("an open group has an outcome").subscribe();
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
/// savepoint by whoever runs next, at the latest the group's finisher; one
/// that never sent its prelude ran nothing and leaves the group as it was;
/// one cancelled while its prelude was in flight rolls the group back.
impl Drop for Member {
    fn drop(&mut self) {
        let Some(mut turn) = self.turn.take() else { return };
        if self.first {
            turn.tx = None;
            turn.outcome = None;
            return;
        }
        match self.prelude {
            Prelude::Pending | Prelude::Failed => {}
            Prelude::Sent => fail(
                &mut turn,
                "a person's request ended while its savepoint was being opened",
            ),
            Prelude::Confirmed => {
                if let Some(s) = turn.open.as_mut() {
                    s.abandoned = true;
                }
            }
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
    let abandoned = turn.open.take().filter(|s| s.abandoned);
    let result = async {
        if abandoned.is_some() {
            tx.execute("ROLLBACK TO member; RELEASE member").await?;
        }
        tx.commit().await
    }
    .await;
    if let Some(outcome) = outcome {
        outcome.send_replace(Some(result.as_ref().map(|_| ()).map_err(|e| e.to_string().into())));
    }
    result
}

/// Nobody's change in the group can be trusted to commit: roll it back and
/// tell everyone.
fn fail(turn: &mut Group, why: &str) {
    turn.tx = None;
    turn.open = None;
    if let Some(outcome) = turn.outcome.take() {
        outcome.send_replace(Some(Err(why.into())));
    }
}

fn rolled_back() -> sqlx::Error {
    sqlx::Error::Protocol("the shared transaction was rolled back".into())
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
        debug_assert_eq!(
            self.prelude,
            Prelude::Confirmed,
            "a member's statements run after its prelude"
        );
        self.turn
            .as_ref()
            .and_then(|t| t.tx.as_deref())
            .expect("a member's group is open while it runs")
    }

    fn conn_mut(&mut self) -> &mut AnyConnection {
        debug_assert_ne!(
            self.prelude,
            Prelude::Pending,
            "a member's statements run after its prelude"
        );
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
    use tokio::task::JoinHandle;

    use super::super::{Store, temp_sqlite};
    use super::*;

    /// A store whose group was begun by a person who wrote `a` and has not
    /// committed yet.
    async fn begun_by_a() -> (Store, tempfile::TempDir, PersonTx) {
        let (store, dir) = temp_sqlite().await;
        let mut a = store.begin_for_person().await.unwrap();
        write(&mut a, "a").await;
        (store, dir, a)
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
        let (store, _dir, a) = begun_by_a().await;
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
        let (store, _dir, a) = begun_by_a().await;
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
        let (store, _dir, a) = begun_by_a().await;
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
        let (store, _dir, a) = begun_by_a().await;
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
        let (store, _dir) = temp_sqlite().await;
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
        let (store, _dir) = temp_sqlite().await;
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

    /// A later person's first statement, with the prelude riding in front.
    async fn write_first(tx: &mut LazyPersonTx, key: &str) -> Result<(), sqlx::Error> {
        let rows = tx
            .fetch_all(
                "INSERT INTO slack_events (event_id, received_at) VALUES ($1, 0) RETURNING event_id",
                |q| q.bind(key.to_string()),
            )
            .await?;
        let returned: Vec<String> = rows.iter().map(|r| sqlx::Row::get(r, 0)).collect();
        assert_eq!(returned, [key], "the statement's own rows, not the prelude's results");
        Ok(())
    }

    /// A person whose first statement carries the prelude, then commits
    /// (or, `fail`, leaves without).
    fn lazy_person(store: &Store, key: &'static str, fail: bool) -> JoinHandle<anyhow::Result<()>> {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin_for_person_lazy().await?;
            write_first(&mut tx, key).await?;
            if fail {
                return Err(anyhow!("{key} failed"));
            }
            tx.ready().await?.commit().await
        })
    }

    /// The prelude that rode with a first statement opened the member's
    /// savepoint: a member that fails after it is rolled back alone.
    #[tokio::test]
    async fn a_first_statement_carries_the_members_savepoint() {
        let (store, _dir, a) = begun_by_a().await;
        let b = lazy_person(&store, "b", true);
        let c = lazy_person(&store, "c", false);
        let d = lazy_person(&store, "d", false);
        settle().await;
        a.commit().await.unwrap();
        assert!(b.await.unwrap().is_err());
        c.await.unwrap().unwrap();
        d.await.unwrap().unwrap();
        assert_eq!(committed(&store).await, ["a", "c", "d"]);
    }

    /// A first statement that fails after its prelude ran is an ordinary
    /// failure of its member: the others commit.
    #[tokio::test]
    async fn a_failing_first_statement_after_its_prelude_fails_alone() {
        let (store, _dir, a) = begun_by_a().await;
        let b = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin_for_person_lazy().await?;
                // A duplicate key: fails after the prelude has run.
                write_first(&mut tx, "a").await?;
                tx.ready().await?.commit().await
            })
        };
        let c = lazy_person(&store, "c", false);
        settle().await;
        a.commit().await.unwrap();
        assert!(b.await.unwrap().is_err());
        c.await.unwrap().unwrap();
        assert_eq!(committed(&store).await, ["a", "c"]);
    }

    /// A prelude that did not all run leaves nobody knowing which savepoint
    /// is open: the whole group is rolled back at once, everyone in it told
    /// so, and whoever comes next starts afresh. (Here the savepoint it
    /// expects to release was released behind the group's back.)
    #[tokio::test]
    async fn a_prelude_that_did_not_all_run_rolls_the_group_back() {
        let (store, _dir, a) = begun_by_a().await;
        let b = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin_for_person().await?;
                write(&mut tx, "b").await;
                tx.execute("RELEASE member").await?;
                tx.commit().await
            })
        };
        let c = lazy_person(&store, "c", false);
        let d = lazy_person(&store, "d", false);
        settle().await;
        let a = a.commit().await;
        assert!(a.is_err(), "a was told its change committed");
        assert!(b.await.unwrap().is_err(), "b was told its change committed");
        assert!(c.await.unwrap().is_err(), "c was told its change committed");
        d.await.unwrap().unwrap();
        assert_eq!(committed(&store).await, ["d"]);
    }

    /// A member whose request ends while its prelude is in flight (sent,
    /// not confirmed) rolls the group back the same way.
    #[tokio::test]
    async fn a_member_gone_with_its_prelude_in_flight_rolls_the_group_back() {
        let (store, _dir, a) = begun_by_a().await;
        let b = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut tx = store.begin_for_person_lazy().await.unwrap();
                let PersonTx::Grouped(m) = &mut tx.0 else {
                    unreachable!("SQLite groups people")
                };
                assert!(m.send_prelude().is_some());
            })
        };
        settle().await;
        assert!(a.commit().await.is_err(), "a was told its change committed");
        b.await.unwrap();
        assert!(committed(&store).await.is_empty());
    }

    /// A member that runs nothing leaves the group as it was.
    #[tokio::test]
    async fn a_member_that_ran_nothing_leaves_the_group_as_it_was() {
        let (store, _dir, a) = begun_by_a().await;
        let b = lazy_person(&store, "b", false);
        let idle = {
            let store = store.clone();
            tokio::spawn(async move { drop(store.begin_for_person_lazy().await.unwrap()) })
        };
        let c = lazy_person(&store, "c", true);
        let d = lazy_person(&store, "d", false);
        settle().await;
        a.commit().await.unwrap();
        b.await.unwrap().unwrap();
        idle.await.unwrap();
        assert!(c.await.unwrap().is_err());
        d.await.unwrap().unwrap();
        assert_eq!(committed(&store).await, ["a", "b", "d"]);
    }
}
