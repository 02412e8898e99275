//! Every SQL statement shipped in `commands/` against the schema its file
//! names (`schema = ...`), on our fixture of a hosted Supabase project, as
//! the non-superuser project owner the bot is given.
//!
//! Two passes. The first asks PostgreSQL to parse and plan every statement
//! (and runs every rollback script in a transaction it rolls back): a
//! relation, column, function or type the real schema lacks fails here,
//! whatever the data. The second runs every shipped command through the bot
//! the way people do — diagnostics with and without their optional
//! arguments, actions requested, approved by the tech lead, applied and
//! verified, the GDPR hard delete on day 30 — so every statement also runs
//! with the owner's privileges. A catalog file with no example below fails
//! the test: a new command cannot ship untested.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runbook_bot::catalog::schema::{AppSchema as Claims, Kind};
use runbook_bot::catalog::{Catalog, Entry, rollback_script};
use runbook_bot::diagnose::run::Verdict;
use sqlx::{Connection, Executor, SqlSafeStr};

use crate::support::approvals::request_and_apply;
use crate::support::diagnose::Harness;
use crate::support::*;

/// Which fixture a sweep example runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    /// b2b with runbook 000's anomalies planted (b2b_anomalies.sql).
    B2b,
    Hotel,
    Care,
    Ops,
}

/// Ann in the b2b seed; Olivia in the ops seed.
const ANN: &str = "b0000000-0000-4000-8000-000000000001";
const OLIVIA: &str = ANN;
const QUINN: &str = "b0000000-0000-4000-8000-000000000003";
const PETER: &str = "b0000000-0000-4000-8000-0000000000d1";
const ACME: &str = "a0000000-0000-4000-8000-000000000001";

/// How the sweep runs each shipped command: the command, the words after
/// it, and the fixture. Actions run in this order on their fixture.
fn examples() -> Vec<(&'static str, String, On)> {
    let mut v: Vec<(&'static str, String, On)> = vec![
        ("/diagnose", "account ann@acme.test".into(), On::B2b),
        ("/diagnose", "bloat".into(), On::B2b),
        ("/diagnose", "connections".into(), On::B2b),
        ("/diagnose", "db-size".into(), On::B2b),
        ("/diagnose", "email peter@initech.test".into(), On::B2b),
        ("/diagnose", "health".into(), On::B2b),
        ("/diagnose", "indexes".into(), On::B2b),
        ("/diagnose", "jwt-hook".into(), On::B2b),
        ("/diagnose", "orphans".into(), On::B2b),
        ("/diagnose", format!("orphans {PETER}"), On::B2b),
        ("/diagnose", "registrations".into(), On::Care),
        ("/diagnose", "registrations 30".into(), On::Care),
        ("/diagnose", "rls".into(), On::B2b),
        ("/diagnose", "slow-queries".into(), On::B2b),
        ("/diagnose", format!("subscription {ACME}"), On::B2b),
        ("/restore-account", "ops@umbrella.test".into(), On::B2b),
        ("/user", format!("revoke-sessions {ANN}"), On::B2b),
        ("/user", format!("reset-password {ANN}"), On::B2b),
        ("/db", "kill-idle-connections 0".into(), On::B2b),
        ("/rollback", "migration 20250129172156".into(), On::B2b),
        ("/rollback", "flag new-tenant-flow,housekeeping-v2".into(), On::Hotel),
        ("/db", "repair-profiles".into(), On::Care),
        ("/user", format!("ban {QUINN} credential stuffing"), On::Ops),
        ("/user", format!("unban {QUINN}"), On::Ops),
        ("/user", format!("grant-admin {QUINN}"), On::Ops),
        ("/user", format!("delete {OLIVIA}"), On::Ops),
    ];
    // A deploy rollback calls the service's deploy hook and runs no SQL
    // (approvals.rs drives it against a fake hook).
    v.push(("/rollback", "deploy api".into(), On::B2b));
    v
}

