//! Alert intake throughput: `cargo bench --bench alerts` (add `-- postgres`
//! for the PostgreSQL state store).
//!
//! Spawns the real app and posts Alertmanager payloads of 20 alerts from
//! several concurrent clients: first with distinct fingerprints, then the
//! same fingerprints repeated. Reports alerts per second accepted and
//! persisted (a 202 means the payload is in the inbox), latency percentiles
//! of the 202s, and how long the background processing took to catch up.

#[path = "../tests/integration/support/mod.rs"]
#[allow(dead_code, unused_macros, unused_imports)]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use runbook_bot::App;
use runbook_bot::config::Config;
use serde_json::json;
use support::{Backend, TestDb, fake_slack};

const PER_PAYLOAD: usize = 20;
const PAYLOADS: usize = 1500;
const CLIENTS: usize = 16;
const TOKEN: &str = "bench-token";

fn payload(prefix: &str, n: usize) -> String {
    let alerts: Vec<_> = (0..PER_PAYLOAD)
        .map(|i| {
            json!({
                "status": "firing",
                "labels": {"alertname": "HighErrorRate", "severity": "warning", "service": format!("svc{}", i % 5)},
                "annotations": {"summary": format!("error rate above 5% ({prefix}{n}-{i})")},
                "startsAt": "2026-11-21T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": format!("{prefix}{n}-{i}")
            })
        })
        .collect();
    json!({"version": "4", "status": "firing", "receiver": "bot", "groupLabels": {}, "commonLabels": {},
           "commonAnnotations": {}, "externalURL": "http://am:9093", "alerts": alerts})
    .to_string()
}

#[tokio::main]
async fn main() {
    let slack = fake_slack::FakeSlack::start().await;
    let backend = Backend::from_args();
    let db = TestDb::new(backend).await;
    let mut cfg = Config::for_tests(&db.url, &slack.api_url(), "s");
    cfg.alerts.token = Some(secrecy::SecretString::from(TOKEN.to_string()));
    cfg.outbox.per_channel_per_second = 10_000.0;
    cfg.outbox.burst = 10_000;
    let app = App::build(cfg).await.unwrap();
    let url = Arc::new(format!("http://{}/alerts/alertmanager", app.addr));
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();

    println!("backend: {backend:?}");
    for (phase, distinct) in [("distinct fingerprints", true), ("repeated fingerprints", false)] {
        let bodies: Arc<Vec<String>> = Arc::new(
            (0..PAYLOADS)
                .map(|n| payload(if distinct { "d" } else { "r" }, if distinct { n } else { n % 5 }))
                .collect(),
        );
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (http, url, bodies) = (http.clone(), url.clone(), bodies.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                for n in (c..PAYLOADS).step_by(CLIENTS) {
                    let t = Instant::now();
                    let r = http
                        .post(url.as_str())
                        .bearer_auth(TOKEN)
                        .body(bodies[n].clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 202);
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut lat: Vec<Duration> = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        let took = started.elapsed();
        lat.sort();
        let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).saturating_sub(1)].as_secs_f64() * 1e3;
        let inbox_done = {
            let deadline = Instant::now() + Duration::from_secs(600);
            loop {
                let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alert_inbox WHERE processed_at IS NULL")
                    .fetch_one(&app.state.store.pool)
                    .await
                    .unwrap();
                if left == 0 || Instant::now() > deadline {
                    break started.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        println!(
            "{phase}: {} payloads × {PER_PAYLOAD} alerts from {CLIENTS} clients in {:.2} s = {:.0} alerts/s accepted and persisted; \
             202 latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; inbox fully processed after {:.1} s",
            PAYLOADS,
            took.as_secs_f64(),
            (PAYLOADS * PER_PAYLOAD) as f64 / took.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            lat.last().unwrap().as_secs_f64() * 1e3,
            inbox_done.as_secs_f64()
        );
    }
    app.shutdown().await;
    db.cleanup().await;
}
