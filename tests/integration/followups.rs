//! Follow-ups (statements an applied action scheduled for later, such as
//! the GDPR hard delete): one instance runs each, under a lease it owns;
//! cancel and run never both happen; a run that cannot start is retried,
//! then failed and re-run by a tech lead; a run reports every approved key
//! as done, already gone or left alone, and never changes a row its plan
//! did not show.

use runbook_bot::approval::followup::{store, worker};
use runbook_bot::approval::store::State;
use runbook_bot::clock::Clock;

use crate::both_backends;
use crate::support::*;

const QUINN: &str = "b0000000-0000-4000-8000-000000000003";
const ROSA: &str = "b0000000-0000-4000-8000-000000000004";
const DAY: i64 = 86_400_000;

/// An action that soft-deletes a user now and forgets their name a day later.
const FORGET: &str = r#"
kind = "action"
schema = "ops"
command = "/user"
name = "forget"
summary = "Soft-delete a user now, forget their name tomorrow"
usage = "/user forget <user_uuid>"
level = "l2"
max_rows = 1

[[args]]
name = "user"
type = "uuid"

[[plan]]
id = "user"
title = "User who will be forgotten"
key = "id"
sql = "SELECT id, name FROM public.users WHERE id = $1 AND deleted_at IS NULL"
params = ["user"]

[[apply]]
plan = "user"
sql = "UPDATE public.users SET deleted_at = now() WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL RETURNING id"
params = ["plan.user"]

[[verify]]
title = "the user is soft-deleted"
sql = "SELECT id FROM public.users WHERE id = $1 AND deleted_at IS NULL"
params = ["user"]
expect = "empty"

[followup]
title = "Forget the name"
after_days = 1
plan = "user"
sql = "UPDATE public.users SET name = 'forgotten' WHERE id = ANY($1::uuid[]) AND deleted_at IS NOT NULL RETURNING id"
params = ["plan.user"]
"#;

async fn app(db: &SupabaseDb, catalog: &str, backend: Backend) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("user")).unwrap();
    std::fs::write(dir.path().join("user/forget.toml"), catalog).unwrap();
    let commands = dir.path().to_path_buf();
    let t = TestApp::spawn_configured(backend, |cfg| {
        db.attach(cfg);
        cfg.commands_dir = commands;
    })
    .await;
    (t, dir)
}

async fn followup(t: &TestApp, id: i64) -> store::Followup {
    let mut conn = t.state().store.pool.acquire().await.unwrap();
    store::get(&mut conn, id).await.unwrap().expect("the follow-up exists")
}

/// The follow-up's day comes: run what is due and wait until follow-up 1
/// has settled (the app's own worker may be the one that runs it).
async fn run_due(t: &TestApp, after_ms: i64) {
    t.clock.advance(after_ms);
    settle(t, 1).await;
}

