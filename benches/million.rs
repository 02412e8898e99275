//! The runbook 000 procedures on a production-sized Supabase database:
//! `cargo bench --bench million`.
//!
//! Builds the tests' Supabase-shaped target (GoTrue's auth schema, the B2B
//! application tables, hosted-like roles; the bot connects as the
//! non-superuser project owner) and loads 1,000,000 users (auth.users and
//! public.users), 100,000 accounts and 100,000 subscriptions, with 0.1 %
//! orphans of each kind. Then, over several rounds, times:
//!
//! 1. `/diagnose orphans` through the bot (parse, authorize, the catalog's
//!    read-only steps, render, queue the Slack message) against the same
//!    three SELECTs run directly with sqlx;
//! 2. `/restore-account` from the tech lead's approving click to the result
//!    in the thread, through the real app and Slack client against the fake
//!    Slack (re-plan and compare, SERIALIZABLE apply with the key check,
//!    verification, audit, the result post), against the same plan, apply
//!    and verify statements run directly in one transaction.
//!
//! Reports medians, minimum and maximum, and the overheads.

#[path = "../tests/integration/support/mod.rs"]
#[allow(dead_code, unused_macros, unused_imports)]
mod support;

use std::time::{Duration, Instant};

use runbook_bot::catalog::Catalog;
use runbook_bot::dispatch::{self, Origin, Via};
use runbook_bot::slack::ids::{ChannelId, UserId};
use sqlx::{Connection, Executor, PgConnection};
use support::approvals::wait_state;
use support::{AppSchema, Backend, L1, L2, L3, SupabaseDb, TestApp};

const ROUNDS: usize = 7;

/// Account g (1..=100,000) has users u with u % 100,000 + 1 = g (ten each)
/// and subscription g. Accounts 1–100 were soft-deleted alone: their 1,000
/// users and 100 subscriptions are orphans. Accounts 101–108 (the bot's
/// restores) and 201–208 (the direct ones) were soft-deleted together with
/// their users and subscriptions, a day ago. Auth users 1,000,001–1,001,000
/// never got an application user.
const DATA: &str = "
INSERT INTO auth.users (instance_id, id, aud, role, email, created_at, updated_at, raw_user_meta_data)
SELECT '00000000-0000-0000-0000-000000000000', md5('u' || g)::uuid, 'authenticated', 'authenticated',
       'user' || g || '@bench.test', now() - interval '30 days', now() - interval '30 days', '{}'
FROM generate_series(1, 1001000) g;
INSERT INTO public.accounts (account_uuid, company_name, company_email, deleted_at)
SELECT md5('a' || g)::uuid, 'Company ' || g, 'co' || g || '@bench.test',
       CASE WHEN g <= 100 THEN now() - interval '2 days'
            WHEN g BETWEEN 101 AND 108 OR g BETWEEN 201 AND 208 THEN now() - interval '1 day' END
FROM generate_series(1, 100000) g;
INSERT INTO public.users (user_uuid, account_uuid, user_email, role, deleted_at)
SELECT md5('u' || g)::uuid, md5('a' || (g % 100000 + 1))::uuid, 'user' || g || '@bench.test', 'member',
       CASE WHEN g % 100000 + 1 BETWEEN 101 AND 108 OR g % 100000 + 1 BETWEEN 201 AND 208
            THEN now() - interval '1 day' END
FROM generate_series(1, 1000000) g;
INSERT INTO public.subscriptions (subscription_uuid, account_uuid, status, deleted_at)
SELECT md5('s' || g)::uuid, md5('a' || g)::uuid, 'active',
       CASE WHEN g BETWEEN 101 AND 108 OR g BETWEEN 201 AND 208 THEN now() - interval '1 day' END
FROM generate_series(1, 100000) g;
";

#[tokio::main]
async fn main() {
    let load = Instant::now();
    let db = SupabaseDb::new(AppSchema::B2b).await;
    db.as_superuser(DATA).await;
    db.as_superuser("VACUUM ANALYZE").await;
    println!(
        "loaded 1,001,000 auth users / 1,000,000 users / 100,000 accounts / 100,000 subscriptions in {:.1} s",
        load.elapsed().as_secs_f64()
    );
    let t = TestApp::spawn_configured(Backend::Sqlite, |cfg| db.attach(cfg)).await;
    let catalog = Catalog::load(std::path::Path::new("commands")).unwrap();
    let mut owner = db.owner().await;

    let (bot, direct) = orphans(&t, &catalog, &mut owner).await;
    report("/diagnose orphans through the bot", &bot);
    report("the same three SELECTs directly with sqlx", &direct);
    println!("overhead: {:+.0} ms median", ms(median(&bot)) - ms(median(&direct)));

    let (bot, direct) = restores(&t, &catalog, &mut owner).await;
    report("/restore-account, approving click to the result in the thread", &bot);
    report(
        "the same plan, apply and verify statements directly, one transaction",
        &direct,
    );
    println!("overhead: {:+.0} ms median", ms(median(&bot)) - ms(median(&direct)));

    owner.close().await.unwrap();
    t.finish().await;
    db.cleanup().await;
}

