//! README's *Run it*, as a new user runs it: the shipped example config
//! copied to `runbook-bot.toml`, the catalog beside it, and nothing in the
//! environment but the two Slack secrets. `check` passes and `serve` starts,
//! says what is on and off, answers `/healthz`, and stops on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const HTTP_SECRETS: &[(&str, &str)] = &[
    ("SLACK_SIGNING_SECRET", "first-run-secret"),
    ("SLACK_BOT_TOKEN", "xoxb-first-run"),
];
const SOCKET_SECRETS: &[(&str, &str)] = &[
    ("SLACK_APP_TOKEN", "xapp-1-A0-first-run"),
    ("SLACK_BOT_TOKEN", "xoxb-first-run"),
];

/// A working directory as after `cp runbook-bot.example.toml runbook-bot.toml`.
fn checkout() -> tempfile::TempDir {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo.join("runbook-bot.example.toml"),
        dir.path().join("runbook-bot.toml"),
    )
    .unwrap();
    copy_dir(&repo.join("commands"), &dir.path().join("commands"));
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// The binary in `dir` with only `env` set: no RUST_LOG, no DATABASE_URL, nothing.
fn bot(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_runbook-bot"));
    c.current_dir(dir).env_clear().envs(env.iter().copied());
    c
}

#[test]
fn check_passes_on_the_example_config_with_only_the_two_slack_secrets() {
    let dir = checkout();
    for secrets in [HTTP_SECRETS, SOCKET_SECRETS] {
        let out = bot(dir.path(), secrets).arg("check").output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(0), "{secrets:?}\n{stdout}\n{stderr}");
        assert!(stdout.contains("configuration OK"), "{stdout}");
        for off in [
            "targets: off",
            "deploy hooks: off",
            "alert intake: off",
            "health poller: off",
        ] {
            assert!(stdout.contains(off), "{off} missing from\n{stdout}");
        }
        let socket = if secrets == SOCKET_SECRETS {
            "socket mode: on"
        } else {
            "socket mode: off"
        };
        assert!(stdout.contains(socket), "{stdout}");
    }
    // Neither secret of a transport: serve could not hear Slack.
    let out = bot(dir.path(), &[("SLACK_BOT_TOKEN", "xoxb-1")])
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("slack.signing_secret: missing"));
}

#[test]
fn serve_starts_on_the_example_config_says_what_is_off_and_stops_on_sigterm() {
    let dir = checkout();
    // Port 0 rather than the default 3000, which another process may hold.
    let mut env = HTTP_SECRETS.to_vec();
    env.push(("BIND", "127.0.0.1:0"));
    let mut child = bot(dir.path(), &env)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = read_lines(child.stdout.take().unwrap());
    let log = wait_for_log(&lines, "health poller:", Duration::from_secs(30));
    let addr = log
        .lines()
        .find(|l| l.contains("runbook-bot listening"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no listening address in\n{log}"))
        .to_string();
    for line in [
        "slack http: on",
        "socket mode: off",
        "targets: off",
        "deploy hooks: off",
        "alert intake: off",
    ] {
        assert!(log.contains(line), "{line} missing from\n{log}");
    }
    assert!(
        !log.contains("first-run-secret") && !log.contains("xoxb-first-run"),
        "{log}"
    );
    assert_eq!(http_get(&addr, "/healthz"), 200);
    assert!(dir.path().join("runbook-bot.db").exists(), "the default SQLite store");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(25);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not stop within 25 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "serve exited with {status}");
}

fn read_lines(out: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(strip_ansi(&line)).is_err() {
                break;
            }
        }
    });
    rx
}

/// Everything logged until a line containing `until`.
fn wait_for_log(lines: &mpsc::Receiver<String>, until: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut log = String::new();
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        log.push_str(&line);
        log.push('\n');
        if line.contains(until) {
            return log;
        }
    }
    panic!("no `{until}` in the log within {limit:?}:\n{log}");
}

/// The log is coloured (it is not told otherwise): drop the escapes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn http_get(addr: &str, path: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runbook_bot::slack::client::install_crypto_provider();
    rt.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}
