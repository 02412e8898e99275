//! The incident console over plain HTTP: sign-in through Slack, sessions,
//! levels, every refusal, escaping, the security headers, the postmortem
//! export and its post to the thread through the outbox. The same pages in
//! a real browser: `console_browser`.

use std::time::Duration;

use runbook_bot::clock::Clock;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::both_backends;
use crate::support::console::{self as c, PUBLIC_URL};
use crate::support::*;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

fn sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

async fn link_row(t: &TestApp) -> (String, Option<i64>) {
    let r = sqlx::query("SELECT token_hash, used_at FROM console_links")
        .fetch_one(&t.state().store.pool)
        .await
        .unwrap();
    (r.get("token_hash"), r.get("used_at"))
}

async fn sign_in_through_the_link_opens_one_session(backend: Backend) {
    let t = c::spawn(backend).await;
    let reply = t.command(L1, "console").await;
    assert!(reply.contains("expires in 10 minutes"), "{reply}");
    let token = c::token_in(&reply);
    assert_eq!(token.len(), 64);
    // Only the hash is stored, and opening the link uses nothing up.
    assert_eq!(link_row(&t).await, (sha256(&token), None));
    let shown = c::get(&t, None, &format!("/console/login?token={token}")).await;
    assert_eq!(shown.status(), 200);
    let html = shown.text().await.unwrap();
    assert!(html.contains("U0SUPPORT") && html.contains("name=\"token\""), "{html}");
    assert_eq!(link_row(&t).await.1, None);
    assert_eq!(c::count(&t, "console_sessions").await, 0);

    let resp = c::post_sign_in(&t, &token).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/console/incidents");
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/console", "Max-Age=43200"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    let cookie = c::session_cookie(&resp);
    let stored: String = sqlx::query_scalar("SELECT token_hash FROM console_sessions")
        .fetch_one(&t.state().store.pool)
        .await
        .unwrap();
    assert_eq!(stored, sha256(&cookie));
    assert!(link_row(&t).await.1.is_some());

    let page = c::get(&t, Some(&cookie), "/console/incidents").await;
    assert_eq!(page.status(), 200);
    let h = page.headers();
    assert_eq!(h["content-security-policy"], CSP);
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "same-origin");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(html.contains("U0SUPPORT · l1") && !html.contains("<script"), "{html}");

    // A used link: refused, from the page and the form, and no session.
    let again = c::post_sign_in(&t, &token).await;
    assert_eq!(again.status(), 410);
    assert!(again.headers().get("set-cookie").is_none());
    assert!(again.text().await.unwrap().contains("was already used"));
    assert_eq!(
        c::get(&t, None, &format!("/console/login?token={token}"))
            .await
            .status(),
        410
    );
    assert_eq!(c::count(&t, "console_sessions").await, 1);
    t.finish().await;
}

async fn an_expired_or_unknown_link_is_refused(backend: Backend) {
    let t = c::spawn(backend).await;
    let token = c::link(&t, L2).await;
    t.clock.advance(10 * 60_000 + 1_000);
    let page = c::get(&t, None, &format!("/console/login?token={token}")).await;
    assert_eq!(page.status(), 410);
    c::assert_secure_headers(&page);
    assert!(page.text().await.unwrap().contains("has expired"));
    let resp = c::post_sign_in(&t, &token).await;
    assert_eq!(resp.status(), 410);
    c::assert_secure_headers(&resp);
    assert!(resp.headers().get("set-cookie").is_none());
    for bad in [
        "",
        "abc",
        "'; DROP TABLE console_links; --",
        &"f".repeat(64),
        &token.to_uppercase(),
    ] {
        let resp = c::post_sign_in(&t, bad).await;
        assert_eq!(resp.status(), 403, "{bad}");
        c::assert_secure_headers(&resp);
        let q = serde_urlencoded::to_string([("token", bad)]).unwrap();
        let resp = c::get(&t, None, &format!("/console/login?{q}")).await;
        assert_eq!(resp.status(), 403, "{bad}");
        c::assert_secure_headers(&resp);
    }
    assert_eq!(c::count(&t, "console_sessions").await, 0);
    // A newer link replaces an unused one.
    let first = c::link(&t, L2).await;
    let second = c::link(&t, L2).await;
    assert_eq!(c::post_sign_in(&t, &first).await.status(), 403);
    assert_eq!(c::post_sign_in(&t, &second).await.status(), 303);
    t.finish().await;
}

