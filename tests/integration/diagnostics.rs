//! Every catalog diagnostic against the schema it was written for (our
//! fixture of a hosted Supabase project, the bot connected as the
//! non-superuser project owner): planted anomalies are reported exactly, a
//! clean database is ok, and a target that is down or slow fails fast with
//! a clear message.

use std::path::Path;
use std::time::{Duration, Instant};

use runbook_bot::catalog::Catalog;
use runbook_bot::config::{HealthCheck, TargetConfig};
use runbook_bot::diagnose::run::{Outcome, Verdict};
use runbook_bot::dispatch::parse::{Invocation, parse};
use runbook_bot::targets::Targets;
use sqlx::{Connection, Executor};

use crate::support::diagnose::{Harness, col, step};
use crate::support::*;

fn all_ok(o: &Outcome) {
    assert_eq!(o.verdict, Verdict::Ok, "{o:#?}");
    assert!(o.steps.iter().all(|s| s.note.is_none()), "{o:#?}");
}

const PETER: &str = "b0000000-0000-4000-8000-0000000000d1";
const ANN: &str = "b0000000-0000-4000-8000-000000000001";

#[tokio::test]
async fn orphans_reports_exactly_the_planted_rows() {
    let db = SupabaseDb::b2b_planted().await;
    let h = Harness::for_db(&db);
    let o = h.run("orphans").await;
    assert_eq!(o.verdict, Verdict::Warning);
    let users = step(&o, "Live users whose account");
    assert_eq!(col(users, "user_email"), ["lost@nowhere.test", "peter@initech.test"]);
    assert_eq!(col(users, "account_state"), ["missing", "deleted"]);
    let subs = step(&o, "Live subscriptions");
    assert_eq!(col(subs, "subscription_uuid"), ["c0000000-0000-4000-8000-0000000000d1"]);
    let auth = step(&o, "Sign-in accounts (auth.users) without an application user");
    assert_eq!(col(auth, "email"), ["nobody@ghost.test"]);
    // The per-user check, as the login path runs it.
    let o = h.run(&format!("orphans {PETER}")).await;
    assert_eq!(o.steps.len(), 1);
    assert_eq!(o.verdict, Verdict::Critical);
    assert_eq!(col(&o.steps[0], "orphaned"), ["1"]);
    let o = h.run(&format!("orphans {ANN}")).await;
    assert_eq!(o.verdict, Verdict::Ok);
    db.cleanup().await;
}

#[tokio::test]
async fn clean_database_is_ok_for_every_diagnostic() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let h = Harness::for_db(&db);
    for text in [
        "orphans".to_string(),
        format!("orphans {ANN}"),
        "jwt-hook".into(),
        "email ann@acme.test".into(),
        "email free@nowhere.test".into(),
        "account a0000000-0000-4000-8000-000000000001".into(),
        "account ann@acme.test".into(),
        "subscription a0000000-0000-4000-8000-000000000001".into(),
        "connections".into(),
        "bloat".into(),
        "rls".into(),
        "indexes".into(),
        "db-size".into(),
        "health".into(),
    ] {
        let o = h.run(&text).await;
        all_ok(&o);
        assert!(o.steps.iter().all(|s| !s.unreachable), "{text}");
    }
    // pg_stat_statements is installed but not preloaded on this server:
    // that step could not check, which is not healthy, though nothing was found.
    let o = h.run("slow-queries").await;
    assert_eq!(o.verdict, Verdict::CouldNotCheck, "{o:#?}");
    assert_eq!(o.steps[0].verdict, Verdict::Ok);
    let stmts = step(&o, "Slowest statements");
    assert_eq!(stmts.verdict, Verdict::CouldNotCheck);
    assert_eq!(
        stmts.note.as_deref(),
        Some(
            "pg_stat_statements must be loaded via shared_preload_libraries (55000) on production; \
             the database is not set up for this query"
        )
    );
    // Informational results still show their rows.
    let o = h.run("account ann@acme.test").await;
    assert_eq!(
        col(step(&o, "Users of the account"), "user_email"),
        ["ann@acme.test", "bob@acme.test"]
    );
    assert_eq!(
        col(step(&o, "Sign-in accounts"), "email"),
        ["ann@acme.test", "bob@acme.test"]
    );
    let o = h.run("subscription a0000000-0000-4000-8000-000000000002").await;
    all_ok(&o);
    assert_eq!(col(&o.steps[0], "trial_days_left"), ["10"]);
    let o = h.run("rls").await;
    assert_eq!(step(&o, "Policies per table").table.total, 6);
    db.cleanup().await;

    // Runbook 003's registrations, on its own schema.
    let care = SupabaseDb::new(AppSchema::Care).await;
    let h = Harness::for_db(&care);
    let o = h.run("registrations").await;
    all_ok(&o);
    let signups: i64 = col(&o.steps[0], "signups")
        .iter()
        .map(|n| n.parse::<i64>().unwrap())
        .sum();
    let week: i64 = care
        .scalar("SELECT count(*)::text FROM auth.users WHERE created_at > now() - interval '7 days'")
        .await
        .parse()
        .unwrap();
    assert_eq!(signups, week);
    assert!(week > 0, "the seed has recent sign-ups");
    care.cleanup().await;
}

