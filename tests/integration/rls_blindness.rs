//! Row-level security hides rows from a role that does not bypass it,
//! silently. On a Supabase-shaped target, the bot connected as the reader
//! (pg_monitor and pg_read_all_data, no BYPASSRLS) notices and says so;
//! connected as the owner (BYPASSRLS) everything is as usual.

use std::collections::BTreeSet;

use runbook_bot::catalog::relations::Relation;
use runbook_bot::diagnose::render;
use runbook_bot::diagnose::run::Verdict;
use runbook_bot::targets::Targets;

use crate::support::diagnose::{Harness, col, step};
use crate::support::*;

/// Diagnostics on RLS-protected tables of the B2B runbook's application.
const ACCOUNTS: &str = r#"
kind = "diagnostic"
schema = "b2b"
command = "/diagnose"
name = "accounts"
summary = "Live accounts and users who never signed in"
usage = "/diagnose accounts"
level = "l1"

[[steps]]
title = "Live accounts"
expect = "at least one"
sql = "SELECT company_name FROM public.accounts WHERE deleted_at IS NULL ORDER BY company_name"
judge.empty = "critical"

[[steps]]
title = "Users without a session"
sql = "SELECT u.user_email FROM public.users u WHERE NOT EXISTS (SELECT 1 FROM auth.sessions s WHERE s.user_id = u.user_uuid) ORDER BY 1"

[[steps]]
title = "Connections"
sql = "SELECT count(*)::int AS n FROM pg_stat_activity"
"#;

const ACME: &str = r#"
kind = "diagnostic"
schema = "b2b"
command = "/diagnose"
name = "acme"
summary = "Acme is a customer"
usage = "/diagnose acme"
level = "l1"

[[steps]]
title = "Acme"
sql = "SELECT company_name FROM accounts WHERE company_name = 'Acme'"
judge.rows = "warning"
"#;

/// An action whose plan reads an RLS-protected table.
const GRANT_ADMIN: &str = r#"
kind = "action"
schema = "b2b"
command = "/user"
name = "grant-admin"
summary = "Make a user an admin"
usage = "/user grant-admin <user_uuid>"
level = "l2"
max_rows = 1

[[args]]
name = "user"
type = "uuid"

[[plan]]
id = "user"
title = "User who will become admin"
key = "user_uuid"
sql = "SELECT user_uuid, role FROM public.users WHERE user_uuid = $1 AND role <> 'admin'"
params = ["user"]

[[apply]]
plan = "user"
sql = "UPDATE public.users SET role = 'admin' WHERE user_uuid = ANY($1::uuid[]) AND role <> 'admin' RETURNING user_uuid"
params = ["plan.user"]

[[verify]]
title = "the user is an admin"
sql = "SELECT 1 FROM public.users WHERE user_uuid = $1 AND role = 'admin'"
params = ["user"]
expect = "rows"
"#;

const BOB: &str = "b0000000-0000-4000-8000-000000000002";

