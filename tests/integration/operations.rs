//! The binary as operators run it: `health` for container health checks,
//! and `serve` writing JSON logs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::bin;
use crate::support::*;

async fn health(url: String) -> (Option<i32>, String) {
    tokio::task::spawn_blocking(move || {
        let out = bin()
            .args(["health", "--url", &url, "--timeout", "3"])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_exits_0_against_a_running_app_and_1_otherwise() {
    let t = TestApp::spawn(Backend::Sqlite).await;
    let (code, err) = health(format!("{}/healthz", t.addr)).await;
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = health(format!("{}/no-such-route", t.addr)).await;
    assert_eq!(code, Some(1), "a 404 is not healthy: {err}");
    assert!(err.contains("404"), "{err}");
    t.finish().await;

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, err) = health(format!("http://{closed}/healthz")).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.starts_with("unhealthy: ") && err.lines().count() == 1, "{err}");
}

/// `serve` as a child process; its stdout lines arrive on `lines`.
struct Served {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Served {
    /// The next line that `want` accepts, parsed; every line must be JSON.
    fn until(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line for {what}; got:\n{}", self.seen.join("\n")));
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            self.seen.push(line);
            if want(&v) {
                return v;
            }
        }
    }

    /// SIGTERM, as systemd and Kubernetes stop it; then drain what is left.
    fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "serve exited {status}");
        self.seen.extend(self.lines.try_iter());
        self.seen
    }
}

fn serve_json(dir: &std::path::Path, slack: &FakeSlack) -> Served {
    let config = dir.join("bot.toml");
    std::fs::write(
        &config,
        format!(
            "[slack]\nbot_token = \"xoxb-1\"\nsigning_secret = \"{SECRET}\"\nincident_channel = \"{CHANNEL}\"\napi_url = \"{}\"\n[roles]\nl2 = [\"{L2}\"]\n",
            slack.api_url()
        ),
    )
    .unwrap();
    let mut child = bin()
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("DATABASE_URL", format!("sqlite://{}", dir.join("state.db").display()))
        .env("BIND", "127.0.0.1:0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info,sqlx=warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Served {
        child,
        lines,
        seen: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_writes_json_lines_carrying_request_command_and_incident_ids() {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve_json(dir.path(), &slack);
    let listening = served.until("listening", |v| v["fields"]["message"] == "runbook-bot listening");
    let addr = listening["fields"]["addr"].as_str().unwrap().to_string();

    let body = serde_urlencoded::to_string([
        ("channel_id", CHANNEL),
        ("user_id", L2),
        ("command", "/incident"),
        ("text", "p2 JSON logs"),
        ("response_url", slack.response_url("json").as_str()),
        ("trigger_id", "1.2.3"),
        ("team_id", "T0TEAM"),
        ("api_app_id", "A0APP"),
    ])
    .unwrap();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let post = reqwest::Client::new().post(format!("http://{addr}/slack/commands"));
    let resp = signed_form(post, SECRET, ts, body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();

    let declared = tokio::task::block_in_place(|| {
        served.until("the declaration", |v| v["fields"]["message"] == "incident declared")
    });
    let spans = &declared["spans"];
    assert_eq!(spans[0]["name"], "http", "{declared}");
    assert_eq!(spans[0]["http.request_id"], request_id.as_str(), "{declared}");
    assert_eq!(spans[0]["http.route"], "/slack/commands", "{declared}");
    assert_eq!(spans[1]["command.name"], "incident.declare", "{declared}");
    assert_eq!(spans[1]["slack.user_id"], L2, "{declared}");
    assert_eq!(declared["span"]["incident.id"], 1, "{declared}");

    let all = tokio::task::block_in_place(|| served.stop());
    assert!(
        all.iter().all(|l| !l.contains("xoxb-1") && !l.contains(SECRET)),
        "a secret reached the log"
    );
}