#[tokio::test]
async fn jwt_hook_is_judged_by_whether_supabase_auth_may_call_it() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let h = Harness::for_db(&db);
    // The runbook's way: SECURITY DEFINER, EXECUTE granted to the auth role.
    let o = h.run("jwt-hook").await;
    all_ok(&o);
    assert_eq!(col(&o.steps[0], "security"), ["definer"]);
    assert_eq!(
        col(&o.steps[0], "auth_role"),
        std::slice::from_ref(&db.roles.auth_admin)
    );
    // Supabase's docs' way: SECURITY INVOKER with grants. It works: not critical.
    db.as_superuser("ALTER FUNCTION public.custom_access_token_hook(jsonb) SECURITY INVOKER")
        .await;
    let o = h.run("jwt-hook").await;
    all_ok(&o);
    assert_eq!(col(&o.steps[0], "security"), ["invoker"]);
    // Without EXECUTE for Supabase Auth every sign-in fails: critical, even
    // SECURITY DEFINER; callable by everyone is a warning of its own.
    db.as_superuser(
        "ALTER FUNCTION public.custom_access_token_hook(jsonb) SECURITY DEFINER;
         REVOKE EXECUTE ON FUNCTION public.custom_access_token_hook(jsonb) FROM {{auth_admin}};",
    )
    .await;
    let o = h.run("jwt-hook").await;
    assert_eq!(o.verdict, Verdict::Critical);
    assert_eq!(col(&o.steps[0], "auth_role_may_execute"), ["NO"]);
    db.as_superuser(
        "GRANT EXECUTE ON FUNCTION public.custom_access_token_hook(jsonb) TO {{auth_admin}};
         GRANT EXECUTE ON FUNCTION public.custom_access_token_hook(jsonb) TO PUBLIC;",
    )
    .await;
    let o = h.run("jwt-hook").await;
    assert_eq!(o.verdict, Verdict::Warning);
    assert_eq!(step(&o, "Callable by every role").table.total, 1);
    db.as_superuser("DROP FUNCTION public.custom_access_token_hook(jsonb)")
        .await;
    let o = h.run("jwt-hook").await;
    assert_eq!(o.verdict, Verdict::Critical);
    assert_eq!(o.steps[0].table.total, 0);
    db.cleanup().await;
}