/// A catalog of `(file name, text)`.
fn catalog(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn rel(schema: Option<&str>, name: &str) -> Relation {
    Relation::new(schema, name)
}

/// A fresh `Targets` (so nothing is cached) connecting as `role`.
fn target(db: &SupabaseDb, role: &str) -> Targets {
    Targets::from_config(&[("production".to_string(), db.target_as(role))].into()).unwrap()
}

async fn hidden(db: &SupabaseDb, role: &str, relations: &BTreeSet<Relation>) -> Vec<String> {
    let targets = target(db, role);
    let v = targets.get("production").unwrap().visibility(relations).await.unwrap();
    assert_eq!(v.role, role);
    v.hidden()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_does_not_see_past_rls_and_the_owner_does() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let relations: BTreeSet<Relation> = [
        rel(Some("public"), "accounts"),
        // Unqualified: resolved on the role's search path.
        rel(None, "users"),
        rel(Some("auth"), "users"),
        rel(Some("pg_catalog"), "pg_stat_activity"),
        rel(Some("public"), "no_such_table"),
        rel(Some("public"), "subscriptions"),
    ]
    .into();
    let (reader, owner) = (db.roles.reader.clone(), db.roles.owner.clone());
    assert_eq!(
        hidden(&db, &reader, &relations).await,
        ["auth.users", "public.accounts", "public.subscriptions", "public.users"]
    );
    let targets = target(&db, &owner);
    let v = targets.get("production").unwrap().visibility(&relations).await.unwrap();
    assert!(v.bypassrls && !v.superuser && v.bypasses());
    assert!(v.hidden().is_empty());

    // A table's owner is exempt from its RLS, unless the table forces it.
    db.as_superuser("ALTER TABLE public.subscriptions OWNER TO {{reader}}")
        .await;
    assert_eq!(
        hidden(&db, &reader, &relations).await,
        ["auth.users", "public.accounts", "public.users"]
    );
    db.as_superuser("ALTER TABLE public.subscriptions FORCE ROW LEVEL SECURITY")
        .await;
    assert!(
        hidden(&db, &reader, &relations)
            .await
            .contains(&"public.subscriptions".to_string())
    );
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diagnostic_on_rls_tables_as_the_reader_could_not_check_and_shows_what_it_saw() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    // The reader may see Acme, and nothing else of the application.
    db.as_superuser(
        "CREATE POLICY rb_reader_sees_acme ON public.accounts FOR SELECT TO {{reader}} USING (company_name = 'Acme')",
    )
    .await;
    let dir = catalog(&[("accounts.toml", ACCOUNTS), ("acme.toml", ACME)]);
    let reader = &db.roles.reader;

    let h = Harness::new(dir.path(), db.target_as(reader));
    let o = h.run("accounts").await;
    assert_eq!(o.verdict, Verdict::CouldNotCheck, "{o:#?}");
    let live = step(&o, "Live accounts");
    assert_eq!(
        live.verdict,
        Verdict::CouldNotCheck,
        "one row seen is not proof of health"
    );
    assert_eq!(
        live.note.as_deref(),
        Some(
            format!("role `{reader}` does not bypass row-level security on public.accounts; rows may be missing")
                .as_str()
        )
    );
    assert_eq!(col(live, "company_name"), ["Acme"], "its rows are still shown");
    let users = step(&o, "Users without a session");
    assert_eq!(users.verdict, Verdict::CouldNotCheck);
    assert!(
        users
            .note
            .as_deref()
            .unwrap()
            .contains("on auth.sessions, public.users; rows may be missing")
    );
    let conns = step(&o, "Connections");
    assert_eq!((conns.verdict, conns.note.as_deref()), (Verdict::Ok, None));
    assert_eq!(render::tally(&o), "0 findings · 2 steps could not check");
    assert!(render::text(&o).contains("on production: could not check"));

    // A finding among the rows it did see stands (an unqualified name is
    // resolved on the reader's search path).
    let o = h.run("acme").await;
    assert_eq!(o.verdict, Verdict::Warning);
    assert!(o.steps[0].note.as_deref().unwrap().contains("on public.accounts"));

    // As the owner (BYPASSRLS) everything is as usual.
    let h = Harness::new(dir.path(), db.target_as(&db.roles.owner));
    let o = h.run("accounts").await;
    assert_eq!(o.verdict, Verdict::Ok, "{o:#?}");
    assert!(o.steps.iter().all(|s| s.note.is_none()));
    assert_eq!(col(step(&o, "Live accounts"), "company_name"), ["Acme", "Globex"]);
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_request_as_the_reader_is_refused_before_anything_is_stored() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let dir = catalog(&[("grant-admin.toml", GRANT_ADMIN)]);
    let app = |role: String| {
        let commands = dir.path().to_path_buf();
        let db = &db;
        async move {
            TestApp::spawn_configured(Backend::Sqlite, |cfg| {
                cfg.commands_dir = commands;
                db.attach_as(cfg, &role);
            })
            .await
        }
    };
    let t = app(db.roles.reader.clone()).await;
    let reply = t.slash(L2, "/user", &format!("grant-admin {BOB}")).await;
    assert_eq!(
        reply,
        format!(
            "Refusing: role `{}` cannot see all rows of public.users; the plan could be incomplete.",
            db.roles.reader
        )
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM approval_requests").await, 0);
    assert_eq!(t.scalar("SELECT COUNT(*) FROM audit_events").await, 0);
    assert_eq!(t.scalar("SELECT COUNT(*) FROM outbox").await, 0, "no card");
    t.finish().await;

    let t = app(db.roles.owner.clone()).await;
    let reply = t.slash(L2, "/user", &format!("grant-admin {BOB}")).await;
    assert!(reply.contains("Approval #1 requested"), "{reply}");
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_health_reports_what_each_targets_role_sees() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let dir = catalog(&[("accounts.toml", ACCOUNTS)]);
    std::fs::copy("commands/diagnose/health.toml", dir.path().join("health.toml")).unwrap();
    let mut down = url::Url::parse(&db.url_as(&db.roles.owner)).unwrap();
    down.set_port(Some(1)).unwrap();
    let h = Harness::with_targets(
        dir.path(),
        vec![
            ("production", db.target_as(&db.roles.reader)),
            ("staging", db.target_as(&db.roles.owner)),
            ("down", crate::support::supabase::target_config(down.to_string())),
        ],
    );
    let o = h.run("health").await;
    let rls = step(&o, "Row-level security");
    assert_eq!(rls.verdict, Verdict::Warning, "{rls:#?}");
    assert_eq!(o.verdict, Verdict::Warning);
    assert_eq!(col(rls, "target"), ["down", "production", "staging"]);
    assert_eq!(col(rls, "role")[1..], [db.roles.reader.clone(), db.roles.owner.clone()]);
    assert_eq!(col(rls, "bypasses_rls"), ["unknown", "no", "BYPASSRLS"]);
    assert_eq!(
        col(rls, "rows_hidden_on"),
        [
            "could not ask: unreachable: connection refused",
            "auth.sessions, public.accounts, public.users",
            "none"
        ]
    );

    // The owner alone: nothing to report.
    let h = Harness::new(dir.path(), db.target_as(&db.roles.owner));
    let o = h.run("health").await;
    assert_eq!(o.verdict, Verdict::Ok, "{o:#?}");
    assert_eq!(col(step(&o, "Row-level security"), "bypasses_rls"), ["BYPASSRLS"]);
    db.cleanup().await;
}

/// A config file in `dir` (next to its `commands` folder) whose
/// `production` target connects as `role`, plus a target that is down.
fn config_as(db: &SupabaseDb, role: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let mut down = url::Url::parse(&db.url_as(role)).unwrap();
    down.set_port(Some(1)).unwrap();
    let path = dir.join("bot.toml");
    std::fs::write(
        &path,
        format!(
            "[slack]\nbot_token = \"xoxb-1\"\nsigning_secret = \"s\"\nincident_channel = \"C0INC\"\n\
             api_url = \"http://127.0.0.1:9/api/\"\n\
             [diagnostics]\ncommands_dir = \"{}\"\ndefault_target = \"production\"\n\
             [targets.production]\nurl = \"{}\"\n[targets.down]\nurl = \"{down}\"\n",
            dir.join("commands").display(),
            db.url_as(role),
        ),
    )
    .unwrap();
    path
}

/// A folder with `commands/accounts.toml`, for the binary.
fn commands_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("commands")).unwrap();
    std::fs::write(dir.path().join("commands/accounts.toml"), ACCOUNTS).unwrap();
    dir
}