/// A made-up, used or expired token is refused from the read pool: it
/// never waits for the writer (on SQLite one connection that every command
/// needs), so a flood of them delays nobody.
async fn a_refused_link_never_takes_the_writer(backend: Backend) {
    let t = c::spawn(backend).await;
    let used = c::link(&t, L1).await;
    assert_eq!(c::post_sign_in(&t, &used).await.status(), 303);
    let expired = c::link(&t, L2).await;
    t.clock.advance(10 * 60_000 + 1_000);
    let held = t.state().store.begin_for_person().await.unwrap();
    for (token, status) in [(&"f".repeat(64), 403), (&used, 410), (&expired, 410)] {
        let resp = tokio::time::timeout(Duration::from_secs(2), c::post_sign_in(&t, token))
            .await
            .expect("answered while a person's transaction holds the writer");
        assert_eq!(resp.status(), status);
    }
    drop(held);
    t.finish().await;
}

/// Every console POST must come from the console's own pages: a form on
/// another site can neither sign someone in with the attacker's link (login
/// CSRF) nor post with someone's session.
async fn a_post_from_another_site_is_refused(backend: Backend) {
    let t = c::spawn(backend).await;
    let token = c::link(&t, L2).await;
    let origin = c::origin(&t);
    let refused: [&[(&str, &str)]; 5] = [
        &[],
        &[("origin", "https://evil.example")],
        &[("origin", "null")],
        &[("origin", &origin), ("sec-fetch-site", "cross-site")],
        &[("sec-fetch-site", "same-site")],
    ];
    for headers in refused {
        let mut req = c::client()
            .post(format!("{}/console/login", t.addr))
            .form(&[("token", &token)]);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 403, "{headers:?}");
        c::assert_secure_headers(&resp);
        assert!(resp.headers().get("set-cookie").is_none());
        assert!(resp.text().await.unwrap().contains("console's own pages"));
    }
    assert_eq!(c::count(&t, "console_sessions").await, 0);
    assert_eq!(link_row(&t).await.1, None, "the link is still unused");
    // The same form from the console's page signs in.
    let resp = c::post_sign_in(&t, &token).await;
    assert_eq!(resp.status(), 303);
    let cookie = c::session_cookie(&resp);
    t.command(L2, "p1 Checkout errors").await;
    let csrf = c::csrf_in(&c::page(&t, &cookie, "/console/incidents/1").await);
    for (k, v) in [("origin", "https://evil.example"), ("sec-fetch-site", "cross-site")] {
        for path in ["/console/incidents/1/postmortem", "/console/logout"] {
            let resp = c::client()
                .post(format!("{}{path}", t.addr))
                .header("cookie", format!("rb_console={cookie}"))
                .header(k, v)
                .form(&[("csrf", &csrf)])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 403, "{path} {k}");
        }
    }
    assert_eq!(c::count(&t, "console_sessions").await, 1, "still signed in");
    let resp = c::post_form(&t, &cookie, "/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(c::count(&t, "console_sessions").await, 0);
    t.finish().await;
}

