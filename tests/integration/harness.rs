//! The test harness itself: what it creates, it removes, even when a test fails.

use crate::support::supabase::roles_exist;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_test_leaves_no_supabase_database_or_role_behind() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let db = SupabaseDb::new(AppSchema::Care).await;
        let prefix = db.roles.owner.trim_end_matches("_owner").to_string();
        assert_eq!(roles_exist(&prefix).await, 6);
        tx.send((db.name.clone(), prefix)).unwrap();
        panic!("a test failing while it holds its project");
    });
    assert!(task.await.unwrap_err().is_panic());
    let (name, prefix) = rx.await.unwrap();
    assert!(!database_exists(&name).await, "{name} was left behind");
    assert_eq!(roles_exist(&prefix).await, 0, "roles {prefix}_* were left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_runbook_fixture_loads_for_its_owner() {
    for app in [AppSchema::B2b, AppSchema::Hotel, AppSchema::Care, AppSchema::Ops] {
        let db = SupabaseDb::new(app).await;
        let mut owner = db.owner().await;
        let superuser: bool = sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut owner)
            .await
            .unwrap();
        assert!(!superuser, "{app:?}: the bot's role is not a superuser");
        let users: i64 = sqlx::query_scalar("SELECT count(*) FROM auth.users")
            .fetch_one(&mut owner)
            .await
            .unwrap();
        assert!(users > 0, "{app:?}: seeded");
        drop(owner);
        db.cleanup().await;
    }
}
