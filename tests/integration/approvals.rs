//! Escalation-gated actions: plan → approve in Slack → apply exactly once →
//! verify, against the Supabase-shaped fixture, with every refusal path.

use std::time::Duration;

use runbook_bot::clock::Clock;
use sqlx::Connection;

use crate::support::*;

async fn target_scalar(db: &TargetDb, sql: &'static str) -> String {
    let mut c = db.connect().await;
    let v: String = sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap();
    c.close().await.unwrap();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_flag_shows_the_plan_applies_once_and_verifies() {
    let db = TargetDb::new(true).await;
    let t = TestApp::spawn_with_target(Backend::Sqlite, &db).await;
    t.command(L2, "p1 New tenant flow broken").await;
    let reply = t.slash(L2, "/rollback", "flag new-tenant-flow,fast-login").await;
    assert!(
        reply.contains(
            "Approval #1 requested: `/rollback flag new-tenant-flow,fast-login` on *production* touches 1 rows"
        ),
        "{reply}"
    );
    // The card, threaded under the incident, shows exactly the rows that will change.
    let calls = t
        .slack
        .wait_for(10, "the card", |c| {
            c.iter().any(|c| c.ok && c.body.to_string().contains("Approval #1"))
        })
        .await;
    let card = calls
        .iter()
        .find(|c| c.body.to_string().contains("Approval #1"))
        .unwrap();
    let root_ts = t.slack.ok_calls("chat.postMessage")[0].ts.clone().unwrap();
    assert_eq!(card.body["thread_ts"], root_ts.as_str());
    let blocks = card.body["blocks"].to_string();
    assert!(
        blocks.contains("new-tenant-flow") && !blocks.contains("fast-login  "),
        "{blocks}"
    );
    assert!(blocks.contains("approval_approve") && blocks.contains("approval_deny") && blocks.contains("confirm"));

    assert_eq!(
        click_reply(&t, L3, "approval_approve", 1).await,
        "Approved #1; applying it now."
    );
    wait_state(&t, 1, "applied").await;
    assert_eq!(
        target_scalar(
            &db,
            "SELECT enabled::text FROM public.feature_flags WHERE name = 'new-tenant-flow'"
        )
        .await,
        "false"
    );
    assert_eq!(
        target_scalar(
            &db,
            "SELECT count(*)::text FROM public.audit_logs WHERE action LIKE '/rollback flag%'"
        )
        .await,
        "1"
    );
    t.drained(10).await;
    let updates = t.slack.ok_calls("chat.update");
    assert!(
        updates
            .last()
            .unwrap()
            .body
            .to_string()
            .contains("was applied and verified")
    );
    let result = t.slack.ok_calls("chat.postMessage").last().unwrap().body.to_string();
    assert!(
        result.contains("1 rows changed; verified: every named flag is off"),
        "{result}"
    );
    assert!(result.contains("turn the flags back on"), "undo hint: {result}");
    assert_eq!(
        audit_kinds(&t, 1).await,
        ["action_requested", "approval_vote", "action_applied"]
    );
    let timeline = t.command(L1, "timeline").await;
    assert!(
        timeline.contains("requested /rollback flag") && timeline.contains("→ applied"),
        "{timeline}"
    );
    t.finish().await;
    db.cleanup().await;
}

/// A target with the planted anomalies and an app on SQLite that uses it.
async fn planted() -> (TargetDb, TestApp) {
    let db = TargetDb::new(true).await;
    let t = TestApp::spawn_with_target(Backend::Sqlite, &db).await;
    (db, t)
}

async fn done(db: TargetDb, t: TestApp) {
    t.finish().await;
    db.cleanup().await;
}

const ANN: &str = "b0000000-0000-4000-8000-000000000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_account_restores_the_account_its_users_and_subscription() {
    let (db, t) = planted().await;
    let reply = request_and_apply(&t, "/restore-account", "ops@umbrella.test").await;
    assert!(reply.contains("touches 4 rows"), "{reply}");
    assert_eq!(
        target_scalar(&db, "SELECT count(*)::text FROM public.users WHERE account_uuid = 'a0000000-0000-4000-8000-0000000000d6' AND deleted_at IS NULL").await,
        "2"
    );
    assert_eq!(
        target_scalar(
            &db,
            "SELECT (deleted_at IS NULL)::text FROM public.accounts WHERE company_name = 'Umbrella'"
        )
        .await,
        "true"
    );
    assert_eq!(target_scalar(&db, "SELECT (deleted_at IS NULL)::text FROM public.subscriptions WHERE subscription_uuid = 'c0000000-0000-4000-8000-0000000000d6'").await, "true");
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_migration_runs_its_script_and_forgets_the_version() {
    let (db, t) = planted().await;
    request_and_apply(&t, "/rollback", "migration 20250129172156").await;
    assert_eq!(
        target_scalar(&db, "SELECT count(*)::text FROM supabase_migrations.schema_migrations").await,
        "0"
    );
    assert_eq!(
        target_scalar(
            &db,
            "SELECT count(*)::text FROM pg_proc WHERE proname = 'custom_access_token_hook'"
        )
        .await,
        "0"
    );
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ban_records_the_reason_and_unban_lifts_it() {
    let (db, t) = planted().await;
    request_and_apply(&t, "/user", &format!("ban {ANN} credential stuffing from one IP")).await;
    assert_eq!(
        target_scalar(
            &db,
            "SELECT banned_until::text FROM auth.users WHERE id = 'b0000000-0000-4000-8000-000000000001'"
        )
        .await,
        "infinity"
    );
    let reason = target_scalar(
        &db,
        "SELECT details->>'command' FROM public.audit_logs WHERE action LIKE '/user ban%'",
    )
    .await;
    assert!(reason.ends_with("credential stuffing from one IP"), "{reason}");
    request_and_apply(&t, "/user", &format!("unban {ANN}")).await;
    assert_eq!(target_scalar(&db, "SELECT coalesce(banned_until::text, 'none') FROM auth.users WHERE id = 'b0000000-0000-4000-8000-000000000001'").await, "none");
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_admin_promotes_the_user() {
    let (db, t) = planted().await;
    request_and_apply(&t, "/user", "grant-admin b0000000-0000-4000-8000-000000000002").await;
    assert_eq!(
        target_scalar(
            &db,
            "SELECT role FROM public.users WHERE user_uuid = 'b0000000-0000-4000-8000-000000000002'"
        )
        .await,
        "admin"
    );
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_sessions_deletes_every_session_of_the_user() {
    let (db, t) = planted().await;
    let reply = request_and_apply(&t, "/user", &format!("revoke-sessions {ANN}")).await;
    assert!(reply.contains("touches 2 rows"), "{reply}");
    assert_eq!(
        target_scalar(&db, "SELECT count(*)::text FROM auth.sessions").await,
        "0"
    );
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gdpr_delete_backs_up_anonymizes_and_schedules_the_purge() {
    let (db, t) = planted().await;
    let reply = request_and_apply(&t, "/user", "delete b0000000-0000-4000-8000-000000000003").await;
    assert!(reply.contains("touches 2 rows"), "{reply}");
    assert_eq!(
        target_scalar(
            &db,
            "SELECT user_email FROM public.users WHERE user_uuid = 'b0000000-0000-4000-8000-000000000003'"
        )
        .await,
        "deleted-b0000000-0000-4000-8000-000000000003@anonymized.invalid"
    );
    assert_eq!(
        target_scalar(&db, "SELECT user_email FROM public.deleted_users_backup").await,
        "cy@globex.test"
    );
    assert_eq!(
        target_scalar(
            &db,
            "SELECT (purge_after::date - now()::date)::text FROM public.deleted_users_backup"
        )
        .await,
        "30"
    );
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_profiles_creates_the_missing_profile() {
    let (db, t) = planted().await;
    let reply = request_and_apply(&t, "/db", "repair-profiles").await;
    assert!(reply.contains("touches 1 rows"), "{reply}");
    assert_eq!(
        target_scalar(
            &db,
            "SELECT count(*)::text FROM public.profiles WHERE id = 'b0000000-0000-4000-8000-0000000000e1'"
        )
        .await,
        "1"
    );
    done(db, t).await;
}

/// A target and an app on PostgreSQL with one pending `/rollback flag` (#1).
async fn pending_flag_rollback() -> (TargetDb, TestApp) {
    let db = TargetDb::new(true).await;
    let t = TestApp::spawn_with_target(Backend::Postgres, &db).await;
    t.slash(L2, "/rollback", "flag new-tenant-flow").await;
    (db, t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_requester_and_lower_levels_cannot_approve() {
    let (db, t) = pending_flag_rollback().await;
    assert!(
        click_reply(&t, L2, "approval_approve", 1)
            .await
            .contains("You requested #1")
    );
    assert!(
        click_reply(&t, L2B, "approval_approve", 1)
            .await
            .contains("Only level l3 can approve #1; you have l2")
    );
    assert!(click_reply(&t, L1, "approval_approve", 1).await.contains("you have l1"));
    assert!(
        click_reply(&t, NOBODY, "approval_approve", 1)
            .await
            .contains("you have no role")
    );
    assert_eq!(request_state(&t, 1).await, "pending");
    assert_eq!(
        audit_kinds(&t, 1)
            .await
            .iter()
            .filter(|k| *k == "approval_refused")
            .count(),
        4
    );
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_request_cannot_be_approved_and_its_card_says_so() {
    let (db, t) = pending_flag_rollback().await;
    // Expiry: the worker marks it and updates the card; approving is refused.
    t.clock.advance(31 * 60_000);
    wait_state(&t, 1, "expired").await;
    assert!(
        click_reply(&t, L3, "approval_approve", 1)
            .await
            .contains("expired without approval")
    );
    t.slack
        .wait_for(10, "expired card", |c| {
            c.iter()
                .any(|c| c.method == "chat.update" && c.body.to_string().contains("expired without approval"))
        })
        .await;
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_is_final() {
    let (db, t) = pending_flag_rollback().await;
    assert_eq!(click_reply(&t, L3, "approval_deny", 1).await, "Denied #1.");
    assert!(click_reply(&t, L3, "approval_approve", 1).await.contains("was denied"));
    assert_eq!(request_state(&t, 1).await, "denied");
    assert_eq!(
        target_scalar(
            &db,
            "SELECT enabled::text FROM public.feature_flags WHERE name = 'new-tenant-flow'"
        )
        .await,
        "true"
    );
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_cannot_be_planned_are_refused_before_anything_is_stored() {
    let (db, t) = pending_flag_rollback().await;
    for (user, command, text, want) in [
        (L2, "/rollback", "flag no-such-flag", "the plan is empty"),
        (
            L2,
            "/rollback",
            "migration 20990101000000",
            "no rollback script for migration `20990101000000`",
        ),
        (L2, "/rollback", "flag 'x'", "comma-separated list of names"),
        (L1, "/rollback", "flag new-tenant-flow", "needs level l2; you have l1"),
        (L2, "/user", "ban not-a-uuid because", "is not a UUID"),
        (
            L2,
            "/user",
            "ban b0000000-0000-4000-8000-000000000001",
            "Missing argument `reason`",
        ),
        (L2, "/rollback", "deploy api", "No deploy hook is configured for `api`"),
    ] {
        let reply = t.slash(user, command, text).await;
        assert!(reply.contains(want), "{command} {text}: {reply}");
    }
    assert_eq!(t.scalar("SELECT COUNT(*) FROM approval_requests").await, 1);
    assert!(
        click_reply(&t, L3, "approval_approve", 99)
            .await
            .contains("There is no approval #99")
    );
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_beyond_the_blast_radius_is_refused() {
    let (db, t) = pending_flag_rollback().await;
    let many: Vec<String> = (0..25).map(|i| format!("f{i}")).collect();
    let mut c = db.connect().await;
    sqlx::query("INSERT INTO public.feature_flags (name, enabled) SELECT unnest($1::text[]), true")
        .bind(&many)
        .execute(&mut c)
        .await
        .unwrap();
    let r = t.slash(L2, "/rollback", &format!("flag {}", many.join(","))).await;
    assert!(
        r.contains("touches 25 rows, more than this action's limit of 20"),
        "{r}"
    );
    assert_eq!(t.scalar("SELECT COUNT(*) FROM approval_requests").await, 1);
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_drift_and_failed_verification_change_nothing() {
    let db = TargetDb::new(true).await;
    let t = TestApp::spawn_with_target(Backend::Sqlite, &db).await;
    // Drift: the data changes between request and approval.
    t.slash(L2, "/user", "grant-admin b0000000-0000-4000-8000-000000000002")
        .await;
    db.exec("UPDATE public.users SET role = 'billing' WHERE user_uuid = 'b0000000-0000-4000-8000-000000000002'")
        .await;
    click_reply(&t, L3, "approval_approve", 1).await;
    wait_state(&t, 1, "failed").await;
    let result: String = sqlx::query_scalar("SELECT result FROM approval_requests WHERE id = 1")
        .fetch_one(&t.state().store.pool)
        .await
        .unwrap();
    assert_eq!(result, "data changed since approval — request again");
    assert_eq!(
        target_scalar(
            &db,
            "SELECT role FROM public.users WHERE user_uuid = 'b0000000-0000-4000-8000-000000000002'"
        )
        .await,
        "billing"
    );

    // Verification fails (a trigger undoes the change): everything rolls back.
    db.exec(
        "CREATE FUNCTION keep_on() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.enabled := true; RETURN NEW; END $$;
         CREATE TRIGGER keep_on BEFORE UPDATE ON public.feature_flags FOR EACH ROW EXECUTE FUNCTION keep_on();",
    )
    .await;
    let before = target_scalar(
        &db,
        "SELECT updated_at::text FROM public.feature_flags WHERE name = 'new-tenant-flow'",
    )
    .await;
    t.slash(L2, "/rollback", "flag new-tenant-flow").await;
    click_reply(&t, L3, "approval_approve", 2).await;
    wait_state(&t, 2, "rolled_back").await;
    let result: String = sqlx::query_scalar("SELECT result FROM approval_requests WHERE id = 2")
        .fetch_one(&t.state().store.pool)
        .await
        .unwrap();
    assert!(
        result.contains("verification failed: every named flag is off"),
        "{result}"
    );
    let after = target_scalar(
        &db,
        "SELECT updated_at::text FROM public.feature_flags WHERE name = 'new-tenant-flow'",
    )
    .await;
    assert_eq!(before, after, "the UPDATE rolled back with the failed verification");
    assert_eq!(
        target_scalar(&db, "SELECT count(*)::text FROM public.audit_logs").await,
        "0",
        "the audit row rolled back too"
    );
    t.drained(10).await;
    let last = t.slack.ok_calls("chat.postMessage").last().unwrap().body.to_string();
    assert!(
        last.contains("was rolled back") && last.contains("verification failed"),
        "{last}"
    );
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_and_parallel_clicks_apply_once() {
    let db = TargetDb::new(true).await;
    let t = TestApp::spawn_configured(Backend::Postgres, |cfg| {
        db.attach(cfg);
        cfg.roles.subjects.push((
            runbook_bot::slack::ids::RoleSubject::parse("U0LEAD2").unwrap(),
            runbook_bot::config::Level::L3,
        ));
    })
    .await;
    t.slash(L2, "/db", "repair-profiles").await;
    // The same approver twice at once, and a second approver at the same time.
    let (a, b, c) = tokio::join!(
        t.click(L3, "approval_approve", "1"),
        t.click(L3, "approval_approve", "1"),
        t.click("U0LEAD2", "approval_approve", "1"),
    );
    assert!([a.status(), b.status(), c.status()].iter().all(|s| *s == 200));
    wait_state(&t, 1, "applied").await;
    t.drained(10).await;
    assert_eq!(
        audit_kinds(&t, 1)
            .await
            .iter()
            .filter(|k| *k == "action_applied")
            .count(),
        1
    );
    assert_eq!(
        target_scalar(&db, "SELECT count(*)::text FROM public.audit_logs").await,
        "1"
    );
    let replies: Vec<String> = t
        .slack
        .ok_calls("response_url")
        .iter()
        .map(|c| c.body["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        replies.iter().filter(|r| r.starts_with("Approved #1")).count(),
        1,
        "{replies:?}"
    );
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_state_store_apply_once() {
    let db = TargetDb::new(true).await;
    let a = TestApp::spawn_with_target(Backend::Postgres, &db).await;
    // A second instance on the same PostgreSQL state store and fake Slack.
    let b = runbook_bot::App::build_with_clock(a.config.clone(), a.clock.clone())
        .await
        .unwrap();
    a.slash(L2, "/db", "repair-profiles").await;
    let payload = block_actions(L3, CHANNEL, "approval_approve", "1", &a.slack.response_url("click"));
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let ts = a.now_secs();
    let sig = runbook_bot::slack::verify::sign(SECRET.as_bytes(), ts, body.as_bytes());
    let url_b = format!("http://{}/slack/interactions", b.addr);
    let to_b = a.post_with_slack_headers(
        &url_b,
        "application/x-www-form-urlencoded",
        Some(ts),
        Some(sig),
        body.clone(),
    );
    let to_a = a.post_signed(
        "/slack/interactions",
        "application/x-www-form-urlencoded",
        body.clone(),
        0,
    );
    let (ra, rb) = tokio::join!(to_a, to_b);
    assert_eq!(
        (ra.status(), rb.status()),
        (reqwest::StatusCode::OK, reqwest::StatusCode::OK)
    );
    wait_state(&a, 1, "applied").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        audit_kinds(&a, 1)
            .await
            .iter()
            .filter(|k| *k == "action_applied")
            .count(),
        1
    );
    assert_eq!(
        target_scalar(&db, "SELECT count(*)::text FROM public.audit_logs").await,
        "1"
    );
    b.shutdown().await;
    a.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_applying_is_reported_as_interrupted_not_reapplied() {
    let db = TargetDb::new(true).await;
    let mut t = TestApp::spawn_with_target(Backend::Sqlite, &db).await;
    t.command(L2, "p1 Profiles missing").await;
    t.slash(L2, "/db", "repair-profiles").await;
    // The instance dies right after claiming the approved request.
    sqlx::query("UPDATE approval_requests SET state = 'applying', decided_by = $1, applying_at = $2 WHERE id = 1")
        .bind(L3)
        .bind(t.clock.now_ms())
        .execute(&t.state().store.pool)
        .await
        .unwrap();
    t.restart().await;
    t.clock.advance(11 * 60_000);
    wait_state(&t, 1, "interrupted").await;
    t.drained(10).await;
    let last = t.slack.ok_calls("chat.postMessage").last().unwrap().body.to_string();
    assert!(last.contains("was interrupted while applying"), "{last}");
    assert_eq!(
        target_scalar(&db, "SELECT count(*)::text FROM public.profiles").await,
        "4",
        "nothing applied"
    );
    assert!(t.command(L1, "timeline").await.contains("interrupted while applying"));
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rollback_calls_the_hook_and_reports_its_failure() {
    use axum::http::HeaderMap;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen2 = seen.clone();
    let provider = axum::Router::new()
        .route(
            "/hooks/api",
            axum::routing::post(move |h: HeaderMap, body: String| {
                let seen = seen2.clone();
                async move {
                    seen.lock().unwrap().push(format!(
                        "{} {body}",
                        h.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("")
                    ));
                    "rolled back to v41"
                }
            }),
        )
        .route(
            "/hooks/web",
            axum::routing::post(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "release v12 not found") }),
        )
        .route(
            "/hooks/SECRET-PATH/big",
            axum::routing::post(|| async { "x".repeat(8 * 1024 * 1024) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, provider).await.unwrap() });

    let db = TargetDb::new(false).await;
    let t = TestApp::spawn_configured(Backend::Sqlite, |cfg| {
        db.attach(cfg);
        for svc in ["api", "web", "SECRET-PATH/big"] {
            cfg.deploy_hooks.insert(
                svc.rsplit('/').next().unwrap().into(),
                runbook_bot::config::DeployHook {
                    url: format!("{base}/hooks/{svc}"),
                    method: "POST".into(),
                    token: Some(secrecy::SecretString::from("deploy-token".to_string())),
                },
            );
        }
    })
    .await;
    let reply = request_and_apply(&t, "/rollback", "deploy api").await;
    assert!(reply.contains("touches 1 rows"));
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].starts_with("Bearer deploy-token {"), "{calls:?}");
    assert!(calls[0].contains("\"service\":\"api\""));

    t.slash(L2, "/rollback", "deploy web").await;
    click_reply(&t, L3, "approval_approve", 2).await;
    wait_state(&t, 2, "failed").await;
    t.drained(10).await;
    let last = t.slack.ok_calls("chat.postMessage").last().unwrap().body.to_string();
    assert!(
        last.contains("deploy hook for `web` answered 500: release v12 not found"),
        "{last}"
    );
    assert!(!last.contains("deploy-token"));

    // A hook whose path holds a secret is shown as scheme and host only, and
    // an 8 MiB answer is read no further than a few KiB.
    let reply = request_and_apply(&t, "/rollback", "deploy big").await;
    assert!(reply.contains("touches 1 rows"), "{reply}");
    t.drained(10).await;
    let posted: String = t
        .slack
        .ok_calls("chat.postMessage")
        .iter()
        .chain(t.slack.ok_calls("chat.update").iter())
        .map(|c| c.body.to_string())
        .collect();
    assert!(posted.contains(&base), "the endpoint is shown: {posted}");
    assert!(!posted.contains("SECRET-PATH"), "never the path");
    let result: String = sqlx::query_scalar("SELECT result FROM approval_requests WHERE id = 3")
        .fetch_one(&t.state().store.pool)
        .await
        .unwrap();
    assert!(
        result.starts_with("deploy hook for `big` answered 200: xxx"),
        "{result}"
    );
    assert!(result.len() < 400, "{} bytes", result.len());
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_prints_the_plan_and_only_creates_a_pending_approval() {
    let db = TargetDb::new(true).await;
    let t = TestApp::spawn_with_target(Backend::Sqlite, &db).await;
    let origin = runbook_bot::dispatch::Origin {
        user: runbook_bot::slack::ids::UserId::parse(L2).unwrap(),
        channel: runbook_bot::slack::ids::ChannelId::parse(CHANNEL).unwrap(),
        response_url: None,
        via: runbook_bot::dispatch::Via::Terminal {
            os_user: "ops-alice".into(),
        },
    };
    let state = t.app.as_ref().unwrap().state.clone();
    let reply = runbook_bot::dispatch::dispatch(
        &state,
        &origin,
        "/restore-account",
        "a0000000-0000-4000-8000-0000000000d6",
    )
    .await;
    assert!(reply.text.contains("Approval #1 requested"), "{}", reply.text);
    assert!(
        reply.text.contains("alice@umbrella.test") && reply.text.contains("carl@umbrella.test"),
        "{}",
        reply.text
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(request_state(&t, 1).await, "pending");
    assert_eq!(
        target_scalar(
            &db,
            "SELECT (deleted_at IS NULL)::text FROM public.accounts WHERE company_name = 'Umbrella'"
        )
        .await,
        "false"
    );
    let via: String =
        sqlx::query_scalar("SELECT via FROM audit_events WHERE request_id = 1 AND kind = 'action_requested'")
            .fetch_one(&t.state().store.pool)
            .await
            .unwrap();
    assert_eq!(
        via, "terminal (os user ops-alice)",
        "exec is audited with who sat at the terminal"
    );
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_approvals_clicked_at_once_both_count() {
    let dir = tempfile::tempdir().unwrap();
    let flag = std::fs::read_to_string("commands/rollback/flag.toml").unwrap();
    std::fs::write(
        dir.path().join("flag.toml"),
        format!("{flag}\n[approval]\napprovals = 2\n"),
    )
    .unwrap();
    let db = TargetDb::new(true).await;
    let t = TestApp::spawn_configured(Backend::Postgres, |cfg| {
        cfg.commands_dir = dir.path().to_path_buf();
        db.attach(cfg);
        cfg.roles.subjects.push((
            runbook_bot::slack::ids::RoleSubject::parse("U0LEAD2").unwrap(),
            runbook_bot::config::Level::L3,
        ));
    })
    .await;
    assert!(
        t.slash(L2, "/rollback", "flag new-tenant-flow")
            .await
            .contains("needs 2 approvals")
    );
    let (a, b) = tokio::join!(
        t.click(L3, "approval_approve", "1"),
        t.click("U0LEAD2", "approval_approve", "1")
    );
    assert_eq!(
        (a.status(), b.status()),
        (reqwest::StatusCode::OK, reqwest::StatusCode::OK)
    );
    wait_state(&t, 1, "applied").await;
    assert_eq!(
        audit_kinds(&t, 1)
            .await
            .iter()
            .filter(|k| *k == "approval_vote")
            .count(),
        2
    );
    t.finish().await;
    db.cleanup().await;
}