/// Two `/incident console` at once (two replicas): their transactions
/// overlap, and still one link is left, the later one.
async fn overlapping_link_requests_leave_one_link(backend: Backend) {
    let t = c::spawn(backend).await;
    let store = t.state().store.clone();
    let now = t.clock.now_ms();
    let mut first_tx = store.begin().await.unwrap();
    let first = runbook_bot::console::auth::issue_link(&mut first_tx, L2, now, 600_000)
        .await
        .unwrap();
    let second = tokio::spawn({
        let store = store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let token = runbook_bot::console::auth::issue_link(&mut tx, L2, now + 1, 600_000)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            token
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    first_tx.commit().await.unwrap();
    let second = second.await.unwrap();
    assert_eq!(c::count(&t, "console_links").await, 1);
    assert_eq!(c::post_sign_in(&t, &first).await.status(), 403, "replaced");
    assert_eq!(c::post_sign_in(&t, &second).await.status(), 303);
    t.finish().await;
}

async fn two_sign_ins_with_one_link_open_one_session(backend: Backend) {
    let t = c::spawn(backend).await;
    let token = c::link(&t, L1).await;
    let (a, b) = tokio::join!(c::post_sign_in(&t, &token), c::post_sign_in(&t, &token));
    let mut codes = [a.status().as_u16(), b.status().as_u16()];
    codes.sort();
    assert_eq!(codes, [303, 410]);
    assert_eq!(c::count(&t, "console_sessions").await, 1);
    t.finish().await;
}

/// A person holds at most five sessions; the one just opened is never the
/// one that ends, even when the others were opened in the same millisecond
/// (a fixed clock) and sort before it.
async fn the_session_cap_never_ends_the_new_session(backend: Backend) {
    let t = c::spawn(backend).await;
    let now = t.clock.now_ms();
    for n in 0..5 {
        sqlx::query(
            "INSERT INTO console_sessions (token_hash, user_id, csrf, created_at, expires_at)
             VALUES ($1, 'U0SUPPORT', 'x', $2, $3)",
        )
        .bind(format!("{n:064}"))
        .bind(now)
        .bind(now + 3_600_000)
        .execute(&t.state().store.writer)
        .await
        .unwrap();
    }
    for _ in 0..3 {
        let token = c::link(&t, L1).await;
        let opened = runbook_bot::console::auth::sign_in(&t.state().store, &token, now, 3_600_000)
            .await
            .unwrap()
            .unwrap();
        let kept: Vec<String> =
            sqlx::query_scalar("SELECT token_hash FROM console_sessions WHERE user_id = 'U0SUPPORT'")
                .fetch_all(&t.state().store.pool)
                .await
                .unwrap();
        assert_eq!(kept.len(), 5, "{kept:?}");
        assert!(kept.contains(&sha256(&opened.cookie)), "the new session was ended");
        c::page(&t, &opened.cookie, "/console/incidents").await;
    }
    t.finish().await;
}

async fn no_live_session_means_sign_in(backend: Backend) {
    let t = c::spawn(backend).await;
    let cookie = c::sign_in(&t, L1).await;
    for (cookie, why) in [
        (None, "missing"),
        (Some("forged"), "malformed"),
        (Some(&"0".repeat(64)[..]), "unknown"),
        (Some(&sha256(&cookie)[..]), "the stored hash is not the cookie"),
    ] {
        let resp = c::get(&t, cookie, "/console/incidents").await;
        assert_eq!(resp.status(), 401, "{why}");
        c::assert_secure_headers(&resp);
        let html = resp.text().await.unwrap();
        assert!(html.contains("/incident console"), "{html}");
    }
    assert_eq!(c::get(&t, Some(&cookie), "/console/metrics").await.status(), 200);
    t.clock.advance(12 * 3_600_000 + 1_000);
    assert_eq!(c::get(&t, Some(&cookie), "/console/metrics").await.status(), 401);
    // The janitor forgets expired sessions and links.
    c::link(&t, L2).await;
    t.clock.advance(11 * 60_000);
    let swept = runbook_bot::store::janitor::sweep(&t.state().store, &t.config.retention, t.clock.now_ms())
        .await
        .unwrap();
    assert!(swept.contains(&("console_sessions", 1)), "{swept:?}");
    assert!(swept.contains(&("console_links", 2)), "{swept:?}");
    assert_eq!(c::count(&t, "console_sessions").await, 0);
    assert_eq!(c::count(&t, "console_links").await, 0);
    t.finish().await;
}

async fn a_person_without_a_level_is_refused(backend: Backend) {
    let t = c::spawn(backend).await;
    let reply = t.command(NOBODY, "console").await;
    assert!(!reply.contains("token="), "{reply}");
    assert_eq!(c::count(&t, "console_links").await, 0);
    // A link issued while they had a level opens nothing once it is gone.
    let token = {
        let mut conn = t.state().store.writer.acquire().await.unwrap();
        runbook_bot::console::auth::issue_link(&mut conn, NOBODY, t.clock.now_ms(), 60_000)
            .await
            .unwrap()
    };
    let resp = c::post_sign_in(&t, &token).await;
    let cookie = c::session_cookie(&resp);
    assert_eq!(c::get(&t, Some(&cookie), "/console/incidents").await.status(), 403);
    t.finish().await;
}

async fn bad_filters_and_ids_are_refused(backend: Backend) {
    let t = c::spawn(backend).await;
    t.command(L2, "p1 Login failing").await;
    let cookie = c::sign_in(&t, L3).await;
    for q in [
        "severity=p9",
        "state=open",
        "from=yesterday",
        "to=2026-02-30",
        "from=2026-02-01&to=2026-01-01",
        "before=0",
        "before=1%20OR%201%3D1",
        "sort=title",
        "service=%00",
    ] {
        let resp = c::get(&t, Some(&cookie), &format!("/console/incidents?{q}")).await;
        assert_eq!(resp.status(), 400, "{q}");
        c::assert_secure_headers(&resp);
        assert!(resp.text().await.unwrap().contains("Bad request"), "{q}");
    }
    assert_eq!(
        c::get(&t, Some(&cookie), "/console/incidents/1?page=0").await.status(),
        400
    );
    for path in [
        "/console/approvals?page=x",
        "/console/approvals?page=201",
        "/console/approvals?q=x&page=1000000",
        "/console/approvals?page=99999999999999999999",
        "/console/incidents/1?page=10001",
    ] {
        let resp = c::get(&t, Some(&cookie), path).await;
        assert_eq!(resp.status(), 400, "{path}");
        c::assert_secure_headers(&resp);
    }
    c::page(&t, &cookie, "/console/approvals?page=200").await;
    for path in [
        "/console/incidents/abc",
        "/console/incidents/0",
        "/console/incidents/999",
        "/console/approvals/7",
        "/console/xyz",
        "/console/incidents/1/nothing",
        "/console/static/other.css",
    ] {
        let resp = c::get(&t, Some(&cookie), path).await;
        assert_eq!(resp.status(), 404, "{path}");
        c::assert_secure_headers(&resp);
    }
    // Also without a session.
    let resp = c::get(&t, None, "/console/xyz").await;
    assert_eq!(resp.status(), 404);
    c::assert_secure_headers(&resp);
    assert_eq!(
        c::get(&t, Some(&cookie), "/console/incidents/999/postmortem")
            .await
            .status(),
        404
    );
    // Good filters narrow the list.
    let html = c::page(&t, &cookie, "/console/incidents?severity=p1&state=declared").await;
    assert!(html.contains("Login failing"));
    let html = c::page(&t, &cookie, "/console/incidents?severity=p0").await;
    assert!(html.contains("No incidents match") && !html.contains("Login failing"));
    let html = c::page(&t, &cookie, "/console/incidents?from=2000-01-01&to=2000-01-02").await;
    assert!(html.contains("No incidents match"));
    t.finish().await;
}

async fn the_list_pages_by_keyset(backend: Backend) {
    let t = c::spawn(backend).await;
    for n in 1..=52 {
        sqlx::query(
            "INSERT INTO incidents (channel, title, severity, state, commander, declared_by, declared_at, updated_at)
             VALUES ('CINCIDENTS', $1, 'p3', 'resolved', 'U0LEAD', 'U0LEAD', $2, $2)",
        )
        .bind(format!("Seeded incident {n:02}"))
        .bind(t.clock.now_ms() - 3_600_000)
        .execute(&t.state().store.writer)
        .await
        .unwrap();
    }
    let cookie = c::sign_in(&t, L1).await;
    let first = c::page(&t, &cookie, "/console/incidents").await;
    assert!(first.contains("Seeded incident 52") && first.contains("Seeded incident 03"));
    assert!(!first.contains("Seeded incident 02"));
    assert!(first.contains("href=\"/console/incidents?before=3\""), "{first}");
    let second = c::page(&t, &cookie, "/console/incidents?before=3").await;
    assert!(second.contains("Seeded incident 02") && second.contains("Seeded incident 01"));
    assert!(!second.contains("Seeded incident 03") && !second.contains("Older"));
    t.finish().await;
}

async fn hostile_titles_are_escaped(backend: Backend) {
    let t = c::spawn(backend).await;
    // As Slack sends what a person typed: `<`, `>` and `&` as entities.
    t.command(
        L2,
        "p1 &lt;script&gt;alert(1)&lt;/script&gt; &amp; \"quotes\" &lt;img src=x onerror=alert(2)&gt;",
    )
    .await;
    t.command(
        L2,
        "status #1 &lt;b&gt;bold&lt;/b&gt; &lt;/table&gt; [x](javascript:alert(3))",
    )
    .await;
    let cookie = c::sign_in(&t, L3).await;
    for path in ["/console/incidents", "/console/incidents/1"] {
        let html = c::page(&t, &cookie, path).await;
        assert!(
            !html.contains("<script") && !html.contains("<img") && !html.contains("<b>"),
            "{path}: {html}"
        );
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;"),
            "{path}: {html}"
        );
    }
    // The Markdown file renders the text as typed, never as HTML.
    let md = c::get(&t, Some(&cookie), "/console/incidents/1/postmortem")
        .await
        .text()
        .await
        .unwrap();
    assert!(!md.replace("\\<", "").contains('<'), "every < is escaped: {md}");
    assert!(md.contains("\\<b\\>bold\\</b\\>"), "{md}");
    assert!(md.contains("\\<img src=x onerror=alert\\(2\\)\\>"), "{md}");
    assert!(md.contains("\\[x\\]\\(javascript:alert\\(3\\)\\)"), "{md}");
    t.finish().await;
}

async fn the_postmortem_downloads_and_posts_with_a_csrf_token(backend: Backend) {
    let t = c::spawn(backend).await;
    t.command(L2, "p1 Checkout errors").await;
    t.command(L2, "ack #1").await;
    t.command(L2, "status #1 rolled back the deploy").await;
    t.command(L2, "resolve #1 bad deploy").await;
    t.drained(10).await;
    let l2 = c::sign_in(&t, L2).await;
    let resp = c::get(&t, Some(&l2), "/console/incidents/1/postmortem").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-disposition"],
        "attachment; filename=\"incident-1-postmortem.md\""
    );
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/markdown")
    );
    let md = resp.text().await.unwrap();
    for part in [
        "# Postmortem draft — incident #1: Checkout errors",
        "## Impact",
        "## Timeline",
        "rolled back the deploy",
        "## Root cause",
        "## Actions",
        "bad deploy",
    ] {
        assert!(md.contains(part), "{part}: {md}");
    }
    let page = c::page(&t, &l2, "/console/incidents/1").await;
    let csrf = c::csrf_in(&page);
    let before = t.slack.ok_calls("chat.postMessage").len();
    for (form, why) in [(vec![], "missing"), (vec![("csrf", "wrong")], "wrong")] {
        let resp = c::post_form(&t, &l2, "/console/incidents/1/postmortem", &form).await;
        assert_eq!(resp.status(), 403, "{why}");
    }
    // The right token, but a level that may not post.
    let l1 = c::sign_in(&t, L1).await;
    let l1_csrf = c::csrf_in(&c::page(&t, &l1, "/console/incidents/1").await);
    let resp = c::post_form(&t, &l1, "/console/incidents/1/postmortem", &[("csrf", &l1_csrf)]).await;
    assert_eq!(resp.status(), 403);
    // Another session's token is not this session's.
    let resp = c::post_form(&t, &l2, "/console/incidents/1/postmortem", &[("csrf", &l1_csrf)]).await;
    assert_eq!(resp.status(), 403);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(t.slack.ok_calls("chat.postMessage").len(), before, "nothing posted");

    let resp = c::post_form(&t, &l2, "/console/incidents/1/postmortem", &[("csrf", &csrf)]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers()["location"], "/console/incidents/1?posted=1");
    let calls = t
        .slack
        .wait_for(10, "the postmortem in the thread", |c| {
            c.iter().any(|c| {
                c.ok && c.body["text"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("# Postmortem draft"))
            })
        })
        .await;
    let root_ts = t.slack.ok_calls("chat.postMessage")[0].ts.clone().unwrap();
    let post = calls
        .iter()
        .find(|c| {
            c.body["text"]
                .as_str()
                .is_some_and(|s| s.starts_with("# Postmortem draft"))
        })
        .unwrap();
    assert_eq!(post.body["thread_ts"], root_ts.as_str());
    assert!(post.body["text"].as_str().unwrap().contains("rolled back the deploy"));
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM incident_events WHERE incident_id = 1 ORDER BY id")
        .fetch_all(&t.state().store.pool)
        .await
        .unwrap();
    assert_eq!(kinds.last().map(String::as_str), Some("postmortem_posted"));
    assert!(
        c::page(&t, &l2, "/console/incidents/1?posted=1")
            .await
            .contains("queued for the incident")
    );
    t.finish().await;
}

