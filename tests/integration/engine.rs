//! The approval engine keeps an action inside what was approved, whatever
//! its SQL says, whoever else writes to the target meanwhile, and whenever
//! the bot stops: on PostgreSQL targets shaped like hosted Supabase, with
//! the bot connected as the non-superuser project owner.

use std::time::{Duration, Instant};

use runbook_bot::clock::Clock;
use sqlx::{Connection, Executor, PgConnection};

use crate::support::*;

/// A catalog of its own for one test: `(path, text)` files.
fn catalog(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

/// `/rollback flag` as the hotel runbook writes it.
const FLAG: &str = r#"
kind = "action"
schema = "hotel"
command = "/rollback"
name = "flag"
summary = "Turn feature flags off"
usage = "/rollback flag <name>[,<name>...]"
level = "l2"
max_rows = 20

[[args]]
name = "names"
type = "identifier_list"

[[plan]]
id = "flags"
title = "Flags that will be turned off"
key = "flag_name"
sql = "SELECT flag_name, is_enabled, created_at FROM public.feature_flags WHERE flag_name = ANY($1) AND is_enabled ORDER BY flag_name"
params = ["names"]

[[apply]]
plan = "flags"
sql = "UPDATE public.feature_flags SET is_enabled = false WHERE flag_name = ANY($1::text[]) AND is_enabled RETURNING flag_name"
params = ["plan.flags"]

[[verify]]
title = "every named flag is off"
sql = "SELECT flag_name FROM public.feature_flags WHERE flag_name = ANY($1) AND is_enabled"
params = ["names"]
expect = "empty"
"#;

async fn app_with(db: &SupabaseDb, commands: &std::path::Path, backend: Backend) -> TestApp {
    let commands = commands.to_path_buf();
    TestApp::spawn_configured(backend, |cfg| {
        db.attach(cfg);
        cfg.commands_dir = commands;
    })
    .await
}

/// The request id in "Approval #N requested…".
fn request_id(reply: &str) -> i64 {
    reply
        .split("Approval #")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request in: {reply}"))
}

async fn result_of(t: &TestApp, id: i64) -> String {
    sqlx::query_scalar::<_, Option<String>>("SELECT result FROM approval_requests WHERE id = $1")
        .bind(id)
        .fetch_one(&t.state().store.pool)
        .await
        .unwrap()
        .unwrap_or_default()
}

/// Wait until the bot's apply session on the target waits for a lock.
async fn apply_waits_on_a_lock(db: &SupabaseDb) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while db
        .scalar("SELECT count(*)::text FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'runbook-bot' AND wait_event_type = 'Lock'")
        .await
        == "0"
    {
        assert!(Instant::now() < deadline, "the apply never waited on the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_swapped_while_the_apply_waits_on_a_lock_are_refused_and_nothing_changes() {
    let db = SupabaseDb::new(AppSchema::Hotel).await;
    let dir = catalog(&[("rollback/flag.toml", FLAG)]);
    let t = app_with(&db, dir.path(), Backend::Postgres).await;
    let reply = t.slash(L2, "/rollback", "flag new-tenant-flow,housekeeping-v2").await;
    assert!(reply.contains("touches 1 rows"), "{reply}");
    // Someone holds a lock that lets readers through but not writers.
    let mut other = db.owner().await;
    other.execute("BEGIN").await.unwrap();
    other
        .execute("LOCK TABLE public.feature_flags IN SHARE ROW EXCLUSIVE MODE")
        .await
        .unwrap();
    let id = request_id(&reply);
    click_reply(&t, L3, "approval_approve", id).await;
    apply_waits_on_a_lock(&db).await;
    // Meanwhile the matching row is swapped: same count, another flag.
    other
        .execute("UPDATE public.feature_flags SET is_enabled = NOT is_enabled WHERE flag_name IN ('new-tenant-flow', 'housekeeping-v2')")
        .await
        .unwrap();
    other.execute("COMMIT").await.unwrap();
    wait_state(&t, id, "failed").await;
    assert_eq!(result_of(&t, id).await, "data changed since approval — request again");
    assert_eq!(
        db.scalar(
            "SELECT string_agg(flag_name || '=' || is_enabled, ',' ORDER BY flag_name) FROM public.feature_flags"
        )
        .await,
        "enhanced-invite-system=true,housekeeping-v2=true,new-tenant-flow=false",
        "the bot changed nothing: this is what the other session left"
    );
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_returns_rows_outside_its_plan_rolls_everything_back() {
    let db = SupabaseDb::new(AppSchema::Hotel).await;
    // Valid by its shape, but it returns a flag the plan did not show.
    let stray = FLAG.replace(
        "WHERE flag_name = ANY($1::text[]) AND is_enabled RETURNING flag_name",
        "WHERE flag_name = ANY($1::text[]) AND is_enabled RETURNING 'housekeeping-v2' AS flag_name",
    );
    let dir = catalog(&[("rollback/flag.toml", &stray)]);
    let t = app_with(&db, dir.path(), Backend::Sqlite).await;
    let id = request_id(&t.slash(L2, "/rollback", "flag new-tenant-flow").await);
    click_reply(&t, L3, "approval_approve", id).await;
    wait_state(&t, id, "rolled_back").await;
    let result = result_of(&t, id).await;
    assert!(
        result.contains("statement 1 changed a row the plan did not show (flag_name housekeeping-v2)"),
        "{result}"
    );
    assert_eq!(
        db.scalar("SELECT is_enabled::text FROM public.feature_flags WHERE flag_name = 'new-tenant-flow'")
            .await,
        "true"
    );
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_edit_between_approval_and_apply_is_refused() {
    let db = SupabaseDb::new(AppSchema::Hotel).await;
    let dir = catalog(&[("rollback/flag.toml", FLAG)]);
    let mut t = app_with(&db, dir.path(), Backend::Sqlite).await;
    let id = request_id(&t.slash(L2, "/rollback", "flag new-tenant-flow").await);
    // Someone edits the action (say, what it sets) and the bot restarts.
    std::fs::write(
        dir.path().join("rollback/flag.toml"),
        FLAG.replace("SET is_enabled = false", "SET is_enabled = false, created_at = now()"),
    )
    .unwrap();
    t.restart().await;
    click_reply(&t, L3, "approval_approve", id).await;
    wait_state(&t, id, "failed").await;
    assert!(
        result_of(&t, id)
            .await
            .contains("definition (catalog file, rollback script or deploy hook) changed since approval"),
        "{}",
        result_of(&t, id).await
    );
    assert_eq!(
        db.scalar("SELECT is_enabled::text FROM public.feature_flags WHERE flag_name = 'new-tenant-flow'")
            .await,
        "true"
    );
    t.finish().await;
    db.cleanup().await;
}

const MIGRATION: &str = r#"
kind = "action"
schema = "hotel"
command = "/rollback"
name = "migration"
summary = "Roll back a migration"
usage = "/rollback migration <version>"
level = "l2"
max_rows = 1
rollback_scripts = "migrations"
script_arg = "version"

[[args]]
name = "version"
type = "identifier"

[[plan]]
id = "migration"
title = "Migration that will be rolled back"
key = "version"
sql = "SELECT version, name FROM supabase_migrations.schema_migrations WHERE version = $1"
params = ["version"]

[[apply]]
plan = "migration"
sql = "DELETE FROM supabase_migrations.schema_migrations WHERE version = ANY($1::text[]) RETURNING version"
params = ["plan.migration"]

[[verify]]
title = "the migration is no longer recorded"
sql = "SELECT version FROM supabase_migrations.schema_migrations WHERE version = $1"
params = ["version"]
expect = "empty"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_is_shown_whole_and_an_edit_after_the_request_is_refused() {
    let db = SupabaseDb::new(AppSchema::Hotel).await;
    let version = db
        .scalar("SELECT max(version) FROM supabase_migrations.schema_migrations")
        .await;
    // A long script: every line must reach the approver.
    let mut script = String::from("DROP TABLE IF EXISTS public.feature_flags_archive;\n");
    for i in 0..300 {
        script.push_str(&format!(
            "-- step {i} of the rollback, explained at length for the reviewer\n"
        ));
    }
    let file = format!("rollback/migrations/{version}.sql");
    let dir = catalog(&[("rollback/migration.toml", MIGRATION), (&file, &script)]);
    let t = app_with(&db, dir.path(), Backend::Sqlite).await;
    let id = request_id(&t.slash(L2, "/rollback", &format!("migration {version}")).await);
    let calls = t
        .slack
        .wait_for(10, "the card and the whole script in its thread", |c| {
            let has = |needle: &str| c.iter().any(|c| c.ok && c.body.to_string().contains(needle));
            has(&format!("Approval #{id}: /rollback")) && has("-- step 299 of the rollback")
        })
        .await;
    let posted: String = calls.iter().map(|c| c.body.to_string()).collect();
    for i in [0, 150, 299] {
        assert!(
            posted.contains(&format!("-- step {i} of the rollback")),
            "line {i} not shown"
        );
    }
    assert!(posted.contains("posted in full in the thread"), "the card points at it");
    // The script changes on disk after the request: the apply is refused.
    std::fs::write(dir.path().join(&file), "DROP TABLE IF EXISTS public.plans CASCADE;\n").unwrap();
    click_reply(&t, L3, "approval_approve", id).await;
    wait_state(&t, id, "failed").await;
    assert!(result_of(&t, id).await.contains("changed since approval"));
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*)::text FROM supabase_migrations.schema_migrations WHERE version = '{version}'"
        ))
        .await,
        "1"
    );
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_not_applied_before_it_expires_is_expired_never_applied() {
    let db = SupabaseDb::new(AppSchema::Hotel).await;
    let dir = catalog(&[("rollback/flag.toml", FLAG)]);
    let t = app_with(&db, dir.path(), Backend::Postgres).await;
    let id = request_id(&t.slash(L2, "/rollback", "flag new-tenant-flow").await);
    // Approved, then the approving instance stopped before it started.
    sqlx::query("UPDATE approval_requests SET state = 'approved', decided_by = $1, decided_at = $2 WHERE id = $3")
        .bind(L3)
        .bind(t.clock.now_ms())
        .bind(id)
        .execute(&t.state().store.writer)
        .await
        .unwrap();
    t.clock.advance(31 * 60_000);
    wait_state(&t, id, "expired").await;
    assert!(result_of(&t, id).await.contains("not applied before it expired"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        db.scalar("SELECT is_enabled::text FROM public.feature_flags WHERE flag_name = 'new-tenant-flow'")
            .await,
        "true"
    );
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_apply_keeps_its_lease_and_is_not_called_interrupted() {
    let db = SupabaseDb::new(AppSchema::Hotel).await;
    let dir = catalog(&[("rollback/flag.toml", FLAG)]);
    let commands = dir.path().to_path_buf();
    let t = TestApp::spawn_configured(Backend::Sqlite, |cfg| {
        db.attach(cfg);
        cfg.commands_dir = commands;
        cfg.approvals.lease = Duration::from_secs(1);
    })
    .await;
    let id = request_id(&t.slash(L2, "/rollback", "flag new-tenant-flow").await);
    let mut other = db.owner().await;
    other.execute("BEGIN").await.unwrap();
    other
        .execute("LOCK TABLE public.feature_flags IN SHARE ROW EXCLUSIVE MODE")
        .await
        .unwrap();
    click_reply(&t, L3, "approval_approve", id).await;
    apply_waits_on_a_lock(&db).await;
    // Four leases long: a dead instance would have been noticed by now.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(request_state(&t, id).await, "applying");
    other.execute("ROLLBACK").await.unwrap();
    wait_state(&t, id, "applied").await;
    t.finish().await;
    db.cleanup().await;
}

/// The id of a transaction on `c` that ended with `end`.
async fn xid(c: &mut PgConnection, end: &'static str) -> String {
    c.execute("BEGIN").await.unwrap();
    let x: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut *c)
        .await
        .unwrap();
    c.execute(end).await.unwrap();
    x
}

async fn pid(c: &mut PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(c)
        .await
        .unwrap()
}

/// Pretend the applying instance died after the target transaction `xid`.
async fn abandon(t: &TestApp, id: i64, xid: &str) {
    sqlx::query(
        "UPDATE approval_requests SET state = 'applying', decided_by = $1, applying_at = $2, lease_until = $2, target_xid = $3 WHERE id = $4",
    )
    .bind(L3)
    .bind(t.clock.now_ms() - 60_000)
    .bind(xid)
    .bind(id)
    .execute(&t.state().store.writer)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_apply_is_resolved_by_asking_the_target_whether_it_committed() {
    let db = SupabaseDb::new(AppSchema::Hotel).await;
    let dir = catalog(&[("rollback/flag.toml", FLAG)]);
    let t = app_with(&db, dir.path(), Backend::Sqlite).await;
    let committed = request_id(&t.slash(L2, "/rollback", "flag new-tenant-flow").await);
    let aborted = request_id(&t.slash(L2, "/rollback", "flag enhanced-invite-system").await);
    let mut c = db.owner().await;
    let yes = xid(&mut c, "COMMIT").await;
    let no = xid(&mut c, "ROLLBACK").await;
    abandon(&t, committed, &yes).await;
    abandon(&t, aborted, &no).await;
    wait_state(&t, committed, "applied").await;
    assert!(
        result_of(&t, committed)
            .await
            .contains("the target confirms the transaction committed")
    );
    wait_state(&t, aborted, "rolled_back").await;
    assert!(result_of(&t, aborted).await.contains("nothing was changed"));
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_idle_connections_ends_only_the_planned_idle_session_it_may_signal() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let t = TestApp::spawn_configured(Backend::Sqlite, |cfg| db.attach(cfg)).await;
    // All of these sessions are this test's own, in databases it created.
    let mut idle = db.owner().await;
    let idle_pid = pid(&mut idle).await;
    let mut wakes = db.owner().await;
    let wakes_pid = pid(&mut wakes).await;
    let mut superuser = PgConnection::connect(&db.admin_url).await.unwrap();
    let superuser_pid = pid(&mut superuser).await;
    let other_db = TestDb::new(Backend::Postgres).await;
    let mut elsewhere = PgConnection::connect(&other_db.url.replacen(
        "://postgres@",
        &format!("://{}@", db.roles.owner),
        1,
    ))
    .await
    .unwrap();
    let elsewhere_pid = pid(&mut elsewhere).await;
    let mut busy = db.owner().await;
    let busy_pid = pid(&mut busy).await;
    let sleeper = tokio::spawn(async move {
        let _ = busy.execute("SELECT pg_sleep(30)").await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let reply = t.slash(L2, "/db", "kill-idle-connections 0").await;
    assert!(
        reply.contains("touches 2 rows"),
        "only the two idle sessions of its own role: {reply}"
    );
    // One of them does something before the approval: it is no longer the
    // idle session the approver saw.
    wakes.execute("SELECT 1").await.unwrap();
    let id = request_id(&reply);
    click_reply(&t, L3, "approval_approve", id).await;
    wait_state(&t, id, "applied").await;
    let result = result_of(&t, id).await;
    assert!(
        result.contains(&format!(
            "done for 1: {idle_pid}; skipped 1 that no longer qualified: {wakes_pid}"
        )),
        "{result}"
    );
    assert!(
        idle.execute("SELECT 1").await.is_err(),
        "the planned idle session ended"
    );
    wakes.execute("SELECT 1").await.unwrap();
    superuser.execute("SELECT 1").await.unwrap();
    elsewhere.execute("SELECT 1").await.unwrap();
    let alive = db
        .scalar(&format!(
            "SELECT count(*)::text FROM pg_stat_activity WHERE pid IN ({busy_pid}, {superuser_pid}, {elsewhere_pid})"
        ))
        .await;
    assert_eq!(
        alive, "3",
        "the active, superuser and other-database sessions are untouched"
    );
    sleeper.abort();
    drop(elsewhere);
    t.finish().await;
    other_db.cleanup().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_values_cannot_forge_lines_in_slack_or_the_terminal() {
    let db = SupabaseDb::new(AppSchema::Hotel).await;
    let forged = FLAG.replace(
        "SELECT flag_name, is_enabled, created_at FROM",
        "SELECT flag_name, is_enabled, E'fine\\nenhanced-invite-system  false\\n\\u001b[2J' AS note FROM",
    );
    let dir = catalog(&[("rollback/flag.toml", &forged)]);
    let t = app_with(&db, dir.path(), Backend::Sqlite).await;
    t.slash(L2, "/rollback", "flag new-tenant-flow").await;
    let calls = t
        .slack
        .wait_for(10, "the card", |c| {
            c.iter().any(|c| c.ok && c.body.to_string().contains("Approval #1"))
        })
        .await;
    let card = calls
        .iter()
        .find(|c| c.body.to_string().contains("Approval #1"))
        .unwrap();
    let blocks = card.body["blocks"].to_string();
    assert!(
        blocks.contains(r"fine\\nenhanced-invite-system  false\\n\\u{1b}[2J"),
        "{blocks}"
    );
    assert!(!blocks.contains("\\u001b"), "no raw escape reaches Slack: {blocks}");
    let mut config = t.config.clone();
    config.commands_dir = dir.path().to_path_buf();
    let out = runbook_bot::cli::exec(config, L2, None, "/rollback flag new-tenant-flow")
        .await
        .unwrap();
    assert!(
        !out.contains('\u{1b}'),
        "no escape sequence reaches the terminal: {out:?}"
    );
    assert!(out.contains(r"fine\nenhanced-invite-system  false\n\u{1b}[2J"), "{out}");
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_fail_closed_on_stale_group_membership_when_slack_cannot_be_asked() {
    let db = SupabaseDb::new(AppSchema::Hotel).await;
    let dir = catalog(&[("rollback/flag.toml", FLAG)]);
    let commands = dir.path().to_path_buf();
    let t = TestApp::spawn_configured(Backend::Sqlite, |cfg| {
        db.attach(cfg);
        cfg.commands_dir = commands;
        cfg.roles.subjects.push((
            runbook_bot::slack::ids::RoleSubject::parse("S0LEADS").unwrap(),
            runbook_bot::config::Level::L3,
        ));
    })
    .await;
    const LEAD: &str = "U0GROUPLEAD";
    t.slack.set_group("S0LEADS", &[LEAD]);
    let first = request_id(&t.slash(L2, "/rollback", "flag new-tenant-flow").await);
    let second = request_id(&t.slash(L2, "/rollback", "flag enhanced-invite-system").await);
    assert!(
        click_reply(&t, LEAD, "approval_approve", first)
            .await
            .contains("Approved")
    );
    wait_state(&t, first, "applied").await;
    // Slack cannot say who is in the group any more, and what we knew is stale.
    t.slack.forget_group("S0LEADS");
    t.clock.advance(6 * 60_000);
    let refused = click_reply(&t, LEAD, "approval_approve", second).await;
    assert!(refused.contains("Only level l3 can approve"), "{refused}");
    assert!(refused.contains("you have no role"), "{refused}");
    assert_eq!(request_state(&t, second).await, "pending");
    // Commands may still use the last known membership.
    assert!(!t.command(LEAD, "list").await.contains("no role"));
    t.slack.set_group("S0LEADS", &[LEAD]);
    assert!(
        click_reply(&t, LEAD, "approval_approve", second)
            .await
            .contains("Approved")
    );
    wait_state(&t, second, "applied").await;
    t.finish().await;
    db.cleanup().await;
}
