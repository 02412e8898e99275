//! Load generator for the slash-command path, in release mode:
//! `cargo bench --bench commands` (add `-- postgres` for the PostgreSQL store,
//! `-- status` for the concurrent write-path phase alone).
//!
//! Spawns the real app on port 0 with the real Slack client pointed at the
//! tests' fake Slack, sends correctly signed `/incident p1 …` and
//! `/incident ack #N` requests, and reports latency percentiles of the 200
//! responses and how long the outbox took to deliver everything.
//!
//! Then the persisted write path under concurrency: `CONCURRENCY` clients each
//! send `/incident status #N …` on an open incident as fast as they get
//! answers (each one a state change, a timeline row and two outbox rows in
//! one transaction), and it reports throughput and latency percentiles,
//! once it has checked that every one of them was committed.

#[path = "../tests/integration/support/mod.rs"]
#[allow(dead_code, unused_macros, unused_imports)]
mod support;

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use runbook_bot::App;
use runbook_bot::config::{Config, Level};
use runbook_bot::slack::ids::{ChannelId, RoleSubject};

use support::{Backend, TestDb, fake_slack, signed_form};

const SECRET: &str = "bench-secret";
const DECLARES: usize = 300;
/// Concurrent clients for the write-path phase, and requests in each run
/// (enough for a few seconds, so one slow moment does not decide the rate).
const CONCURRENCY: [usize; 2] = [8, 32];
const STATUS_REQUESTS: usize = 16_000;
/// Open incidents the status updates are spread over.
const OPEN: usize = 20;

#[tokio::main]
async fn main() {
    let backend = Backend::from_args();
    let only_status = std::env::args().any(|a| a == "status");
    let slack = fake_slack::FakeSlack::start().await;
    println!("backend: {backend:?}");

    if !only_status {
        let db = TestDb::new(backend).await;
        sequential(&slack, db.url.clone()).await;
        db.cleanup().await;
    }
    concurrent(&slack, backend).await;
}

/// Phase 1: Slack's real pacing would make delivery take minutes; lift it to
/// measure our side of delivery too.
async fn sequential(slack: &fake_slack::FakeSlack, db_url: String) {
    let (app, send) = start(slack, db_url, true).await;
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
    report("/incident p1 (declare)", &mut declare);
    report("/incident ack", &mut ack);
    println!(
        "{} commands in {:.2} s; all {expected} Slack writes delivered {:.2} s after the first request",
        DECLARES * 2,
        requests_done.as_secs_f64(),
        delivered.as_secs_f64()
    );
}

/// Phase 2, the write path, with Slack's default pacing as in production:
/// posts leave at about one per second per channel, root updates as they come.
async fn concurrent(slack: &fake_slack::FakeSlack, backend: Backend) {
    for clients in CONCURRENCY {
        let db = TestDb::new(backend).await;
        let (app, send) = start(slack, db.url.clone(), false).await;
        for n in 1..=OPEN {
            send(format!("p2 Checkout slow {n}")).await;
        }
        let (started, cpu) = (Instant::now(), cpu_seconds());
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let send = send.clone();
                tokio::spawn(async move {
                    let per_client = STATUS_REQUESTS / clients;
                    let mut took = Vec::with_capacity(per_client);
                    for n in 0..per_client {
                        let id = 1 + (c * per_client + n) % OPEN;
                        took.push(send(format!("status #{id} still failing, update {n}")).await);
                    }
                    took
                })
            })
            .collect();
        let mut samples = Vec::with_capacity(STATUS_REQUESTS);
        for t in tasks {
            samples.extend(t.await.unwrap());
        }
        let (took, cpu) = (started.elapsed(), cpu_seconds() - cpu);
        // A 200 may carry an error reply: count what actually landed.
        let landed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM incident_events WHERE kind = 'status'")
            .fetch_one(&app.state.store.pool)
            .await
            .unwrap();
        assert_eq!(landed, samples.len() as i64, "status updates committed");
        app.shutdown().await;
        db.cleanup().await;
        let rate = samples.len() as f64 / took.as_secs_f64();
        let cpu_per = cpu / samples.len() as f64 * 1e6;
        report(
            &format!(
                "/incident status, {clients} concurrent ({rate:.0} req/s, {cpu_per:.0} µs CPU per request, this process with its client)"
            ),
            &mut samples,
        );
    }
}

/// User + system CPU time of this process so far, from /proc (Linux): the
/// bench's own clients and fake Slack run in it too.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The app, and a function that sends one signed `/incident` command and
/// returns how long its 200 took.
async fn start(
    slack: &fake_slack::FakeSlack,
    db_url: String,
    lift_pacing: bool,
) -> (App, impl Fn(String) -> BoxFuture<'static, Duration> + Clone + use<>) {
    let api = std::env::var("BENCH_SLACK").unwrap_or_else(|_| slack.api_url());
    let mut cfg = Config::for_tests(&db_url, &api, SECRET);
    cfg.slack.incident_channel = ChannelId::parse("CBENCH").unwrap();
    cfg.roles
        .subjects
        .push((RoleSubject::parse("U0BENCH").unwrap(), Level::L2));
    if lift_pacing {
        cfg.outbox.per_channel_per_second = 10_000.0;
        cfg.outbox.burst = 10_000;
    }
    let app = App::build(cfg).await.unwrap();
    let url = format!("http://{}/slack/commands", app.addr);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let response_url = slack.response_url("bench");
    let send = move |text: String| -> BoxFuture<'static, Duration> {
        let http = http.clone();
        let url = url.clone();
        let response_url = response_url.clone();
        Box::pin(async move {
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
            let r = signed_form(http.post(&url), SECRET, ts, body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let _ = r.bytes().await.unwrap();
            started.elapsed()
        })
    };
    (app, send)
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
