//! A diagnostic step that cannot run reads "could not check" with its
//! reason, never ok and never critical: on a Supabase-shaped target, with
//! the bot connected as the non-superuser project owner.

use runbook_bot::diagnose::render;
use runbook_bot::diagnose::run::Verdict;

use crate::support::diagnose::{Harness, col, step};
use crate::support::*;

/// One step per way a catalog query meets a database it does not fit.
const BROKEN: &str = r#"
kind = "diagnostic"
schema = "b2b"
command = "/diagnose"
name = "broken"
summary = "Steps that cannot run"
usage = "/diagnose broken"
level = "l1"

[[steps]]
title = "Missing relation"
sql = "SELECT id FROM public.no_such_table"
judge.rows = "critical"

[[steps]]
title = "Missing column"
sql = "SELECT no_such_column FROM public.accounts"
judge.rows = "critical"

[[steps]]
title = "Missing function"
sql = "SELECT public.no_such_function() AS x"

[[steps]]
title = "Missing schema"
sql = "SELECT no_such_schema.f() AS x"

[[steps]]
title = "Permission denied"
sql = "SELECT public.rb_locked() AS x"

[[steps]]
title = "Statement statistics"
requires_extension = "pg_stat_statements"
sql = "SELECT calls FROM pg_stat_statements"
judge.rows = "warning"

[[steps]]
title = "Accounts"
sql = "SELECT company_name FROM public.accounts ORDER BY company_name"
"#;

/// A catalog folder with `broken` and the shipped `health`.
fn catalog() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.toml"), BROKEN).unwrap();
    std::fs::copy("commands/diagnose/health.toml", dir.path().join("health.toml")).unwrap();
    dir
}

fn note(o: &runbook_bot::diagnose::run::Outcome, title: &str) -> String {
    let s = step(o, title);
    assert_eq!(s.verdict, Verdict::CouldNotCheck, "{s:#?}");
    s.note.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_that_cannot_run_reads_could_not_check_with_its_reason() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    // A function the owner may not call, and an owner whose search path
    // lacks `extensions`, as a role created by hand would.
    db.as_superuser(
        "CREATE FUNCTION public.rb_locked() RETURNS int LANGUAGE sql AS 'SELECT 1';
         REVOKE ALL ON FUNCTION public.rb_locked() FROM PUBLIC;
         ALTER ROLE {{owner}} SET search_path = \"$user\", public;",
    )
    .await;
    let dir = catalog();
    let h = Harness::new(dir.path(), db.target_as(&db.roles.owner));
    let o = h.run("broken").await;
    assert_eq!(o.verdict, Verdict::CouldNotCheck, "{o:#?}");
    assert_eq!(
        note(&o, "Missing relation"),
        "relation \"public.no_such_table\" does not exist (42P01) on production; the catalog's SQL does not match this database"
    );
    assert!(note(&o, "Missing column").starts_with("column \"no_such_column\" does not exist (42703) on production"));
    assert!(note(&o, "Missing function").contains("does not exist (42883) on production"));
    assert!(note(&o, "Missing schema").starts_with("schema \"no_such_schema\" does not exist (3F000)"));
    assert_eq!(
        note(&o, "Permission denied"),
        "permission denied for function rb_locked (42501) on production; the bot's role lacks a privilege"
    );
    // Installed in `extensions` (found there although the role's path lacks
    // it) but not preloaded on this server.
    assert_eq!(
        note(&o, "Statement statistics"),
        "pg_stat_statements must be loaded via shared_preload_libraries (55000) on production; the database is not set up for this query"
    );
    let accounts = step(&o, "Accounts");
    assert_eq!(accounts.verdict, Verdict::Ok);
    assert_eq!(col(accounts, "company_name"), ["Acme", "Globex"]);
    assert_eq!(render::tally(&o), "0 findings · 6 steps could not check");

    // Not installed at all: could not check, saying so.
    db.as_superuser("DROP EXTENSION pg_stat_statements").await;
    let o = h.run("broken").await;
    assert_eq!(
        note(&o, "Statement statistics"),
        "extension `pg_stat_statements` is not installed on production"
    );
    assert!(o.steps.iter().all(|s| !s.unreachable));
    db.cleanup().await;
}

/// The owner's URL with a port nothing listens on.
fn unreachable(db: &SupabaseDb) -> runbook_bot::config::TargetConfig {
    let mut url = url::Url::parse(&db.url_as(&db.roles.owner)).unwrap();
    url.set_port(Some(1)).unwrap();
    crate::support::supabase::target_config(url.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_could_not_check_but_its_ping_is_critical() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let dir = catalog();
    let h = Harness::new(dir.path(), unreachable(&db));
    let o = h.run("broken").await;
    assert_eq!(o.verdict, Verdict::CouldNotCheck);
    assert_eq!(
        note(&o, "Missing relation"),
        "target production unreachable after 3 attempts: connection refused"
    );
    assert_eq!(
        note(&o, "Accounts"),
        "target production unreachable after 3 attempts: connection refused (step not run)"
    );
    // `/diagnose health` pings to test reachability: that failure is the finding.
    let o = h.run("health").await;
    assert_eq!(o.verdict, Verdict::Critical);
    assert_eq!(step(&o, "Database round trip").verdict, Verdict::Critical);
    // The HTTP endpoints do not depend on the database; none are configured.
    assert_eq!(step(&o, "HTTP health endpoints").verdict, Verdict::Ok);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn could_not_check_reads_as_such_in_slack_on_the_timeline_and_in_metrics() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let dir = catalog();
    let commands = dir.path().to_path_buf();
    let t = TestApp::spawn_configured(Backend::Sqlite, |cfg| {
        cfg.commands_dir = commands;
        cfg.targets.insert("production".into(), unreachable(&db));
        cfg.default_target = Some("production".into());
    })
    .await;
    t.command(L2, "p1 Logins failing").await;
    t.slash(L1, "/diagnose", "broken").await;
    let calls = t
        .slack
        .wait_for(10, "the result", |c| {
            c.iter()
                .any(|c| c.body.to_string().contains("/diagnose broken on production"))
        })
        .await;
    let result = calls
        .iter()
        .find(|c| c.body.to_string().contains("/diagnose broken on production"))
        .unwrap();
    assert_eq!(result.body["text"], "/diagnose broken on production: could not check");
    let blocks = result.body["blocks"].to_string();
    assert!(blocks.contains(":grey_question: *could not check*"), "{blocks}");
    assert!(blocks.contains("0 findings · 7 steps could not check"), "{blocks}");
    assert!(!blocks.contains(":large_green_circle:"), "{blocks}");
    let timeline = t.command(L1, "timeline").await;
    assert!(
        timeline.contains("/diagnose broken on production: could not check (0 findings · 7 steps could not check)"),
        "{timeline}"
    );
    let metrics = t.metrics().await;
    for line in [
        "runbook_bot_diagnostics_total{name=\"broken\",verdict=\"could_not_check\"} 1",
        "runbook_bot_diagnostic_steps_total{name=\"broken\",verdict=\"could_not_check\"} 7",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
    t.finish().await;
    db.cleanup().await;
}