/// Run what is due until follow-up `id` is neither running nor due.
async fn settle(t: &TestApp, id: i64) -> store::Followup {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        worker::tick(t.state(), "test-worker").await.unwrap();
        let f = followup(t, id).await;
        let due = f.state == "scheduled" && f.due_at <= t.clock.now_ms();
        if f.state != "running" && !due {
            return f;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "follow-up {id} never settled: {f:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn name_of(db: &SupabaseDb, id: &str) -> String {
    db.scalar(&format!(
        "SELECT coalesce(name, 'NULL') FROM public.users WHERE id = '{id}'"
    ))
    .await
}

async fn thread_text(t: &TestApp) -> String {
    t.drained(10).await;
    t.slack
        .ok_calls("chat.postMessage")
        .iter()
        .map(|c| c.body["text"].as_str().unwrap_or("").to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

both_backends!(leases_are_exclusive_and_owned_and_cancel_never_races_a_run);

async fn leases_are_exclusive_and_owned_and_cancel_never_races_a_run(backend: Backend) {
    let db = SupabaseDb::new(AppSchema::Ops).await;
    let (t, _dir) = app(&db, FORGET, backend).await;
    request_and_apply(&t, "/user", &format!("forget {QUINN}")).await;
    // The store is driven with explicit times a day ahead; the app's own
    // worker, on the test clock, finds nothing due meanwhile.
    let day = t.clock.now_ms() + DAY + 60_000;
    let lease = 600_000;
    let mut c = t.state().store.writer.acquire().await.unwrap();
    assert_eq!(store::claim(&mut c, 1, "a", day, lease).await.unwrap(), Some(1));
    assert_eq!(
        store::claim(&mut c, 1, "b", day, lease).await.unwrap(),
        None,
        "a holds it"
    );
    assert!(
        !store::cancel(&mut c, 1, "U0LEAD", day).await.unwrap(),
        "running: too late"
    );
    assert!(
        !store::retry_at(&mut c, 1, "b", day, "x").await.unwrap(),
        "not b's lease"
    );
    assert!(!store::renew(&mut c, 1, "b", day + lease).await.unwrap());
    assert!(store::renew(&mut c, 1, "a", day + lease).await.unwrap());
    // a stalls past its renewed lease; b takes over.
    let later = day + 2 * lease + 1;
    assert_eq!(store::claim(&mut c, 1, "b", later, lease).await.unwrap(), Some(2));
    assert!(
        !store::finish(&mut c, 1, "a", "done", "late", later).await.unwrap(),
        "a lost it"
    );
    assert!(!store::retry_at(&mut c, 1, "a", later, "x").await.unwrap());
    assert!(store::finish(&mut c, 1, "b", "done", "ok", later).await.unwrap());
    assert!(
        !store::cancel(&mut c, 1, "U0LEAD", later).await.unwrap(),
        "done: nothing to cancel"
    );
    assert!(
        !store::retry(&mut c, 1, later).await.unwrap(),
        "only a failed one runs again"
    );
    drop(c);
    let reply = t.slash(L3, "/scheduled", "cancel 1").await;
    assert_eq!(reply, "Follow-up #1: it is done; nothing to cancel.");
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_follow_up_never_runs() {
    let db = SupabaseDb::new(AppSchema::Ops).await;
    let (t, _dir) = app(&db, FORGET, Backend::Sqlite).await;
    request_and_apply(&t, "/user", &format!("forget {QUINN}")).await;
    assert!(t.slash(L2, "/scheduled", "cancel 1").await.contains("needs level l3"));
    assert!(
        t.slash(L3, "/scheduled", "cancel 9")
            .await
            .contains("There is no follow-up #9")
    );
    assert_eq!(
        t.slash(L3, "/scheduled", "cancel #1").await,
        "Cancelled follow-up #1; it will not run."
    );
    run_due(&t, 2 * DAY).await;
    assert_eq!(followup(&t, 1).await.state, "cancelled");
    assert_eq!(
        name_of(&db, QUINN).await,
        "Quinn Lefèvre",
        "a cancelled follow-up never runs"
    );
    assert_eq!(
        audit_kinds(&t, 1).await.last().map(String::as_str),
        Some("followup_cancelled")
    );
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_that_cannot_reach_its_target_backs_off_fails_and_runs_again_when_asked() {
    let db = SupabaseDb::new(AppSchema::Ops).await;
    let (mut t, _dir) = app(&db, FORGET, Backend::Sqlite).await;
    request_and_apply(&t, "/user", &format!("forget {QUINN}")).await;
    let good = t.config.targets["production"].clone();
    // The target goes away (nothing listens on port 9).
    let target = t.config.targets.get_mut("production").unwrap();
    target.url = secrecy::SecretString::from("postgres://nobody@127.0.0.1:9/gone".to_string());
    target.attempts = 1;
    t.restart().await;
    t.clock.advance(DAY + 60_000);
    for attempt in 1..=worker::MAX_ATTEMPTS {
        let f = settle(&t, 1).await;
        assert_eq!(f.attempts, attempt);
        if attempt < worker::MAX_ATTEMPTS {
            assert_eq!(f.state, "scheduled", "attempt {attempt} is retried later");
            assert!(f.due_at > t.clock.now_ms(), "not at once: it backs off");
            t.clock.advance(f.due_at - t.clock.now_ms());
        } else {
            assert_eq!(f.state, "failed");
        }
    }
    let thread = thread_text(&t).await;
    assert!(
        thread.contains(&format!(
            "failed after {} attempts: target production",
            worker::MAX_ATTEMPTS
        )) && thread.contains("`/scheduled retry 1`"),
        "{thread}"
    );
    assert!(t.slash(L2, "/scheduled", "list").await.contains("*failed*"));
    assert!(t.slash(L2, "/scheduled", "retry 1").await.contains("needs level l3"));
    // The target is back; a tech lead runs it again.
    t.config.targets.insert("production".into(), good);
    t.restart().await;
    assert_eq!(
        t.slash(L3, "/scheduled", "retry 1").await,
        "Follow-up #1 will run again within a minute."
    );
    assert_eq!(settle(&t, 1).await.state, "done");
    assert_eq!(name_of(&db, QUINN).await, "forgotten");
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_says_which_keys_were_already_gone_and_which_no_longer_qualified() {
    let db = SupabaseDb::new(AppSchema::Ops).await;
    let (t, _dir) = app(&db, FORGET, Backend::Sqlite).await;
    request_and_apply(&t, "/user", &format!("forget {QUINN}")).await;
    request_and_apply(&t, "/user", &format!("forget {ROSA}")).await;
    // Quinn's row is gone before the day comes; Rosa was restored.
    db.as_superuser(&format!(
        "DELETE FROM public.users WHERE id = '{QUINN}'; UPDATE public.users SET deleted_at = NULL WHERE id = '{ROSA}'"
    ))
    .await;
    run_due(&t, DAY + 60_000).await;
    let (gone, left) = (followup(&t, 1).await, settle(&t, 2).await);
    assert_eq!(gone.state, "done");
    assert_eq!(
        gone.result.as_deref(),
        Some(format!("done for 0: none; already gone: {QUINN}").as_str())
    );
    assert_eq!(left.state, "done");
    assert_eq!(
        left.result.as_deref(),
        Some(format!("done for 0: none; left as they are, no longer qualifying: {ROSA}").as_str())
    );
    assert_eq!(
        name_of(&db, ROSA).await,
        "Rosa Bernard",
        "a restored user keeps their name"
    );
    let thread = thread_text(&t).await;
    assert!(
        thread.contains(":warning: Follow-up #2"),
        "not reported as a success: {thread}"
    );
    assert!(
        t.metrics()
            .await
            .contains("runbook_bot_followups_total{outcome=\"incomplete\"} 1")
    );
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_that_returns_a_row_its_plan_did_not_show_changes_nothing() {
    let db = SupabaseDb::new(AppSchema::Ops).await;
    let forged = FORGET.replace(
        "SET name = 'forgotten' WHERE id = ANY($1::uuid[]) AND deleted_at IS NOT NULL RETURNING id",
        "SET name = 'forgotten' WHERE id = ANY($1::uuid[]) AND deleted_at IS NOT NULL RETURNING gen_random_uuid() AS id",
    );
    assert_ne!(forged, FORGET);
    let (t, _dir) = app(&db, &forged, Backend::Sqlite).await;
    request_and_apply(&t, "/user", &format!("forget {QUINN}")).await;
    run_due(&t, DAY + 60_000).await;
    let f = followup(&t, 1).await;
    assert_eq!(f.state, "failed");
    assert!(
        f.result
            .as_deref()
            .unwrap_or("")
            .contains("returned a row the plan did not show"),
        "{:?}",
        f.result
    );
    assert_eq!(name_of(&db, QUINN).await, "Quinn Lefèvre", "rolled back");
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_whose_role_rls_now_blinds_refuses_to_run() {
    let db = SupabaseDb::new(AppSchema::Ops).await;
    let (mut t, _dir) = app(&db, FORGET, Backend::Sqlite).await;
    request_and_apply(&t, "/user", &format!("forget {QUINN}")).await;
    // A month later the bot connects as a role without BYPASSRLS.
    t.config
        .targets
        .insert("production".into(), db.target_as(&db.roles.reader));
    t.restart().await;
    run_due(&t, DAY + 60_000).await;
    let f = followup(&t, 1).await;
    assert_eq!(f.state, "failed");
    let result = f.result.unwrap_or_default();
    assert!(
        result.contains("cannot see all rows of public.users") && result.contains("nothing was changed"),
        "{result}"
    );
    assert_eq!(name_of(&db, QUINN).await, "Quinn Lefèvre");
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_applied_result_still_schedules_its_follow_up() {
    let db = SupabaseDb::new(AppSchema::Ops).await;
    let (t, _dir) = app(&db, FORGET, Backend::Sqlite).await;
    let reply = t.slash(L2, "/user", &format!("forget {QUINN}")).await;
    assert!(reply.contains("Approval #1"), "{reply}");
    // The request was reported interrupted (its instance's lease lapsed);
    // then that instance's commit turns out to have happened.
    sqlx::query("UPDATE approval_requests SET state = 'interrupted' WHERE id = 1")
        .execute(&t.state().store.writer)
        .await
        .unwrap();
    let r = {
        let mut c = t.state().store.pool.acquire().await.unwrap();
        runbook_bot::approval::store::get(&mut c, 1).await.unwrap().unwrap()
    };
    runbook_bot::approval::notify::finished(t.state(), &r, State::Applied, "done for 1")
        .await
        .unwrap();
    assert_eq!(request_state(&t, 1).await, "interrupted", "the record is not rewritten");
    let f = followup(&t, 1).await;
    assert_eq!(f.state, "scheduled", "the applied action's follow-up is still due");
    let thread = thread_text(&t).await;
    assert!(
        thread.contains("arrived after the request was reported interrupted"),
        "{thread}"
    );
    t.finish().await;
    db.cleanup().await;
}