async fn the_console_is_absent_unless_enabled(backend: Backend) {
    let t = TestApp::spawn_configured(backend, |cfg| {
        cfg.console.public_url = Some(PUBLIC_URL.into());
    })
    .await;
    let reply = t.command(L1, "console").await;
    assert!(reply.contains("not turned on"), "{reply}");
    for path in [
        "/console",
        "/console/incidents",
        "/console/login?token=x",
        "/console/static/app.css",
    ] {
        assert_eq!(c::get(&t, None, path).await.status(), 404, "{path}");
    }
    assert_eq!(c::count(&t, "console_links").await, 0);
    t.finish().await;
}

async fn levels_decide_what_is_shown(backend: Backend) {
    let t = c::spawn(backend).await;
    t.command(L2, "p2 Slow search").await;
    let l1 = c::sign_in(&t, L1).await;
    for path in ["/console/approvals", "/console/approvals/1", "/console/approvals?q=x"] {
        let resp = c::get(&t, Some(&l1), path).await;
        assert_eq!(resp.status(), 403, "{path}");
        c::assert_secure_headers(&resp);
        assert!(resp.text().await.unwrap().contains("needs level l3"));
    }
    let catalog = c::page(&t, &l1, "/console/catalog").await;
    assert!(
        catalog.contains("/diagnose orphans") && catalog.contains("l1"),
        "{catalog}"
    );
    assert!(
        !catalog.contains("<pre") && !catalog.contains("SELECT"),
        "no SQL for l1"
    );
    assert!(
        !c::page(&t, &l1, "/console/incidents/1")
            .await
            .contains("/console/approvals")
    );
    let l3 = c::sign_in(&t, L3).await;
    let catalog = c::page(&t, &l3, "/console/catalog").await;
    assert!(catalog.contains("<pre class=\"sql\">") && catalog.contains("SELECT"));
    assert!(
        c::page(&t, &l3, "/console/incidents")
            .await
            .contains("href=\"/console/approvals\"")
    );
    let metrics = c::page(&t, &l1, "/console/metrics").await;
    assert!(metrics.contains("<svg") && metrics.contains("Incidents declared per week"));
    let css = c::get(&t, None, "/console/static/app.css").await;
    assert_eq!(css.status(), 200);
    assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
    t.finish().await;
}

