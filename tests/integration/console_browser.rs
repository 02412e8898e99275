//! The incident console in a real browser: headless Chromium driven through
//! chromedriver. Sign in through the link from `/incident console`, read an
//! incident's timeline (the SVG chart and the table), open its approval,
//! download the postmortem; a used and an expired link are refused; an l1
//! user cannot see the audit detail. With `REGENERATE_SCREENSHOTS=1` the
//! SQLite run also writes the README's screenshots to docs/screenshots/.

use crate::both_backends;
use crate::support::console as c;
use crate::support::webdriver::Browser;
use crate::support::*;

fn save(backend: Backend, name: &str, png: &[u8]) {
    assert!(png.starts_with(b"\x89PNG"), "{name} is not a PNG");
    if std::env::var("REGENERATE_SCREENSHOTS").as_deref() == Ok("1") && matches!(backend, Backend::Sqlite) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

/// An incident with a life: declared, acknowledged, a status, an approved
/// flag rollback, resolved.
async fn incident_with_an_approval(t: &TestApp) {
    let minutes = |m: i64| t.clock.advance(m * 60_000);
    t.command(L2, "p1 New tenant flow broken").await;
    minutes(4);
    t.command(L2, "ack #1").await;
    minutes(6);
    t.slash(L2, "/diagnose", "orphans").await;
    wait_for_event(t, "diagnostic").await;
    minutes(5);
    t.command(L2, "status #1 sign-ups fail for new tenants; rolling the flag back")
        .await;
    minutes(3);
    request_and_apply(t, "/rollback", "flag new-tenant-flow,housekeeping-v2").await;
    minutes(12);
    t.command(L2, "resolve #1 the new tenant flow flag broke sign-ups")
        .await;
    t.command(L2, "p2 Slow search").await;
}

async fn wait_for_event(t: &TestApp, kind: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM incident_events WHERE kind = $1")
            .bind(kind)
            .fetch_one(&t.state().store.pool)
            .await
            .unwrap();
        if n > 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no {kind} event on the timeline");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn a_person_reviews_an_incident_in_the_browser(backend: Backend) {
    let db = SupabaseDb::new(AppSchema::Hotel).await;
    let t = TestApp::spawn_configured(backend, |cfg| {
        db.attach(cfg);
        // The browser's forms send the origin it opened the app at.
        c::enable_on_own_address(cfg);
    })
    .await;
    incident_with_an_approval(&t).await;
    let b = Browser::start().await;
    let login = format!("{}/console/login?token={}", t.addr, c::link(&t, L3).await);
    b.goto(&login).await;
    assert!(b.text().await.contains("U0LEAD"));
    b.click("#sign-in").await;
    b.wait_url("/console/incidents").await;
    let list = b.text().await;
    assert!(
        list.contains("New tenant flow broken") && list.contains("Slow search"),
        "{list}"
    );
    save(backend, "incidents", &b.screenshot().await);

    b.click("a[href='/console/incidents/1']").await;
    assert_eq!(b.find_all("svg.timeline").await.len(), 1);
    assert!(b.find_all("svg.timeline circle.mark").await.len() >= 6);
    assert!(b.find_all("table.timeline tbody tr").await.len() >= 6);
    let page = b.text().await;
    assert!(
        page.contains("rolling the flag back") && page.contains("action_applied"),
        "{page}"
    );
    assert!(
        !b.find_all("svg.timeline circle.mark.critical").await.is_empty(),
        "declared"
    );
    assert!(page.contains("/diagnose orphans"), "{page}");
    save(backend, "incident", &b.screenshot().await);

    b.click("a[href='/console/approvals/1']").await;
    let approval = b.text().await;
    assert!(
        approval.contains("U0LEAD at") && approval.contains("new-tenant-flow"),
        "{approval}"
    );
    let hash: String = sqlx::query_scalar("SELECT plan_hash FROM approval_requests WHERE id = 1")
        .fetch_one(&t.state().store.pool)
        .await
        .unwrap();
    assert!(approval.contains(&hash));
    save(backend, "approval", &b.screenshot().await);

    b.goto(&format!("{}/console/incidents/1", t.addr)).await;
    b.click("#postmortem-download").await;
    let md = b.downloaded("incident-1-postmortem.md").await;
    assert!(
        md.starts_with("# Postmortem draft — incident #1: New tenant flow broken"),
        "{md}"
    );
    for part in [
        "## Impact",
        "## Timeline",
        "rolling the flag back",
        "## Root cause",
        "## Actions",
    ] {
        assert!(md.contains(part), "{part}: {md}");
    }
    for (path, name) in [("/console/metrics", "metrics"), ("/console/catalog", "catalog")] {
        b.goto(&format!("{}{path}", t.addr)).await;
        save(backend, name, &b.screenshot().await);
    }

    // The link was used: opening it again is refused.
    b.goto(&login).await;
    assert!(b.text().await.contains("was already used"));
    // An l1 link that expired before it was opened is refused too.
    let expired = c::link(&t, L1).await;
    t.clock.advance(11 * 60_000);
    b.goto(&format!("{}/console/login?token={expired}", t.addr)).await;
    assert!(b.text().await.contains("has expired"));
    // Signed in as l1: the incident, but not the audit detail.
    b.goto(&format!("{}/console/login?token={}", t.addr, c::link(&t, L1).await))
        .await;
    b.click("#sign-in").await;
    b.wait_url("/console/incidents").await;
    assert!(b.text().await.contains("U0SUPPORT · l1"));
    b.goto(&format!("{}/console/incidents/1", t.addr)).await;
    assert!(b.find_all("svg.timeline").await.len() == 1);
    assert!(b.find_all("a[href='/console/approvals/1']").await.is_empty());
    b.goto(&format!("{}/console/approvals/1", t.addr)).await;
    let refused = b.text().await;
    assert!(
        refused.contains("needs level l3") && !refused.contains(&hash),
        "{refused}"
    );
    b.quit().await;
    t.finish().await;
    db.cleanup().await;
}

both_backends!(a_person_reviews_an_incident_in_the_browser);
