//! Load generator for the slash-command path, in release mode:
//! `cargo bench --bench commands` (add `-- postgres` for the PostgreSQL store).
//!
//! Spawns the real app on port 0 with the real Slack client pointed at the
//! tests' fake Slack, sends correctly signed `/incident p1 …` and
//! `/incident ack #N` requests, and reports latency percentiles of the 200
//! responses and how long the outbox took to deliver everything.

#[path = "../tests/integration/support/fake_slack.rs"]
#[allow(dead_code)]
mod fake_slack;

use std::time::{Duration, Instant};

use runbook_bot::App;
use runbook_bot::config::{Config, Level};
use runbook_bot::slack::ids::{ChannelId, RoleSubject};
use runbook_bot::slack::verify::sign;

const SECRET: &str = "bench-secret";
const DECLARES: usize = 300;

#[tokio::main]
async fn main() {
    let postgres = std::env::args().any(|a| a == "postgres");
    let slack = fake_slack::FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db_url = if postgres {
        let admin =
            std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        use sqlx::{Connection, Executor};
        let mut c = sqlx::PgConnection::connect(&admin).await.expect("PostgreSQL reachable");
        let name = format!("rb_bench_{}", std::process::id());
        let _ = c
            .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
            .await;
        c.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap();
        format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
    } else {
        format!("sqlite://{}", dir.path().join("bench.db").display())
    };
    let mut cfg = Config::for_tests(&db_url, &slack.api_url(), SECRET);
    cfg.slack.incident_channel = ChannelId::parse("CBENCH").unwrap();
    cfg.roles
        .subjects
        .push((RoleSubject::parse("U0BENCH").unwrap(), Level::L2));
    // Slack's real pacing would make delivery take minutes; measure our side.
    cfg.outbox.per_channel_per_second = 10_000.0;
    cfg.outbox.burst = 10_000;
    let app = App::build(cfg).await.unwrap();
    let url = format!("http://{}/slack/commands", app.addr);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let send = |text: String| {
        let http = http.clone();
        let url = url.clone();
        let response_url = slack.response_url("bench");
        async move {
            let body = serde_urlencoded::to_string([
                ("team_id", "T0"),
                ("channel_id", "CBENCH"),
                ("user_id", "U0BENCH"),
                ("command", "/incident"),
                ("text", text.as_str()),
                ("response_url", response_url.as_str()),
                ("trigger_id", "1.2.3"),
            ])
            .unwrap();
            let ts = chrono::Utc::now().timestamp();
            let started = Instant::now();
            let r = http
                .post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-slack-request-timestamp", ts.to_string())
                .header("x-slack-signature", sign(SECRET.as_bytes(), ts, body.as_bytes()))
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let _ = r.bytes().await.unwrap();
            started.elapsed()
        }
    };

    let mut declare = Vec::with_capacity(DECLARES);
    let mut ack = Vec::with_capacity(DECLARES);
    let all = Instant::now();
    for n in 1..=DECLARES {
        declare.push(send(format!("p1 Login failing {n}")).await);
        ack.push(send(format!("ack #{n}")).await);
    }
    let requests_done = all.elapsed();
    // Outbox: 2 posts per declare, 1 post + 1 update per ack.
    let expected = DECLARES * 4;
    slack
        .wait_for(300, "all deliveries", |c| c.iter().filter(|c| c.ok).count() >= expected)
        .await;
    let delivered = all.elapsed();
    app.shutdown().await;

    println!("backend: {}", if postgres { "postgres" } else { "sqlite" });
    report("/incident p1 (declare)", &mut declare);
    report("/incident ack", &mut ack);
    println!(
        "{} commands in {:.2} s; all {expected} Slack writes delivered {:.2} s after the first request",
        DECLARES * 2,
        requests_done.as_secs_f64(),
        delivered.as_secs_f64()
    );
}

fn report(name: &str, samples: &mut [Duration]) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "{name}: n={} p50={:.1} ms p95={:.1} ms p99={:.1} ms max={:.1} ms",
        samples.len(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.95).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    );
}
