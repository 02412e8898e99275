//! The test harness itself: what it creates, it removes, even when a test fails.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_test_leaves_no_database_behind() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let db = TestDb::new(Backend::Postgres).await;
        tx.send(db.pg_name().unwrap().to_string()).unwrap();
        panic!("a test failing while it holds its database");
    });
    assert!(task.await.unwrap_err().is_panic());
    let name = rx.await.unwrap();
    assert!(!database_exists(&name).await, "{name} was left behind");
}