async fn the_audit_shows_the_approval_and_never_a_connection_url(backend: Backend) {
    let db = SupabaseDb::new(AppSchema::Hotel).await;
    let t = TestApp::spawn_configured(backend, |cfg| {
        db.attach(cfg);
        c::enable(cfg);
    })
    .await;
    t.command(L2, "p1 New tenant flow broken").await;
    request_and_apply(&t, "/rollback", "flag new-tenant-flow,housekeeping-v2").await;
    let l3 = c::sign_in(&t, L3).await;
    let list = c::page(&t, &l3, "/console/approvals").await;
    assert!(
        list.contains("href=\"/console/approvals/1\"") && list.contains("applied"),
        "{list}"
    );
    let hash: String = sqlx::query_scalar("SELECT plan_hash FROM approval_requests WHERE id = 1")
        .fetch_one(&t.state().store.pool)
        .await
        .unwrap();
    for q in ["U0LEAD", "new-tenant", &hash[..10], "UPDATE"] {
        let found = c::page(&t, &l3, &format!("/console/approvals?q={q}")).await;
        assert!(found.contains("href=\"/console/approvals/1\""), "search {q}");
    }
    let none = c::page(&t, &l3, "/console/approvals?q=nobody-like-this%25_").await;
    assert!(none.contains("No approval requests match"));
    let detail = c::page(&t, &l3, "/console/approvals/1").await;
    for part in [
        "U0ONCALL",
        "U0LEAD at",
        &hash,
        "new-tenant-flow",
        "Apply statement 1",
        "Verification",
        "action_applied",
    ] {
        assert!(detail.contains(part), "{part}: {detail}");
    }
    let incident = c::page(&t, &l3, "/console/incidents/1").await;
    assert!(incident.contains("href=\"/console/approvals/1\""));
    // The approvals' events: in full from the audit level, only what
    // happened below it (the page, its chart, the Markdown).
    let short = &hash[..8];
    let md = |cookie: String| {
        let t = &t;
        async move {
            let resp = c::get(t, Some(&cookie), "/console/incidents/1/postmortem").await;
            resp.text().await.unwrap()
        }
    };
    let l3_md = md(l3.clone()).await;
    for text in [&incident, &l3_md] {
        assert!(text.contains("new-tenant-flow") && text.contains(short), "{text}");
        assert!(!text.contains("details in the approvals audit"), "{text}");
    }
    let l1 = c::sign_in(&t, L1).await;
    let l1_page = c::page(&t, &l1, "/console/incidents/1").await;
    let l1_md = md(l1).await;
    assert!(l1_page.contains("details in the approvals audit (l3)"));
    for text in [&l1_page, &l1_md] {
        assert!(
            text.contains("Action requested — details in the approvals audit")
                && text.contains("Action applied — details in the approvals audit"),
            "{text}"
        );
        assert!(!text.contains(short) && !text.contains("rows"), "{text}");
    }
    let secret = &t.config.targets["production"];
    let url = secrecy::ExposeSecret::expose_secret(&secret.url).to_string();
    for path in [
        "/console/approvals/1",
        "/console/approvals",
        "/console/catalog",
        "/console/incidents/1",
    ] {
        let html = c::page(&t, &l3, path).await;
        assert!(
            !html.contains(&url) && !html.contains("postgres://"),
            "{path} shows a connection URL"
        );
        assert!(
            !html.contains("hooks.slack") && !html.contains("/response/"),
            "{path} shows a response URL"
        );
    }
    t.finish().await;
    db.cleanup().await;
}

