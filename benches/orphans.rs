//! `/diagnose orphans` on a production-sized database, through the bot and
//! directly: `cargo bench --bench orphans`.
//!
//! Loads 1,000,000 users, 100,000 accounts and 100,000 subscriptions (plus
//! matching auth users and profiles) with 0.1 % orphans into a PostgreSQL
//! database, then times, over several rounds, (a) the bot's whole path for
//! `/diagnose orphans` — parse, authorize, run the catalog steps in
//! read-only transactions, render, queue the Slack message — and (b) the same
//! three SELECTs run directly with sqlx. Reports medians and the overhead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use runbook_bot::catalog::Catalog;
use runbook_bot::clock::SystemClock;
use runbook_bot::config::{Config, Level, TargetConfig};
use runbook_bot::dispatch::{self, Origin, Via};
use runbook_bot::slack::ids::{ChannelId, RoleSubject, UserId};
use runbook_bot::state::AppState;
use sqlx::{Connection, Executor, PgConnection};

const ROUNDS: usize = 7;
const DB: &str = "rb_bench_orphans";

const DATA: &str = "
INSERT INTO public.accounts (account_uuid, company_name, company_email, deleted_at)
SELECT md5('a' || g)::uuid, 'Company ' || g, 'co' || g || '@bench.test', CASE WHEN g <= 100 THEN now() END
FROM generate_series(1, 100000) g;
INSERT INTO public.users (user_uuid, account_uuid, user_email, role)
SELECT md5('u' || g)::uuid, md5('a' || (g % 100000 + 1))::uuid, 'user' || g || '@bench.test', 'member'
FROM generate_series(1, 1000000) g;
INSERT INTO public.subscriptions (subscription_uuid, account_uuid, status)
SELECT md5('s' || g)::uuid, md5('a' || g)::uuid, 'active' FROM generate_series(1, 100000) g;
INSERT INTO auth.users (id, email) SELECT md5('u' || g)::uuid, 'user' || g || '@bench.test' FROM generate_series(1, 1000000) g;
INSERT INTO public.profiles (id) SELECT md5('u' || g)::uuid FROM generate_series(1, 1000000) g WHERE g % 1000 <> 0;
";

#[tokio::main]
async fn main() {
    let admin =
        std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let url = format!("{}/{DB}", admin.rsplit_once('/').unwrap().0);
    let mut c = PgConnection::connect(&admin).await.expect("PostgreSQL reachable");
    c.execute(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {DB} WITH (FORCE)"
    )))
    .await
    .unwrap();
    c.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DB}")))
        .await
        .unwrap();
    let load = Instant::now();
    let mut t = PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(include_str!("../tests/fixtures/schema.sql"))
        .execute(&mut t)
        .await
        .unwrap();
    sqlx::raw_sql(DATA).execute(&mut t).await.unwrap();
    t.execute("VACUUM ANALYZE").await.unwrap();
    println!(
        "loaded 1,000,000 users / 100,000 accounts / 100,000 subscriptions in {:.1} s",
        load.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::for_tests(
        &format!("sqlite://{}", dir.path().join("state.db").display()),
        "http://127.0.0.1:9/api/",
        "s",
    );
    cfg.slack.incident_channel = ChannelId::parse("CBENCH").unwrap();
    cfg.roles
        .subjects
        .push((RoleSubject::parse("U0BENCH").unwrap(), Level::L1));
    cfg.targets.insert(
        "production".into(),
        TargetConfig {
            url: secrecy::SecretString::from(url.clone()),
            connect_timeout: Duration::from_secs(2),
            attempts: 1,
        },
    );
    cfg.default_target = Some("production".into());
    let state = AppState::connect(cfg, Arc::new(SystemClock)).await.unwrap();
    let origin = Origin {
        user: UserId::parse("U0BENCH").unwrap(),
        channel: ChannelId::parse("CBENCH").unwrap(),
        response_url: None,
        via: Via::Terminal {
            os_user: "bench".into(),
        },
    };
    let catalog = Catalog::load(std::path::Path::new("commands")).unwrap();
    let entry = catalog.get("/diagnose", "orphans").unwrap();
    let sqls: Vec<&str> = entry
        .def
        .steps
        .iter()
        .filter(|s| s.when_arg.is_none())
        .filter_map(|s| s.sql.as_deref())
        .collect();

    let mut bot = Vec::new();
    let mut direct = Vec::new();
    for round in 0..=ROUNDS {
        let started = Instant::now();
        let reply = dispatch::dispatch(&state, &origin, "/diagnose", "orphans").await;
        let b = started.elapsed();
        assert!(
            reply.text.contains("1000 rows") && reply.text.contains("100 rows"),
            "{}",
            reply.text
        );

        let started = Instant::now();
        let mut rows = 0;
        for sql in &sqls {
            rows += sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_all(&mut t)
                .await
                .unwrap()
                .len();
        }
        let d = started.elapsed();
        assert_eq!(rows, 2100, "1000 users + 100 subscriptions + 1000 auth users");
        if round > 0 {
            // Round 0 warms caches and connections for both sides.
            bot.push(b);
            direct.push(d);
        }
    }
    bot.sort();
    direct.sort();
    let (b, d) = (bot[ROUNDS / 2], direct[ROUNDS / 2]);
    println!(
        "/diagnose orphans through the bot: median {:.0} ms (min {:.0}, max {:.0}) over {ROUNDS} rounds",
        ms(b),
        ms(bot[0]),
        ms(bot[ROUNDS - 1])
    );
    println!(
        "same three SELECTs directly with sqlx: median {:.0} ms (min {:.0}, max {:.0})",
        ms(d),
        ms(direct[0]),
        ms(direct[ROUNDS - 1])
    );
    println!("bot overhead: {:+.1} %", (ms(b) / ms(d) - 1.0) * 100.0);
    state.store.pool.close().await;
    drop(t);
    let _ = c
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {DB} WITH (FORCE)"
        )))
        .await;
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