/// `runbook-bot check` with `production` as `role`: (exit code, stdout, stderr).
fn check_as(db: &SupabaseDb, role: &str, dir: &std::path::Path) -> (Option<i32>, String, String) {
    let path = config_as(db, role, dir);
    let out = crate::cli::bin()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_naming_a_target_whose_role_rls_blinds() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let dir = commands_folder();
    let (code, out, err) = check_as(&db, &db.roles.reader, dir.path());
    assert_eq!(code, Some(1), "{out}{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("warning: config: targets.down: unreachable: connection refused"),
        "{err}"
    );
    assert_eq!(
        lines[1],
        format!(
            "config: targets.production: role `{}` does not bypass row-level security on auth.sessions, public.accounts, public.users: rows there are invisible to the bot; grant the role BYPASSRLS",
            db.roles.reader
        )
    );

    // As the owner, only the warning about the target that is down.
    let (code, out, err) = check_as(&db, &db.roles.owner, dir.path());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("configuration OK"), "{out}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("warning: config: targets.down:"), "{err}");
    db.cleanup().await;
}

/// Lines the child prints on stdout until one contains `until`, or 20 s.
fn lines_until(child: &mut std::process::Child, until: &str) -> Vec<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen: Vec<String> = Vec::new();
    while !seen.iter().any(|l| l.contains(until)) {
        match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_warns_at_start_about_a_target_rls_blinds() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let dir = commands_folder();
    let path = config_as(&db, &db.roles.reader, dir.path());
    let mut child = crate::cli::bin()
        .args(["serve", "--config"])
        .arg(&path)
        .env("BIND", "127.0.0.1:0")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("state.db").display()),
        )
        .env("RUST_LOG", "info,sqlx=warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let seen = lines_until(&mut child, "does not bypass row-level security");
    child.kill().unwrap();
    child.wait().unwrap();
    let log = seen.join("\n");
    let listening = seen.iter().any(|l| l.contains("runbook-bot listening"));
    let warned = format!("role `{}` does not bypass row-level security on", db.roles.reader);
    let warned = seen
        .iter()
        .any(|l| l.contains("WARN") && l.contains(&warned) && l.contains("production"));
    assert!(listening && warned, "{log}");
    db.cleanup().await;
}
