//! The incident console under a year of history: `cargo bench --bench
//! console` (add `-- postgres` for the PostgreSQL state store).
//!
//! Seeds 10,000 incidents (over the last 12 weeks, so the metrics page
//! aggregates all of them) and 100,000 timeline rows (one incident holds
//! 5,000 of them), 2,000 approval requests with votes and audit rows, into
//! the tests' state database; signs in through `/incident console` and the
//! sign-in form like a person; then requests each page `SAMPLES` times over
//! HTTP with that session and prints p50 and p99 per page.

#[path = "../tests/integration/support/mod.rs"]
#[allow(dead_code, unused_macros, unused_imports)]
mod support;

use std::time::{Duration, Instant};

use runbook_bot::clock::Clock;
use support::console as c;
use support::{Backend, L3, TestApp};

const INCIDENTS: i64 = 10_000;
const EVENTS: i64 = 100_000;
/// The incident with the long timeline, and how long it is.
const BIG: i64 = INCIDENTS;
const BIG_EVENTS: i64 = 5_000;
const APPROVALS: i64 = 2_000;
const SAMPLES: usize = 50;
const BATCH: i64 = 500;
const WEEK_MS: i64 = 7 * 86_400_000;

#[tokio::main]
async fn main() {
    let backend = Backend::from_args();
    let t = c::spawn(backend).await;
    let started = Instant::now();
    seed(&t).await;
    println!(
        "console bench ({backend:?}): seeded {INCIDENTS} incidents, {EVENTS} timeline rows, {APPROVALS} approvals in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let cookie = c::sign_in(&t, L3).await;
    let pages = [
        ("incidents", "/console/incidents".to_string()),
        (
            "incidents filtered",
            "/console/incidents?severity=p1&state=resolved".to_string(),
        ),
        (
            "incidents by service+dates",
            format!("/console/incidents?service=svc-7&from={}", day(&t, 30)),
        ),
        ("incidents deep page", "/console/incidents?before=300".to_string()),
        ("incident (10 events)", "/console/incidents/5000".to_string()),
        ("incident (5,000 events)", format!("/console/incidents/{BIG}")),
        ("incident (5,000) page 50", format!("/console/incidents/{BIG}?page=50")),
        ("postmortem.md (5,000)", format!("/console/incidents/{BIG}/postmortem")),
        ("approvals", "/console/approvals".to_string()),
        (
            "approvals search (no match)",
            "/console/approvals?q=nobody-matches-this".to_string(),
        ),
        ("approval detail", "/console/approvals/1000".to_string()),
        ("catalog", "/console/catalog".to_string()),
        ("metrics (12 weeks)", "/console/metrics".to_string()),
    ];
    println!("{:<30} {:>9} {:>9} {:>9}", "page", "p50 ms", "p99 ms", "KiB");
    for (name, path) in pages {
        let (p50, p99, size) = measure(&t, &cookie, &path).await;
        println!("{name:<30} {p50:>9.1} {p99:>9.1} {:>9.0}", size as f64 / 1024.0);
    }
    t.finish().await;
}

fn day(t: &TestApp, days_ago: i64) -> String {
    chrono::DateTime::from_timestamp_millis(t.clock.now_ms() - days_ago * 86_400_000)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

async fn measure(t: &TestApp, cookie: &str, path: &str) -> (f64, f64, usize) {
    let client = c::client();
    let url = format!("{}{path}", t.addr);
    let mut times = Vec::with_capacity(SAMPLES);
    let mut size = 0;
    for i in 0..SAMPLES + 3 {
        let began = Instant::now();
        let resp = client
            .get(&url)
            .header("cookie", format!("rb_console={cookie}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        size = resp.bytes().await.unwrap().len();
        // The first requests warm the connection and the caches.
        if i >= 3 {
            times.push(began.elapsed());
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(times[((times.len() as f64 - 1.0) * q).round() as usize]);
    (at(0.5), at(0.99), size)
}

async fn exec(t: &TestApp, sql: String) {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&t.state().store.writer)
        .await
        .unwrap();
}

/// Multi-row INSERTs of `BATCH` rows; every value is generated here.
async fn seed(t: &TestApp) {
    let now = t.clock.now_ms();
    let span = 12 * WEEK_MS - 3_600_000;
    for start in (1..=INCIDENTS).step_by(BATCH as usize) {
        let rows: Vec<String> = (start..start + BATCH)
            .map(|id| {
                let at = now - span + span * id / INCIDENTS;
                let sev = ["p0", "p1", "p2", "p3"][(id % 4) as usize];
                let (state, ack, res) = if id % 10 == 0 {
                    ("declared", "NULL".to_string(), "NULL".to_string())
                } else {
                    ("resolved", (at + 60_000 * (id % 30 + 1)).to_string(), (at + 600_000 * (id % 50 + 1)).to_string())
                };
                format!(
                    "('CINCIDENTS', 'Incident {id}: checkout errors <b>&amp;</b>', '{sev}', '{state}', 'U0LEAD', 'U0ONCALL', \
                     {at}, {ack}, {res}, {at}, 'svc-{}')",
                    id % 20
                )
            })
            .collect();
        exec(
            t,
            format!(
                "INSERT INTO incidents (channel, title, severity, state, commander, declared_by, declared_at, \
                 acknowledged_at, resolved_at, updated_at, service) VALUES {}",
                rows.join(", ")
            ),
        )
        .await;
    }
    seed_events(t, now, span).await;
    seed_approvals(t, now, span).await;
}

async fn seed_events(t: &TestApp, now: i64, span: i64) {
    let kinds = [
        "alert",
        "status",
        "diagnostic",
        "action_requested",
        "approval_vote",
        "escalation",
        "acknowledged",
    ];
    let small = (EVENTS - BIG_EVENTS) / (INCIDENTS - 1);
    let mut batch = Vec::new();
    let flush = async |batch: &mut Vec<String>| {
        if !batch.is_empty() {
            exec(
                t,
                format!(
                    "INSERT INTO incident_events (incident_id, occurred_at, actor, kind, text) VALUES {}",
                    batch.join(", ")
                ),
            )
            .await;
            batch.clear();
        }
    };
    let mut total = 0;
    for id in 1..=INCIDENTS {
        let n = if id == BIG { EVENTS - total } else { small };
        let at = now - span + span * id / INCIDENTS;
        for k in 0..n {
            let kind = kinds[(k % kinds.len() as i64) as usize];
            batch.push(format!(
                "({id}, {}, 'U0ONCALL', '{kind}', '/diagnose orphans on production: warning (2 findings) step {k}')",
                at + k * 20_000
            ));
            if batch.len() as i64 == BATCH {
                flush(&mut batch).await;
            }
        }
        total += n;
    }
    flush(&mut batch).await;
}

async fn seed_approvals(t: &TestApp, now: i64, span: i64) {
    let plan = r#"{"tables":[{"id":"flags","title":"Flags to turn off","key":"name","columns":["name","enabled"],"rows":[["new-tenant-flow","true"]],"counts":true}],"touched":1}"#;
    for start in (1..=APPROVALS).step_by(BATCH as usize) {
        let ids = start..start + BATCH;
        let requests: Vec<String> = ids
            .clone()
            .map(|id| {
                let at = now - span + span * id / APPROVALS;
                format!(
                    "('/rollback', 'flag', '[\"new-tenant-flow\"]', 'production', 'CINCIDENTS', {}, 'U0ONCALL', {at}, {}, \
                     'l3', 1, '{plan}', '{:064x}', 'applied', 'U0LEAD', 'applied and verified', {at})",
                    id * 5,
                    at + 3_600_000,
                    id
                )
            })
            .collect();
        exec(
            t,
            format!(
                "INSERT INTO approval_requests (command, name, words, target, channel, incident_id, requested_by, \
                 requested_at, expires_at, approver_level, approvals_needed, plan, plan_hash, state, decided_by, \
                 result, updated_at) VALUES {}",
                requests.join(", ")
            ),
        )
        .await;
        let votes: Vec<String> = ids.clone().map(|id| format!("({id}, 'U0LEAD', {now})")).collect();
        exec(
            t,
            format!(
                "INSERT INTO approval_votes (request_id, approver, voted_at) VALUES {}",
                votes.join(", ")
            ),
        )
        .await;
        let audit: Vec<String> = ids
            .flat_map(|id| {
                ["action_requested", "approval_vote", "action_applied"]
                    .map(|k| format!("({now}, 'U0LEAD', '{k}', {id}, {}, 'detail of {k}', 'slack')", id * 5))
            })
            .collect();
        exec(
            t,
            format!(
                "INSERT INTO audit_events (at, actor, kind, request_id, incident_id, detail, via) VALUES {}",
                audit.join(", ")
            ),
        )
        .await;
    }
}
