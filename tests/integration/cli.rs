//! The binary: `check`, `exec`, and a first run of `serve`.

use std::process::Command;

pub(crate) fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runbook-bot"));
    for k in [
        "SLACK_SIGNING_SECRET",
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN",
        "SLACK_INCIDENT_CHANNEL",
        "SLACK_API_URL",
        "DATABASE_URL",
        "BIND",
        "RUNBOOK_BOT_CONFIG",
    ] {
        c.env_remove(k);
    }
    c.env("RUST_LOG", "error");
    c
}

#[test]
fn check_prints_one_line_per_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[slack]\nbot_token = \"${NOT_SET_ANYWHERE}\"\nincident_channel = \"general\"\n[roles]\nl9 = [\"U1\"]\n",
    )
    .unwrap();
    let out = bin().args(["check", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<_> = err.lines().collect();
    assert!(
        lines.iter().all(|l| l.starts_with(&path.display().to_string())),
        "{err}"
    );
    assert!(err.contains("l9") || err.contains("unknown variant"), "{err}");

    std::fs::write(
        &path,
        "[slack]\nbot_token = \"${NOT_SET_ANYWHERE}\"\nincident_channel = \"general\"\n",
    )
    .unwrap();
    let out = bin().args(["check", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(
        err.contains("slack.bot_token: environment variable NOT_SET_ANYWHERE is not set"),
        "{err}"
    );
    assert!(
        err.contains("slack.incident_channel: `general` is not a Slack channel id"),
        "{err}"
    );
}

#[test]
fn check_and_serve_refuse_a_config_without_signing_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, "[slack]\nbot_token = \"xoxb-1\"\nincident_channel = \"C0INC\"\n").unwrap();
    let out = bin().args(["check", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("slack.signing_secret: missing"));
    let out = bin().args(["serve", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("slack.signing_secret"));

    let out = bin()
        .args(["check", "--config"])
        .arg(&path)
        .env("SLACK_SIGNING_SECRET", "s3cret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_commands_through_the_dispatcher_and_queues_slack_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("state.db").display());
    let path = dir.path().join("bot.toml");
    std::fs::write(
        &path,
        "[slack]\nbot_token = \"xoxb-1\"\nincident_channel = \"C0INC\"\napi_url = \"http://127.0.0.1:9/api/\"\n[roles]\nl2 = [\"U0ONCALL\"]\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = bin()
            .arg("exec")
            .arg("--config")
            .arg(&path)
            .args(args)
            .env("DATABASE_URL", &db)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, out, err) = run(&["--user", "U0ONCALL", "/incident p1 Slack is down"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Declared incident *#1* (P1)"), "{out}");
    let (_, out, _) = run(&["--user", "U0ONCALL", "/incident list"]);
    assert!(out.contains("Slack is down"), "{out}");
    let (_, out, _) = run(&["--user", "U0NOBODY", "/incident ack #1"]);
    assert!(out.contains("you have no role"), "{out}");
    let (code, _, err) = run(&["--user", "bob", "/incident list"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not a Slack user id"), "{err}");

    // The root message waits in the outbox for `serve` to deliver.
    let store = runbook_bot::store::Store::connect(&secrecy::SecretString::from(db))
        .await
        .unwrap();
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(pending, 2);
}

#[test]
fn check_names_the_file_and_field_of_a_malformed_catalog_command() {
    let dir = tempfile::tempdir().unwrap();
    let commands = dir.path().join("commands");
    std::fs::create_dir(&commands).unwrap();
    std::fs::write(
        commands.join("bad.toml"),
        "kind = \"diagnostic\"\nschema = \"postgres\"\ncommand = \"/diagnose\"\nname = \"bad\"\nsummary = \"s\"\nusage = \"u\"\nlevel = \"l1\"\n[[steps]]\ntitle = \"t\"\nsql = \"SELECT $1\"\n",
    )
    .unwrap();
    let path = dir.path().join("bot.toml");
    std::fs::write(
        &path,
        format!(
            "[slack]\nbot_token = \"x\"\nsigning_secret = \"s\"\nincident_channel = \"C0INC\"\n[diagnostics]\ncommands_dir = \"{}\"\n",
            commands.display()
        ),
    )
    .unwrap();
    let out = bin().args(["check", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("bad.toml: steps[0].sql: placeholders $1 do not match the 0 declared params"),
        "{err}"
    );
}
