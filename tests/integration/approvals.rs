//! Escalation-gated actions: plan → approve in Slack → apply exactly once →
//! verify, each against the schema its runbook describes (our fixture of a
//! hosted Supabase project, the bot as the non-superuser project owner),
//! with every refusal path.

use std::time::Duration;

use runbook_bot::clock::Clock;

use crate::support::*;

async fn target_scalar(db: &SupabaseDb, sql: &'static str) -> String {
    db.scalar(sql).await
}

async fn app_on(db: &SupabaseDb, backend: Backend) -> TestApp {
    TestApp::spawn_configured(backend, |cfg| db.attach(cfg)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_flag_shows_the_plan_applies_once_and_verifies() {
    let db = SupabaseDb::new(AppSchema::Hotel).await;
    let t = app_on(&db, Backend::Sqlite).await;
    t.command(L2, "p1 New tenant flow broken").await;
    let reply = t.slash(L2, "/rollback", "flag new-tenant-flow,housekeeping-v2").await;
    assert!(
        reply.contains(
            "Approval #1 requested: `/rollback flag new-tenant-flow,housekeeping-v2` on *production* touches 1 rows"
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
    assert!(blocks.contains("new-tenant-flow"), "{blocks}");
    assert!(
        blocks.contains("housekeeping-v2  already off"),
        "flags that will not change are shown as context: {blocks}"
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
            "SELECT is_enabled::text FROM public.feature_flags WHERE flag_name = 'new-tenant-flow'"
        )
        .await,
        "false"
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

async fn done(db: SupabaseDb, t: TestApp) {
    t.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_account_restores_only_what_was_deleted_with_the_account() {
    let db = SupabaseDb::b2b_planted().await;
    let t = app_on(&db, Backend::Sqlite).await;
    let reply = request_and_apply(&t, "/restore-account", "ops@umbrella.test").await;
    assert!(
        reply.contains("touches 4 rows"),
        "account, two users, one subscription: {reply}"
    );
    let calls = t.slack.calls();
    let card = calls
        .iter()
        .find(|c| c.body.to_string().contains("Left deleted"))
        .expect("the card lists what stays deleted");
    let blocks = card.body["blocks"].to_string();
    assert!(
        blocks.contains("erased-d8@anonymized.invalid") && blocks.contains("canceled"),
        "{blocks}"
    );
    assert_eq!(
        target_scalar(&db, "SELECT string_agg(user_email, ',' ORDER BY user_email) FROM public.users WHERE account_uuid = 'a0000000-0000-4000-8000-0000000000d6' AND deleted_at IS NULL").await,
        "alice@umbrella.test,carl@umbrella.test"
    );
    assert_eq!(
        target_scalar(&db, "SELECT (deleted_at IS NOT NULL)::text FROM public.users WHERE user_uuid = 'b0000000-0000-4000-8000-0000000000d8'").await,
        "true",
        "a user erased 100 days earlier stays deleted"
    );
    assert_eq!(
        target_scalar(&db, "SELECT string_agg(subscription_uuid::text || '=' || (deleted_at IS NULL)::text, ',' ORDER BY subscription_uuid) FROM public.subscriptions WHERE account_uuid = 'a0000000-0000-4000-8000-0000000000d6'").await,
        "c0000000-0000-4000-8000-0000000000d6=true,c0000000-0000-4000-8000-0000000000d7=false"
    );
    assert_eq!(
        target_scalar(&db, "SELECT (deleted_at IS NULL AND modified_at > now() - interval '1 minute')::text FROM public.accounts WHERE company_name = 'Umbrella'").await,
        "true",
        "restored and marked modified"
    );
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_back_the_hook_migration_disables_the_hook_instead_of_breaking_sign_in() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let t = app_on(&db, Backend::Sqlite).await;
    request_and_apply(&t, "/rollback", "migration 20250129172156").await;
    assert_eq!(
        target_scalar(
            &db,
            "SELECT count(*)::text FROM supabase_migrations.schema_migrations WHERE version = '20250129172156'"
        )
        .await,
        "0"
    );
    // Supabase Auth can still call it (sign-ins keep working while the hook is
    // enabled), and it no longer adds claims.
    db.as_superuser(
        "SET ROLE {{auth_admin}};
         CREATE TEMP TABLE hook_answer AS SELECT public.custom_access_token_hook(
           '{\"user_id\": \"b0000000-0000-4000-8000-000000000001\", \"claims\": {\"sub\": \"x\"}}'::jsonb) AS a;",
    )
    .await;
    assert_eq!(
        target_scalar(
            &db,
            "SELECT public.custom_access_token_hook('{\"user_id\": \"b0000000-0000-4000-8000-000000000001\", \"claims\": {\"sub\": \"x\"}}'::jsonb)::text"
        )
        .await,
        r#"{"claims": {"sub": "x"}, "user_id": "b0000000-0000-4000-8000-000000000001"}"#
    );
    assert_eq!(
        target_scalar(
            &db,
            "SELECT has_function_privilege('{{auth_admin}}', 'public.custom_access_token_hook(jsonb)', 'EXECUTE')::text"
        )
        .await,
        "true"
    );
    done(db, t).await;
}

const QUINN: &str = "b0000000-0000-4000-8000-000000000003";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ban_blocks_sign_in_ends_sessions_and_records_the_reason_and_unban_lifts_it() {
    let db = SupabaseDb::new(AppSchema::Ops).await;
    let t = app_on(&db, Backend::Sqlite).await;
    let reply = request_and_apply(&t, "/user", &format!("ban {QUINN} credential stuffing from one IP")).await;
    assert!(reply.contains("touches"), "{reply}");
    // A finite far-future ban, as Supabase's own admin ban: GoTrue cannot read 'infinity'.
    assert_eq!(
        target_scalar(&db, "SELECT (banned_until > now() + interval '99 years' AND banned_until < 'infinity')::text FROM auth.users WHERE id = 'b0000000-0000-4000-8000-000000000003'").await,
        "true"
    );
    assert_eq!(
        target_scalar(
            &db,
            "SELECT count(*)::text FROM auth.sessions WHERE user_id = 'b0000000-0000-4000-8000-000000000003'"
        )
        .await,
        "0"
    );
    assert_eq!(
        target_scalar(&db, "SELECT count(*)::text FROM auth.refresh_tokens WHERE user_id = 'b0000000-0000-4000-8000-000000000003' AND NOT coalesce(revoked, false)").await,
        "0"
    );
    assert_eq!(
        target_scalar(&db, "SELECT (banned_at IS NOT NULL)::text || ' ' || ban_reason FROM public.users WHERE id = 'b0000000-0000-4000-8000-000000000003'").await,
        "true credential stuffing from one IP"
    );
    assert_eq!(
        target_scalar(&db, "SELECT type || ' ' || reason FROM public.security_incidents WHERE user_id = 'b0000000-0000-4000-8000-000000000003' AND type = 'account_banned'").await,
        "account_banned credential stuffing from one IP"
    );
    let logged = target_scalar(
        &db,
        "SELECT details->>'command' FROM public.audit_logs WHERE action LIKE '/user ban%'",
    )
    .await;
    assert!(logged.ends_with("credential stuffing from one IP"), "{logged}");

    request_and_apply(&t, "/user", &format!("unban {QUINN}")).await;
    assert_eq!(
        target_scalar(&db, "SELECT coalesce(banned_until::text, 'none') || ' ' || coalesce(u.banned_at::text, 'none') FROM auth.users au JOIN public.users u ON u.id = au.id WHERE au.id = 'b0000000-0000-4000-8000-000000000003'").await,
        "none none"
    );
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_ban_becomes_permanent_and_ends_the_sessions() {
    let db = SupabaseDb::new(AppSchema::Ops).await;
    // Someone banned Quinn for a day from the dashboard.
    db.as_superuser("UPDATE auth.users SET banned_until = now() + interval '24 hours' WHERE id = 'b0000000-0000-4000-8000-000000000003'")
        .await;
    let t = app_on(&db, Backend::Sqlite).await;
    request_and_apply(&t, "/user", &format!("ban {QUINN} account takeover")).await;
    let card = with_card(&t, 1).await;
    assert!(card.contains("a temporary ban becomes permanent"), "{card}");
    assert_eq!(
        target_scalar(&db, "SELECT (banned_until > now() + interval '99 years')::text FROM auth.users WHERE id = 'b0000000-0000-4000-8000-000000000003'").await,
        "true"
    );
    assert_eq!(
        target_scalar(
            &db,
            "SELECT count(*)::text FROM auth.sessions WHERE user_id = 'b0000000-0000-4000-8000-000000000003'"
        )
        .await,
        "0"
    );
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_user_stays_banned_and_the_refusal_says_why() {
    let db = SupabaseDb::new(AppSchema::Ops).await;
    let t = app_on(&db, Backend::Sqlite).await;
    request_and_apply(&t, "/user", &format!("delete {QUINN}")).await;
    let reply = t.slash(L2, "/user", &format!("unban {QUINN}")).await;
    assert!(
        reply.contains("nothing to change") && reply.contains("Left banned: the user is deleted"),
        "{reply}"
    );
    assert_eq!(
        target_scalar(&db, "SELECT (banned_until > now() + interval '99 years')::text FROM auth.users WHERE id = 'b0000000-0000-4000-8000-000000000003'").await,
        "true"
    );
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_admin_promotes_a_member_and_never_demotes_an_owner() {
    let db = SupabaseDb::new(AppSchema::Ops).await;
    let t = app_on(&db, Backend::Sqlite).await;
    request_and_apply(&t, "/user", &format!("grant-admin {QUINN}")).await;
    assert_eq!(
        target_scalar(
            &db,
            "SELECT role FROM public.user_roles WHERE user_id = 'b0000000-0000-4000-8000-000000000003'"
        )
        .await,
        "admin"
    );
    let owner = t
        .slash(L2, "/user", "grant-admin b0000000-0000-4000-8000-000000000001")
        .await;
    assert!(owner.contains("the plan is empty"), "{owner}");
    assert_eq!(
        target_scalar(
            &db,
            "SELECT role FROM public.user_roles WHERE user_id = 'b0000000-0000-4000-8000-000000000001'"
        )
        .await,
        "owner"
    );
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_sessions_ends_every_session_and_refresh_token_of_the_user() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let t = app_on(&db, Backend::Sqlite).await;
    let ann = "b0000000-0000-4000-8000-000000000001";
    let reply = request_and_apply(&t, "/user", &format!("revoke-sessions {ann}")).await;
    assert!(
        reply.contains("touches 2 rows"),
        "one session and one live refresh token: {reply}"
    );
    // What the database does on its own is on the card: GoTrue's foreign
    // keys take the session's refresh tokens (revoked ones too) with it.
    let card = with_card(&t, 1).await;
    assert!(
        card.contains("Deleting 1 row of auth.sessions also, by foreign key:")
            && card.contains("of auth.refresh_tokens"),
        "{card}"
    );
    assert_eq!(
        target_scalar(
            &db,
            "SELECT count(*)::text FROM auth.sessions WHERE user_id = 'b0000000-0000-4000-8000-000000000001'"
        )
        .await,
        "0"
    );
    assert_eq!(
        target_scalar(&db, "SELECT count(*)::text FROM auth.refresh_tokens WHERE user_id = 'b0000000-0000-4000-8000-000000000001' AND NOT coalesce(revoked, false)").await,
        "0"
    );
    assert_eq!(
        target_scalar(&db, "SELECT count(*)::text FROM auth.sessions").await,
        "2",
        "other users keep theirs"
    );
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_profiles_names_each_profile_from_sign_up_data_else_the_email() {
    let db = SupabaseDb::new(AppSchema::Care).await;
    // Two sign-ups whose profiles were never created (the trigger failed).
    db.as_superuser(
        "INSERT INTO auth.users (instance_id, id, aud, role, email, raw_user_meta_data, created_at, updated_at) VALUES
           ('00000000-0000-0000-0000-000000000000', 'b0000000-0000-4000-8000-0000000000e1', 'authenticated', 'authenticated',
            'named@ghost.test', '{\"name\": \"Nia Named\"}', now(), now()),
           ('00000000-0000-0000-0000-000000000000', 'b0000000-0000-4000-8000-0000000000e2', 'authenticated', 'authenticated',
            'plain@ghost.test', '{}', now(), now());
         DELETE FROM public.profiles WHERE id IN ('b0000000-0000-4000-8000-0000000000e1', 'b0000000-0000-4000-8000-0000000000e2');",
    )
    .await;
    let t = app_on(&db, Backend::Sqlite).await;
    let reply = request_and_apply(&t, "/db", "repair-profiles").await;
    assert!(reply.contains("touches 2 rows"), "{reply}");
    assert_eq!(
        target_scalar(&db, "SELECT string_agg(name, ',' ORDER BY name) FROM public.profiles WHERE id IN ('b0000000-0000-4000-8000-0000000000e1', 'b0000000-0000-4000-8000-0000000000e2')").await,
        "Nia Named,plain@ghost.test"
    );
    done(db, t).await;
}

const OLIVIA: &str = "b0000000-0000-4000-8000-000000000001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gdpr_delete_blocks_sign_in_now_keeps_a_private_backup_and_hard_deletes_on_day_30() {
    let db = SupabaseDb::new(AppSchema::Ops).await;
    // Olivia's account was already soft-deleted in the application: she can
    // still ask to be erased.
    db.as_owner("UPDATE public.users SET deleted_at = now() - interval '3 days' WHERE id = 'b0000000-0000-4000-8000-000000000001'")
        .await;
    let t = app_on(&db, Backend::Postgres).await;
    t.command(L2, "p2 GDPR erasure request").await;
    let reply = request_and_apply(&t, "/user", &format!("delete {OLIVIA}")).await;
    assert!(reply.contains("touches"), "{reply}");
    // The plan is kept and shown: it names the person, not the data erased.
    let card = with_card(&t, 1).await;
    assert!(card.contains("ol…@emotionscare.test"), "{card}");
    assert!(
        card.contains(
            "On day 30, deleting 1 row of auth.users also, by foreign key: deletes 2 rows of auth.identities;"
        ) && card.contains("deletes 1 row of public.users"),
        "the card says what the hard delete takes with it: {card}"
    );
    assert!(
        !card.contains("olivia@emotionscare.test") && !card.contains("Olivia Martin"),
        "{card}"
    );
    // Sign-in is blocked for every provider, now: banned and soft-deleted,
    // with no email, phone, metadata, session or live refresh token left.
    assert_eq!(
        target_scalar(&db, "SELECT concat_ws(' ', email IS NULL, phone IS NULL, raw_user_meta_data = '{}'::jsonb, deleted_at IS NOT NULL, banned_until > now() + interval '99 years') FROM auth.users WHERE id = 'b0000000-0000-4000-8000-000000000001'").await,
        "t t t t t"
    );
    assert_eq!(
        target_scalar(&db, "SELECT count(*)::text || ' identities, ' || count(email)::text || ' with an email' FROM auth.identities WHERE user_id = 'b0000000-0000-4000-8000-000000000001'").await,
        "2 identities, 0 with an email",
        "the Google identity stays (the ban refuses it) but holds no personal data"
    );
    assert_eq!(
        target_scalar(&db, "SELECT ((SELECT count(*) FROM auth.sessions WHERE user_id = 'b0000000-0000-4000-8000-000000000001') + (SELECT count(*) FROM auth.refresh_tokens WHERE user_id = 'b0000000-0000-4000-8000-000000000001' AND NOT revoked))::text").await,
        "0"
    );
    assert_eq!(
        target_scalar(&db, "SELECT concat_ws(' ', coalesce(email, 'null'), name) FROM public.users WHERE id = 'b0000000-0000-4000-8000-000000000001'").await,
        "null Deleted User"
    );
    // The legal-hold backup keeps what was there, where the API roles cannot read it.
    assert_eq!(
        target_scalar(
            &db,
            "SELECT email || ' ' || auth_email FROM runbook_bot_legal_hold.deleted_users"
        )
        .await,
        "olivia@emotionscare.test olivia@emotionscare.test"
    );
    for role in ["{{anon}}", "{{authenticated}}", "{{service_role}}"] {
        let sql = format!(
            "SELECT (has_schema_privilege('{role}', 'runbook_bot_legal_hold', 'USAGE') OR has_table_privilege('{role}', 'runbook_bot_legal_hold.deleted_users', 'SELECT'))::text"
        );
        assert_eq!(db.scalar(&sql).await, "false", "{role} cannot read the backup");
    }
    // The hard delete is scheduled, listed, and runs on day 30.
    let listed = t.slash(L2, "/scheduled", "list").await;
    assert!(
        listed.contains("#1 Hard delete (GDPR, day 30)") && listed.contains("due "),
        "{listed}"
    );
    t.clock.advance(30 * 86_400_000 + 60_000);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while target_scalar(
        &db,
        "SELECT count(*)::text FROM auth.users WHERE id = 'b0000000-0000-4000-8000-000000000001'",
    )
    .await
        != "0"
    {
        assert!(std::time::Instant::now() < deadline, "the hard delete did not run");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        target_scalar(
            &db,
            "SELECT count(*)::text FROM public.users WHERE id = 'b0000000-0000-4000-8000-000000000001'"
        )
        .await,
        "0"
    );
    assert_eq!(
        target_scalar(&db, "SELECT count(*)::text FROM runbook_bot_legal_hold.deleted_users").await,
        "0",
        "the hard delete takes the legal-hold backup with it"
    );
    t.drained(10).await;
    let thread: String = t
        .slack
        .ok_calls("chat.postMessage")
        .iter()
        .map(|c| c.body.to_string())
        .collect();
    assert!(
        thread.contains(
            "Follow-up #1 of approval #1 (Hard delete (GDPR, day 30)): done for 1: b0000000-0000-4000-8000-000000000001"
        ),
        "{thread}"
    );
    assert!(t.slash(L2, "/scheduled", "list").await.contains("Nothing is scheduled"));
    done(db, t).await;
}

/// A target and an app on PostgreSQL with one pending `/rollback flag` (#1).
async fn pending_flag_rollback() -> (SupabaseDb, TestApp) {
    let db = SupabaseDb::new(AppSchema::Hotel).await;
    let t = app_on(&db, Backend::Postgres).await;
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
            "SELECT is_enabled::text FROM public.feature_flags WHERE flag_name = 'new-tenant-flow'"
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
    let mut c = db.owner().await;
    sqlx::query("INSERT INTO public.feature_flags (flag_name, is_enabled) SELECT unnest($1::text[]), true")
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
    let db = SupabaseDb::new(AppSchema::Ops).await;
    let t = app_on(&db, Backend::Sqlite).await;
    // Drift: the data changes between request and approval.
    t.slash(L2, "/user", &format!("grant-admin {QUINN}")).await;
    db.as_owner("UPDATE public.users SET email = 'quinn@new.test' WHERE id = 'b0000000-0000-4000-8000-000000000003'")
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
            "SELECT role FROM public.user_roles WHERE user_id = 'b0000000-0000-4000-8000-000000000003'"
        )
        .await,
        "member"
    );

    // Verification fails (a trigger undoes the change): everything rolls back.
    db.as_superuser(
        "CREATE FUNCTION public.keep_member() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.role := 'member'; RETURN NEW; END $$;
         CREATE TRIGGER keep_member BEFORE UPDATE ON public.user_roles FOR EACH ROW EXECUTE FUNCTION public.keep_member();",
    )
    .await;
    let before = target_scalar(
        &db,
        "SELECT xmin::text FROM public.user_roles WHERE user_id = 'b0000000-0000-4000-8000-000000000003'",
    )
    .await;
    t.slash(L2, "/user", &format!("grant-admin {QUINN}")).await;
    let card = with_card(&t, 2).await;
    assert!(
        card.contains("UPDATE on public.user_roles also runs its triggers: keep_member"),
        "{card}"
    );
    click_reply(&t, L3, "approval_approve", 2).await;
    wait_state(&t, 2, "rolled_back").await;
    let result: String = sqlx::query_scalar("SELECT result FROM approval_requests WHERE id = 2")
        .fetch_one(&t.state().store.pool)
        .await
        .unwrap();
    assert!(result.contains("verification failed: the user is an admin"), "{result}");
    let after = target_scalar(
        &db,
        "SELECT xmin::text FROM public.user_roles WHERE user_id = 'b0000000-0000-4000-8000-000000000003'",
    )
    .await;
    assert_eq!(before, after, "the UPDATE rolled back with the failed verification");
    assert_eq!(
        target_scalar(
            &db,
            "SELECT count(*)::text FROM public.audit_logs WHERE action LIKE '/user grant-admin%'"
        )
        .await,
        "0",
        "the audit row rolled back too"
    );
    t.drained(10).await;
    let last = t.slack.ok_calls("chat.postMessage").last().unwrap().body.to_string();
    assert!(
        last.contains("was rolled back") && last.contains("verification failed"),
        "{last}"
    );
    done(db, t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_and_parallel_clicks_apply_once() {
    let db = SupabaseDb::new(AppSchema::Ops).await;
    let t = TestApp::spawn_configured(Backend::Postgres, |cfg| {
        db.attach(cfg);
        cfg.roles.subjects.push((
            runbook_bot::slack::ids::RoleSubject::parse("U0LEAD2").unwrap(),
            runbook_bot::config::Level::L3,
        ));
    })
    .await;
    t.slash(L2, "/user", &format!("grant-admin {QUINN}")).await;
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
        target_scalar(
            &db,
            "SELECT count(*)::text FROM public.audit_logs WHERE action LIKE '/user grant-admin%'"
        )
        .await,
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
    let db = SupabaseDb::new(AppSchema::Ops).await;
    let a = app_on(&db, Backend::Postgres).await;
    // A second instance on the same PostgreSQL state store and fake Slack.
    let b = runbook_bot::App::build_with_clock(a.config.clone(), a.clock.clone())
        .await
        .unwrap();
    a.slash(L2, "/user", &format!("grant-admin {QUINN}")).await;
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
        target_scalar(
            &db,
            "SELECT count(*)::text FROM public.audit_logs WHERE action LIKE '/user grant-admin%'"
        )
        .await,
        "1"
    );
    b.shutdown().await;
    a.finish().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_applying_is_reported_as_interrupted_not_reapplied() {
    let db = SupabaseDb::new(AppSchema::Care).await;
    db.as_superuser(
        "INSERT INTO auth.users (instance_id, id, aud, role, email, created_at, updated_at) VALUES
           ('00000000-0000-0000-0000-000000000000', 'b0000000-0000-4000-8000-0000000000e1', 'authenticated', 'authenticated',
            'nobody@ghost.test', now(), now());
         DELETE FROM public.profiles WHERE id = 'b0000000-0000-4000-8000-0000000000e1';",
    )
    .await;
    let profiles = target_scalar(&db, "SELECT count(*)::text FROM public.profiles").await;
    let mut t = app_on(&db, Backend::Sqlite).await;
    t.command(L2, "p1 Profiles missing").await;
    t.slash(L2, "/db", "repair-profiles").await;
    // The instance dies right after claiming the approved request.
    sqlx::query("UPDATE approval_requests SET state = 'applying', decided_by = $1, applying_at = $2 WHERE id = 1")
        .bind(L3)
        .bind(t.clock.now_ms())
        .execute(&t.state().store.writer)
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
        profiles,
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

    let db = SupabaseDb::new(AppSchema::B2b).await;
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
    let db = SupabaseDb::b2b_planted().await;
    let t = app_on(&db, Backend::Sqlite).await;
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
    let db = SupabaseDb::new(AppSchema::Hotel).await;
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