/// What each catalog file claims, as a fixture that has it. Postgres- and
/// Supabase-wide statements are planned on every fixture.
fn fixtures_for(claims: Claims) -> Vec<AppSchema> {
    match claims {
        Claims::Postgres | Claims::Supabase => vec![AppSchema::B2b, AppSchema::Hotel, AppSchema::Care, AppSchema::Ops],
        Claims::B2b => vec![AppSchema::B2b],
        Claims::Hotel => vec![AppSchema::Hotel],
        Claims::Care => vec![AppSchema::Care],
        Claims::Ops => vec![AppSchema::Ops],
    }
}

fn catalog() -> Catalog {
    Catalog::load(Path::new("commands")).expect("the shipped catalog loads")
}

/// Every single SQL statement of a file: where it comes from, the SQL, and
/// whether the sweep runs it rather than only plans it. An unrestricted
/// apply statement without parameters (`CREATE SCHEMA IF NOT EXISTS` of the
/// legal hold) changes no rows and later statements need what it creates,
/// so it runs, in the transaction the sweep rolls back.
fn statements(e: &Entry) -> Vec<(String, String, bool)> {
    let d = &e.def;
    let mut out = Vec::new();
    let mut add = |what: String, sql: &str, run: bool| out.push((what, sql.to_string(), run));
    for s in &d.steps {
        if let Some(sql) = &s.sql {
            add(format!("step `{}`", s.title), sql, false);
        }
    }
    for p in &d.plan {
        add(format!("plan `{}`", p.id), &p.sql, false);
    }
    for (i, a) in d.apply.iter().enumerate() {
        let ddl = a.unrestricted.is_some() && a.params.is_empty();
        add(format!("apply #{}", i + 1), &a.sql, ddl);
    }
    for v in &d.verify {
        add(format!("verify `{}`", v.title), &v.sql, false);
    }
    for f in &d.effects {
        add(format!("effect `{}` recheck", f.title), &f.recheck, false);
        add(format!("effect `{}` run", f.title), &f.run, false);
    }
    if let Some(f) = &d.followup {
        add(format!("follow-up `{}`", f.title), &f.sql, false);
    }
    out
}

/// The rollback scripts an action ships, by file.
fn scripts(e: &Entry) -> Vec<std::path::PathBuf> {
    let Some(dir) = &e.def.rollback_scripts else {
        return Vec::new();
    };
    let dir = e.file.parent().unwrap().join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files
}

fn label(e: &Entry) -> String {
    format!("{} {}", e.def.command, e.def.name)
}