#[tokio::test]
async fn email_account_and_subscription_on_planted_data() {
    let db = SupabaseDb::b2b_planted().await;
    let h = Harness::for_db(&db);
    let o = h.run("email ann@acme.test").await;
    assert_eq!(o.verdict, Verdict::Critical, "the same email twice");
    assert_eq!(
        col(&o.steps[0], "user_uuid"),
        [ANN, "b0000000-0000-4000-8000-0000000000d4"]
    );
    // An email only auth.users holds blocks registration with nothing behind it.
    let o = h.run("email nobody@ghost.test").await;
    assert_eq!(o.verdict, Verdict::Warning);
    assert_eq!(o.steps[0].table.total, 0);
    assert_eq!(
        col(step(&o, "Sign-in accounts"), "auth_user_id"),
        ["b0000000-0000-4000-8000-0000000000e1"]
    );
    let o = h.run("email gone@globex.test").await;
    assert_eq!(o.verdict, Verdict::Warning, "soft-deleted: a recovery case");
    assert_eq!(
        col(step(&o, "Soft-deleted"), "user_uuid"),
        ["b0000000-0000-4000-8000-0000000000d3"]
    );

    for who in [
        "peter@initech.test",
        "billing@initech.test",
        "a0000000-0000-4000-8000-0000000000d1",
    ] {
        let o = h.run(&format!("account {who}")).await;
        assert_eq!(o.verdict, Verdict::Warning, "{who}: deleted account");
        assert_eq!(col(&o.steps[0], "company_name"), ["Initech"]);
        assert_eq!(
            col(step(&o, "Users of the account"), "user_email"),
            ["peter@initech.test"]
        );
        assert_eq!(
            col(step(&o, "Subscriptions"), "subscription_uuid"),
            ["c0000000-0000-4000-8000-0000000000d1"]
        );
    }
    let o = h.run("account 00000000-0000-4000-8000-000000000000").await;
    assert_eq!(o.verdict, Verdict::Warning, "no such account");

    let o = h.run("subscription a0000000-0000-4000-8000-0000000000d5").await;
    assert_eq!(o.verdict, Verdict::Critical, "trial ended yesterday");
    assert_eq!(col(&o.steps[0], "trial_days_left"), ["-1"]);
    assert_eq!(col(&o.steps[0], "status"), ["trialing"]);
    db.cleanup().await;
}

#[tokio::test]
async fn rls_indexes_db_size_and_registrations_on_planted_data() {
    let db = SupabaseDb::b2b_planted().await;
    db.as_owner(
        "CREATE TABLE public.events AS SELECT gen_random_uuid() AS id FROM generate_series(1, 60000);
         ALTER TABLE public.events ENABLE ROW LEVEL SECURITY;
         CREATE INDEX idx_events_id ON public.events (id);",
    )
    .await;
    // The users(user_uuid) index the login path needs goes missing.
    db.as_superuser("ALTER TABLE public.users DROP CONSTRAINT users_pkey")
        .await;
    let h = Harness::for_db(&db);
    let o = h.run("rls").await;
    assert_eq!(o.verdict, Verdict::Critical);
    assert_eq!(col(&o.steps[0], "table_name"), ["subscriptions"]);

    let o = h.run("indexes").await;
    assert_eq!(o.verdict, Verdict::Critical);
    assert_eq!(col(&o.steps[0], "column_name"), ["user_uuid"]);
    assert_eq!(col(step(&o, "Unused indexes"), "index_name"), ["public.idx_events_id"]);

    let o = h.run("db-size").await;
    all_ok(&o);
    assert_eq!(col(&o.steps[0], "database"), std::slice::from_ref(&db.name));
    assert_eq!(col(&o.steps[1], "table_name")[0], "public.events");
    db.cleanup().await;

    // Runbook 003: a sign-up whose profile was never created.
    let care = SupabaseDb::new(AppSchema::Care).await;
    care.as_superuser(
        "INSERT INTO auth.users (instance_id, id, aud, role, email, created_at, updated_at)
         VALUES ('00000000-0000-0000-0000-000000000000', 'b0000000-0000-4000-8000-0000000000e1',
                 'authenticated', 'authenticated', 'nobody@ghost.test', now(), now());
         DELETE FROM public.profiles WHERE id = 'b0000000-0000-4000-8000-0000000000e1';",
    )
    .await;
    let h = Harness::for_db(&care);
    let o = h.run("registrations 1").await;
    assert_eq!(o.verdict, Verdict::Warning);
    assert_eq!(col(&o.steps[1], "email"), ["nobody@ghost.test"]);
    let with_profile: i64 = col(&o.steps[0], "with_profile")
        .iter()
        .map(|n| n.parse::<i64>().unwrap())
        .sum();
    let signups: i64 = col(&o.steps[0], "signups")
        .iter()
        .map(|n| n.parse::<i64>().unwrap())
        .sum();
    assert_eq!(signups - with_profile, 1);
    care.cleanup().await;
}