/// Rounds of `/diagnose orphans` through the bot and directly; round 0 warms up.
async fn orphans(t: &TestApp, catalog: &Catalog, owner: &mut PgConnection) -> (Vec<Duration>, Vec<Duration>) {
    let origin = Origin {
        user: UserId::parse(L1).unwrap(),
        channel: ChannelId::parse(support::CHANNEL).unwrap(),
        response_url: None,
        via: Via::Terminal {
            os_user: "bench".into(),
        },
    };
    let entry = catalog.get("/diagnose", "orphans").unwrap();
    let sqls: Vec<&str> = entry
        .def
        .steps
        .iter()
        .filter(|s| s.when_arg.is_none())
        .filter_map(|s| s.sql.as_deref())
        .collect();
    let (mut bot, mut direct) = (Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        let started = Instant::now();
        let reply = dispatch::dispatch(&t.app.as_ref().unwrap().state, &origin, "/diagnose", "orphans").await;
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
                .fetch_all(&mut *owner)
                .await
                .unwrap()
                .len();
        }
        let d = started.elapsed();
        assert_eq!(rows, 2100, "1000 users + 100 subscriptions + 1000 auth users");
        if round > 0 {
            bot.push(b);
            direct.push(d);
        }
    }
    (bot, direct)
}

/// Rounds of restoring a whole account (1 account, 10 users, 1 subscription)
/// through the bot, and the same statements directly; round 0 warms up.
async fn restores(t: &TestApp, catalog: &Catalog, owner: &mut PgConnection) -> (Vec<Duration>, Vec<Duration>) {
    let (mut bot, mut direct) = (Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        let account = account_uuid(owner, 101 + round).await;
        let b = restore_through_bot(t, &account).await;
        let account = account_uuid(owner, 201 + round).await;
        let d = restore_directly(catalog, owner, &account).await;
        if round > 0 {
            bot.push(b);
            direct.push(d);
        }
    }
    (bot, direct)
}

async fn account_uuid(owner: &mut PgConnection, g: usize) -> String {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT md5('a' || {g})::uuid::text")))
        .fetch_one(&mut *owner)
        .await
        .unwrap()
}

/// Request as on-call, approve as the tech lead; the time from the click to
/// the fake Slack receiving the result.
async fn restore_through_bot(t: &TestApp, account: &str) -> Duration {
    let reply = t.slash(L2, "/restore-account", account).await;
    assert!(reply.contains("10 rows") || reply.contains("Approval #"), "{reply}");
    let id: i64 = reply
        .split("Approval #")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no approval in {reply}"));
    let clicked = Instant::now();
    assert_eq!(t.click(L3, "approval_approve", &id.to_string()).await.status(), 200);
    wait_state(t, id, "applied").await;
    // The result in the incident thread (the card's update says so too;
    // the thread reply is the later of the two).
    let result = |c: &support::fake_slack::Call| {
        let body = c.body.to_string();
        c.ok && c.method == "chat.postMessage" && body.contains(account) && body.contains("was applied and verified")
    };
    let calls = t
        .slack
        .wait_for(30, "the result in the thread", |c| c.iter().any(result))
        .await;
    let posted = calls.iter().find(|c| result(c)).unwrap().at;
    posted - clicked
}

/// The catalog's own plan, apply and verify SQL, in one SERIALIZABLE
/// transaction on the owner's connection.
async fn restore_directly(catalog: &Catalog, owner: &mut PgConnection, account: &str) -> Duration {
    let def = &catalog.get("/restore-account", "restore-account").unwrap().def;
    let started = Instant::now();
    let mut tx = owner.begin().await.unwrap();
    tx.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        .await
        .unwrap();
    let mut keys: std::collections::HashMap<String, Vec<uuid::Uuid>> = Default::default();
    for plan in &def.plan {
        let rows = sqlx::query(sqlx::AssertSqlSafe(plan.sql.clone()))
            .bind(uuid::Uuid::parse_str(account).unwrap())
            .bind(None::<String>)
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        if let Some(key) = &plan.key {
            use sqlx::Row;
            keys.insert(
                plan.id.clone(),
                rows.iter().map(|r| r.get::<uuid::Uuid, _>(key.as_str())).collect(),
            );
        }
    }
    assert_eq!(keys["users"].len(), 10, "ten users deleted with the account");
    for apply in &def.apply {
        let plan = apply.plan.as_deref().unwrap();
        let n = sqlx::query(sqlx::AssertSqlSafe(apply.sql.clone()))
            .bind(&keys[plan])
            .fetch_all(&mut *tx)
            .await
            .unwrap()
            .len();
        assert_eq!(n, keys[plan].len());
    }
    for verify in &def.verify {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(verify.sql.clone()));
        for p in &verify.params {
            q = q.bind(&keys[p.trim_start_matches("plan.")]);
        }
        q.fetch_all(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    started.elapsed()
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn report(what: &str, v: &[Duration]) {
    let (min, max) = (v.iter().min().unwrap(), v.iter().max().unwrap());
    println!(
        "{what}: median {:.0} ms (min {:.0}, max {:.0}) over {} rounds",
        ms(median(v)),
        ms(*min),
        ms(*max),
        v.len()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