/// A sign-in link is a secret: when `/incident console` is slow, its reply
/// waits in the outbox as a sensitive row, which keeps no copy of the link
/// once delivered.
async fn a_link_reply_that_waits_in_the_outbox_keeps_no_copy(backend: Backend) {
    let t = c::spawn(backend).await;
    // Hold what the command writes, so it outlives Slack's deadline.
    let blocker = t.hold_writes("console_links").await;
    let reply = t.command(L1, "console").await;
    assert!(reply.contains("Working on it"), "{reply}");
    blocker.rollback().await.unwrap();
    let calls = t
        .slack
        .wait_for(10, "the late sign-in link", |c| {
            c.iter().any(|c| c.method == "response_url" && c.ok)
        })
        .await;
    let late = calls.iter().find(|c| c.method == "response_url").unwrap();
    let text = late.body["text"].as_str().unwrap();
    let token = c::token_in(text);
    assert_eq!(link_row(&t).await.0, sha256(&token));
    t.drained(10).await;
    let rows = sqlx::query("SELECT payload, sensitive FROM outbox WHERE response_url IS NOT NULL")
        .fetch_all(&t.state().store.pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let payload: String = rows[0].get("payload");
    let sensitive: i64 = rows[0].get("sensitive");
    assert_eq!(sensitive, 1, "the link's reply is a sensitive row");
    assert!(!payload.contains(&token) && !payload.contains("token="), "{payload}");
    t.finish().await;
}

both_backends!(
    a_link_reply_that_waits_in_the_outbox_keeps_no_copy,
    sign_in_through_the_link_opens_one_session,
    an_expired_or_unknown_link_is_refused,
    a_refused_link_never_takes_the_writer,
    a_post_from_another_site_is_refused,
    the_session_cap_never_ends_the_new_session,
    overlapping_link_requests_leave_one_link,
    two_sign_ins_with_one_link_open_one_session,
    no_live_session_means_sign_in,
    a_person_without_a_level_is_refused,
    bad_filters_and_ids_are_refused,
    the_list_pages_by_keyset,
    hostile_titles_are_escaped,
    the_postmortem_downloads_and_posts_with_a_csrf_token,
    the_console_is_absent_unless_enabled,
    levels_decide_what_is_shown,
    the_audit_shows_the_approval_and_never_a_connection_url,
);