#[tokio::test]
async fn live_activity_slow_queries_idle_transactions_and_bloat() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let h = Harness::for_db(&db);
    // A query that runs for a while, and a session idle inside a transaction.
    let mut sleeper = db.owner().await;
    let sleeper_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut sleeper)
        .await
        .unwrap();
    let sleeping = tokio::spawn(async move {
        let _ = sqlx::query("SELECT pg_sleep(30)").execute(&mut sleeper).await;
    });
    let mut idle = db.owner().await;
    let idle_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut idle)
        .await
        .unwrap();
    idle.execute("BEGIN; SELECT 1").await.unwrap();
    // Dead tuples: autovacuum off so the planted state holds while we look.
    db.as_owner(
        "CREATE TABLE public.churn (id int) WITH (autovacuum_enabled = false);
         ALTER TABLE public.churn ENABLE ROW LEVEL SECURITY;
         INSERT INTO public.churn SELECT generate_series(1, 100);
         DELETE FROM public.churn WHERE id <= 60;",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let o = h.run("slow-queries").await;
    let active = &o.steps[0];
    assert_eq!(active.verdict, Verdict::Warning);
    assert_eq!(col(active, "pid"), [sleeper_pid.to_string()]);
    assert!(col(active, "query")[0].contains("pg_sleep(30)"));
    // Installed but not preloaded on this server: the step cannot run.
    let stmts = step(&o, "Slowest statements");
    assert_eq!(
        stmts.verdict,
        Verdict::CouldNotCheck,
        "installed but not preloaded on this server"
    );

    let o = h.run("connections").await;
    assert_eq!(o.verdict, Verdict::Warning);
    assert_eq!(col(&o.steps[1], "pid"), [idle_pid.to_string()]);

    // Statistics reach pg_stat_user_tables asynchronously; wait for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let o = loop {
        let o = h.run("bloat").await;
        if o.steps[0].table.total > 0 || Instant::now() > deadline {
            break o;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(o.verdict, Verdict::Critical, "{o:#?}");
    assert_eq!(col(&o.steps[0], "table_name"), ["public.churn"]);
    assert_eq!(col(&o.steps[0], "dead_pct"), ["60"]);

    sleeping.abort();
    drop(idle);
    db.cleanup().await;
}

#[tokio::test]
async fn health_probes_the_database_and_the_configured_endpoints() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let app = axum::Router::new()
        .route("/ok", axum::routing::get(|| async { "ok" }))
        .route(
            "/fail",
            axum::routing::get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let check = |name: &str, path: &str| HealthCheck {
        name: name.into(),
        url: format!("{base}{path}"),
        max_latency_ms: 1000,
    };

    let mut h = Harness::for_db(&db);
    h.health = vec![check("web", "/ok")];
    let o = h.run("health").await;
    all_ok(&o);
    assert_eq!(col(&o.steps[0], "target"), ["production"]);
    assert_eq!(col(step(&o, "HTTP health"), "status"), ["200"]);

    h.health = vec![check("web", "/ok"), check("functions", "/fail")];
    let o = h.run("health").await;
    assert_eq!(o.verdict, Verdict::Critical);
    assert_eq!(col(step(&o, "HTTP health"), "endpoint"), ["web", "functions"]);
    assert_eq!(col(step(&o, "HTTP health"), "status"), ["200", "500"]);
    db.cleanup().await;
}

#[tokio::test]
async fn a_target_that_refuses_connections_fails_fast_and_names_no_secret() {
    let target = TargetConfig {
        url: secrecy::SecretString::from("postgres://postgres:hunter2@127.0.0.1:1/app".to_string()),
        connect_timeout: Duration::from_millis(1500),
        attempts: 3,
    };
    let h = Harness::new(Path::new("commands"), target);
    let started = Instant::now();
    let o = h.run("orphans").await;
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // A target that is down says nothing about the data: could not check.
    assert_eq!(o.verdict, Verdict::CouldNotCheck);
    let note = o.steps[0].note.clone().unwrap();
    assert_eq!(
        note,
        "target production unreachable after 3 attempts: connection refused"
    );
    assert!(o.steps[1..].iter().all(|s| {
        s.verdict == Verdict::CouldNotCheck
            && s.note.as_deref()
                == Some("target production unreachable after 3 attempts: connection refused (step not run)")
    }));
    let shown = format!(
        "{}{}",
        runbook_bot::diagnose::render::text(&o),
        serde_json::to_string(&runbook_bot::diagnose::render::blocks(&o)).unwrap()
    );
    assert!(!shown.contains("hunter2") && !shown.contains("127.0.0.1:1"), "{shown}");
}

#[tokio::test]
async fn a_locked_table_times_out_the_fail_closed_user_check() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let h = Harness::for_db(&db);
    let mut locker = db.owner().await;
    locker
        .execute("BEGIN; LOCK TABLE public.users IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = Instant::now();
    let o = h.run(&format!("orphans {ANN}")).await;
    let took = started.elapsed();
    assert_eq!(o.verdict, Verdict::CouldNotCheck, "a timeout is not a finding");
    assert_eq!(
        o.steps[0].note.as_deref(),
        Some("timed out after 200 ms (statement_timeout) on production, 3 attempts")
    );
    // Three 200 ms attempts with about 100 and 300 ms of jittered backoff: under a few seconds.
    assert!(took < Duration::from_secs(4), "{took:?}");
    locker.execute("ROLLBACK").await.unwrap();
    locker.close().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn bad_arguments_are_refused_before_any_query() {
    let catalog = Catalog::load(Path::new("commands")).unwrap();
    let err = |text: &str| parse("/diagnose", text, &catalog).unwrap_err().0;
    assert!(err("email not-an-email").contains("is not an email address (argument `email`)"));
    let e = err("email x@y.io'; DROP TABLE users; --");
    assert!(e.contains("is not an email address"), "{e}");
    assert!(err("account 1' OR '1'='1").contains("is not an email address or a UUID"));
    assert!(err("subscription nope").contains("is not a UUID"));
    assert!(err("registrations 0").contains("at least 1"));
    assert!(err("subscription").contains("Missing argument `account`"));
    assert!(err("nosuch").contains("Unknown check `nosuch`"));
    assert!(err("rls --target").contains("needs a target name"));
    assert!(err("rls --target Prod;").contains("is not a target name"));
    let help = match parse("/diagnose", "help", &catalog).unwrap() {
        Invocation::CatalogHelp { command } => runbook_bot::dispatch::parse::catalog_help(&command, &catalog),
        _ => panic!(),
    };
    for name in [
        "orphans",
        "jwt-hook",
        "email",
        "account",
        "subscription",
        "slow-queries",
        "connections",
        "bloat",
        "rls",
        "indexes",
        "db-size",
        "registrations",
        "health",
    ] {
        assert!(
            help.contains(&format!("`/diagnose {name}")),
            "help lacks {name}: {help}"
        );
    }
}

#[tokio::test]
async fn a_new_diagnostic_is_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flags.toml"),
        r#"
kind = "diagnostic"
schema = "hotel"
command = "/diagnose"
name = "flags"
summary = "Feature flags that are on"
usage = "/diagnose flags"
level = "l1"

[[steps]]
title = "Enabled flags"
sql = "SELECT flag_name FROM public.feature_flags WHERE is_enabled ORDER BY flag_name"
judge.rows = "warning"
"#,
    )
    .unwrap();
    let db = SupabaseDb::new(AppSchema::Hotel).await;
    let h = Harness::new(dir.path(), db.target_config());
    let o = h.run("flags").await;
    assert_eq!(o.verdict, Verdict::Warning);
    assert_eq!(
        col(&o.steps[0], "flag_name"),
        ["enhanced-invite-system", "new-tenant-flow"]
    );

    // The same folder, served: `/diagnose flags` from Slack, no Rust change.
    let t = TestApp::spawn_configured(Backend::Sqlite, |cfg| {
        cfg.commands_dir = dir.path().to_path_buf();
        db.attach(cfg);
    })
    .await;
    assert!(
        t.slash(L1, "/diagnose", "flags")
            .await
            .contains("Running `/diagnose flags`")
    );
    let calls = t
        .slack
        .wait_for(10, "the result", |c| {
            c.iter().any(|c| c.ok && c.method == "chat.postMessage")
        })
        .await;
    assert!(calls[0].body.to_string().contains("new-tenant-flow"));
    t.finish().await;
    db.cleanup().await;
}