/// Plan every statement on every fixture its file claims; run every
/// rollback script and roll it back.
async fn plan_everything_on(app: AppSchema, catalog: &Catalog) -> usize {
    let db = SupabaseDb::new(app).await;
    let mut owner = db.owner().await;
    let mut failures = Vec::new();
    let mut n = 0;
    for e in catalog.all().filter(|e| fixtures_for(e.def.schema).contains(&app)) {
        let mut tx = owner.begin().await.unwrap();
        for (what, sql, run) in statements(e) {
            n += 1;
            tx.execute("SAVEPOINT statement").await.unwrap();
            let result = if run {
                tx.execute(sqlx::AssertSqlSafe(sql)).await.map(drop)
            } else {
                tx.describe(sqlx::AssertSqlSafe(sql).into_sql_str()).await.map(drop)
            };
            if let Err(err) = result {
                failures.push(format!("{} ({}): {what}: {err}", label(e), e.file.display()));
                // Report the next statement's own error, not "transaction aborted".
                tx.execute("ROLLBACK TO SAVEPOINT statement").await.unwrap();
            }
        }
        tx.rollback().await.unwrap();
        for script in scripts(e) {
            n += 1;
            let sql = std::fs::read_to_string(&script).unwrap();
            let mut tx = owner.begin().await.unwrap();
            if let Err(err) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await {
                failures.push(format!("{}: {}: {err}", label(e), script.display()));
            }
            tx.rollback().await.unwrap();
        }
    }
    owner.close().await.unwrap();
    db.cleanup().await;
    assert!(failures.is_empty(), "on the {app:?} fixture:\n{}", failures.join("\n"));
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_statement_plans_on_the_schema_its_file_names() {
    let catalog = Arc::new(catalog());
    let runs = [AppSchema::B2b, AppSchema::Hotel, AppSchema::Care, AppSchema::Ops].map(|app| {
        let catalog = catalog.clone();
        tokio::spawn(async move { plan_everything_on(app, &catalog).await })
    });
    let mut planned = 0;
    for r in runs {
        planned += r.await.expect("no fixture failed");
    }
    let shipped: usize = catalog
        .all()
        .map(|e| (statements(e).len() + scripts(e).len()) * fixtures_for(e.def.schema).len())
        .sum();
    assert_eq!(planned, shipped, "every statement, on every fixture its file claims");
    assert!(shipped > 100, "{shipped}");
}

#[test]
fn every_shipped_command_and_every_step_has_a_sweep_example() {
    let catalog = catalog();
    let examples = examples();
    let mut missing = Vec::new();
    for e in catalog.all() {
        let mine: Vec<&String> = examples
            .iter()
            .filter(|(c, text, _)| *c == e.def.command && text.split(' ').next() == Some(e.def.name.as_str()))
            .map(|(_, text, _)| text)
            .chain(
                examples
                    .iter()
                    .filter(|(c, _, _)| e.def.standalone && *c == e.def.command)
                    .map(|(_, t, _)| t),
            )
            .collect();
        if mine.is_empty() {
            missing.push(format!("{} ({})", label(e), e.file.display()));
            continue;
        }
        // Each step runs in at least one example: `when_arg` steps with the
        // argument given, `unless_arg` steps without it.
        for s in &e.def.steps {
            let given = |text: &str| text.split(' ').count() > 1;
            let covered = mine.iter().any(|t| match (&s.when_arg, &s.unless_arg) {
                (Some(_), _) => given(t),
                (_, Some(_)) => !given(t),
                _ => true,
            });
            if !covered {
                missing.push(format!("{}: step `{}`", label(e), s.title));
            }
        }
        for script in scripts(e) {
            let version = script.file_stem().unwrap().to_str().unwrap();
            assert!(rollback_script(e, version).is_some());
            if !mine.iter().any(|t| t.ends_with(version)) {
                missing.push(format!("{}: script {version}", label(e)));
            }
        }
    }
    assert!(missing.is_empty(), "no sweep example for:\n{}", missing.join("\n"));
}

/// A diagnostic ran every step it had for these words, none failed, and
/// only what this test server cannot do reads could-not-check.
fn assert_ran(text: &str, o: &runbook_bot::diagnose::run::Outcome) {
    for s in &o.steps {
        let allowed = s.title.starts_with("Slowest statements")
            && s.note
                .as_deref()
                .is_some_and(|n| n.contains("shared_preload_libraries"));
        assert!(
            s.verdict != Verdict::CouldNotCheck || allowed,
            "/diagnose {text}: step `{}` could not check: {:?}",
            s.title,
            s.note
        );
        assert!(!s.unreachable, "/diagnose {text}: `{}` {:?}", s.title, s.note);
    }
}

/// Run this fixture's examples through the bot.
async fn sweep(on: On) {
    let db = match on {
        On::B2b => SupabaseDb::b2b_planted().await,
        On::Hotel => SupabaseDb::new(AppSchema::Hotel).await,
        On::Care => SupabaseDb::new(AppSchema::Care).await,
        On::Ops => SupabaseDb::new(AppSchema::Ops).await,
    };
    prepare(on, &db).await;
    let h = Harness::for_db(&db);
    let t = TestApp::spawn_configured(Backend::Sqlite, |cfg| {
        db.attach(cfg);
        // reset-password is only requested here; nothing calls this address.
        cfg.supabase_auth.insert(
            "production".into(),
            runbook_bot::config::SupabaseAuth {
                url: "http://127.0.0.1:9".into(),
                service_role_key: secrecy::SecretString::from("unused".to_string()),
            },
        );
    })
    .await;
    // An idle session of the owner's for kill-idle-connections to end.
    let idle = db.owner().await;
    let examples: Vec<_> = examples().into_iter().filter(|(_, _, o)| *o == on).collect();
    for (command, text, _) in &examples {
        let entry = entry_for(&h.catalog, command, text);
        match entry.def.kind {
            Kind::Diagnostic => assert_ran(text, &h.run(text).await),
            Kind::Action if entry.def.deploy_hook_arg.is_some() => {}
            Kind::Action if !entry.def.auth_admin.is_empty() => {
                // The plan runs at request; the admin API call is
                // reset_password.rs's, against a fake GoTrue.
                let reply = t.slash(L2, command, text).await;
                assert!(reply.contains("Approval #"), "{command} {text}: {reply}");
            }
            Kind::Action => {
                request_and_apply(&t, command, text).await;
                if entry.def.followup.is_some() {
                    followup_runs(&t).await;
                }
            }
        }
    }
    drop(idle);
    t.finish().await;
    db.cleanup().await;
}

/// What an example needs that the fixture's seed does not have.
async fn prepare(on: On, db: &SupabaseDb) {
    if on == On::Care {
        // A sign-up whose profile was never created, for repair-profiles.
        db.as_superuser(
            "INSERT INTO auth.users (instance_id, id, aud, role, email, raw_user_meta_data, created_at, updated_at) VALUES
               ('00000000-0000-0000-0000-000000000000', 'b0000000-0000-4000-8000-0000000000e1', 'authenticated',
                'authenticated', 'named@ghost.test', '{\"name\": \"Nia Named\"}', now(), now());
             DELETE FROM public.profiles WHERE id = 'b0000000-0000-4000-8000-0000000000e1';",
        )
        .await;
    }
}

fn entry_for(catalog: &Catalog, command: &str, text: &str) -> Arc<Entry> {
    let name = text.split(' ').next().unwrap();
    catalog
        .get(command, name)
        .or_else(|| catalog.standalone(command))
        .unwrap_or_else(|| panic!("no catalog entry for {command} {text}"))
}

/// The follow-up the last action scheduled runs once its day comes.
async fn followup_runs(t: &TestApp) {
    t.clock.advance(31 * 86_400_000);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let states: Vec<(String, Option<String>)> = sqlx::query_as("SELECT state, result FROM followups")
            .fetch_all(&t.state().store.pool)
            .await
            .unwrap();
        assert!(!states.is_empty(), "nothing was scheduled");
        if states.iter().all(|(s, _)| s == "done") {
            for (_, result) in &states {
                let result = result.as_deref().unwrap_or_default();
                assert!(!result.contains("done for 0"), "it ran but changed nothing: {result}");
            }
            return;
        }
        assert!(
            states.iter().all(|(s, _)| s != "failed") && Instant::now() < deadline,
            "the follow-up did not run: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_b2b_and_postgres_command_runs_as_the_owner() {
    sweep(On::B2b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hotel_command_runs_as_the_owner() {
    sweep(On::Hotel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_care_command_runs_as_the_owner() {
    sweep(On::Care).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ops_command_runs_as_the_owner() {
    sweep(On::Ops).await;
}

#[test]
fn examples_run_on_a_fixture_with_the_schema_their_file_names() {
    let catalog = catalog();
    let seen: BTreeSet<String> = examples()
        .iter()
        .map(|(command, text, on)| {
            let e = entry_for(&catalog, command, text);
            let app = match on {
                On::B2b => AppSchema::B2b,
                On::Hotel => AppSchema::Hotel,
                On::Care => AppSchema::Care,
                On::Ops => AppSchema::Ops,
            };
            assert!(
                fixtures_for(e.def.schema).contains(&app),
                "{command} {text} claims {:?} but runs on {on:?}",
                e.def.schema
            );
            label(&e)
        })
        .collect();
    assert_eq!(seen.len(), catalog.all().count());
}

#[test]
fn the_slack_app_manifest_declares_every_command_the_bot_answers() {
    let manifest = std::fs::read_to_string("deploy/slack-app-manifest.yaml").unwrap();
    let declared: BTreeSet<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- command: "))
        .collect();
    let mut answered: BTreeSet<String> = catalog().all().map(|e| e.def.command.clone()).collect();
    answered.extend(["/incident".to_string(), "/scheduled".to_string()]);
    let answered: BTreeSet<&str> = answered.iter().map(String::as_str).collect();
    assert_eq!(declared, answered);
}