#[test]
fn every_catalog_file_loads_and_a_malformed_one_is_named() {
    let catalog = Catalog::load(Path::new("commands")).expect("the shipped catalog is valid");
    assert_eq!(catalog.entries("/diagnose").count(), 13);

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("commands/diagnose/email.toml", dir.path().join("email.toml")).unwrap();
    let broken = std::fs::read_to_string("commands/diagnose/rls.toml")
        .unwrap()
        .replace("timeout_ms", "timeout");
    std::fs::write(dir.path().join("rls.toml"), broken).unwrap();
    let problems = Catalog::load(dir.path()).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].file.ends_with("rls.toml"));
    assert!(problems[0].why.contains("unknown field `timeout`"), "{}", problems[0]);
    assert!(problems[0].field.starts_with("line "), "{}", problems[0]);
}

#[tokio::test]
async fn connecting_is_lazy_so_a_down_target_does_not_stop_the_bot() {
    // Building the targets does no I/O.
    let t = Targets::from_config(
        &[(
            "production".to_string(),
            TargetConfig {
                url: secrecy::SecretString::from("postgres://u@127.0.0.1:1/x".to_string()),
                connect_timeout: Duration::from_millis(200),
                attempts: 1,
            },
        )]
        .into(),
    )
    .unwrap();
    assert_eq!(t.names().collect::<Vec<_>>(), ["production"]);
    assert_eq!(t.get("production").unwrap().open_connections(), 0);
}

#[tokio::test]
async fn diagnose_from_slack_threads_the_result_under_the_incident() {
    let db = SupabaseDb::b2b_planted().await;
    let t = TestApp::spawn_configured(Backend::Sqlite, |cfg| db.attach(cfg)).await;
    // No open incident: the result is posted in the channel.
    assert!(
        t.slash(L1, "/diagnose", "rls")
            .await
            .contains("Running `/diagnose rls` on *production*")
    );
    t.slack
        .wait_for(10, "rls result", |c| {
            c.iter().any(|c| c.ok && c.method == "chat.postMessage")
        })
        .await;
    let first = t.slack.ok_calls("chat.postMessage").remove(0);
    assert!(first.body["thread_ts"].is_null());
    assert!(
        first.body["text"]
            .as_str()
            .unwrap()
            .contains("/diagnose rls on production: critical")
    );

    t.command(L2, "p1 Logins failing").await;
    t.drained(10).await;
    let root_ts = t.slack.ok_calls("chat.postMessage")[1].ts.clone().unwrap();
    t.slash(L1, "/diagnose", "orphans").await;
    let calls = t
        .slack
        .wait_for(10, "orphans result", |c| {
            c.iter()
                .any(|c| c.body.to_string().contains("/diagnose orphans on production"))
        })
        .await;
    let result = calls
        .iter()
        .find(|c| c.body.to_string().contains("/diagnose orphans on production"))
        .unwrap();
    assert_eq!(result.body["thread_ts"], root_ts.as_str());
    let blocks = result.body["blocks"].to_string();
    assert!(
        blocks.contains("peter@initech.test") && blocks.contains("lost@nowhere.test"),
        "{blocks}"
    );
    let timeline = t.command(L1, "timeline").await;
    assert!(
        timeline.contains("/diagnose orphans on production: warning"),
        "{timeline}"
    );

    // Levels and arguments are checked before anything runs.
    assert!(
        t.slash(NOBODY, "/diagnose", "orphans")
            .await
            .contains("you have no role")
    );
    assert!(
        t.slash(L1, "/diagnose", "email nope")
            .await
            .contains("is not an email address")
    );
    assert!(
        t.slash(L1, "/diagnose", "rls --target staging")
            .await
            .contains("Unknown target `staging`. Targets: production.")
    );
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test]
async fn values_of_every_common_type_render_without_panicking() {
    let db = SupabaseDb::new(AppSchema::Care).await;
    let h = Harness::for_db(&db);
    let t = h.targets.get("production").unwrap();
    let sql = "SELECT 'infinity'::timestamptz AS a, '-infinity'::timestamp AS b, 'infinity'::date AS c,
                      '2024-02-29 12:34:56+00'::timestamptz AS d, '1999-12-31'::date AS e, 1.5::numeric AS f,
                      NULL::text AS g, true AS h, 7::int2 AS i, interval '90 minutes' AS j, '{\"k\": 1}'::jsonb AS k";
    let table = t.query(sql, &[], 2000, 5).await.unwrap();
    assert_eq!(
        table.rows[0],
        [
            "infinity",
            "-infinity",
            "infinity",
            "2024-02-29 12:34:56 UTC",
            "1999-12-31",
            "(numeric — cast it to text)",
            "NULL",
            "true",
            "7",
            "1.5 h",
            "{\"k\":1}"
        ]
    );
    db.cleanup().await;
}
