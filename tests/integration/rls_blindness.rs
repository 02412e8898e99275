//! Row-level security hides rows from a role that does not bypass it,
//! silently. On a Supabase-shaped target, the bot connected as the reader
//! (pg_monitor and pg_read_all_data, no BYPASSRLS) notices and says so;
//! connected as the owner (BYPASSRLS) everything is as usual.

use std::collections::BTreeSet;

use runbook_bot::catalog::relations::Relation;
use runbook_bot::targets::Targets;

use crate::support::*;

fn rel(schema: Option<&str>, name: &str) -> Relation {
    Relation::new(schema, name)
}

/// A fresh `Targets` (so nothing is cached) connecting as `role`.
fn target(db: &SupabaseDb, role: &str) -> Targets {
    Targets::from_config(&[("production".to_string(), db.target_as(role))].into()).unwrap()
}

async fn hidden(db: &SupabaseDb, role: &str, relations: &BTreeSet<Relation>) -> Vec<String> {
    let targets = target(db, role);
    let v = targets.get("production").unwrap().visibility(relations).await.unwrap();
    assert_eq!(v.role, role);
    v.hidden()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_does_not_see_past_rls_and_the_owner_does() {
    let db = SupabaseDb::new(AppSchema::B2b).await;
    let relations: BTreeSet<Relation> = [
        rel(Some("public"), "accounts"),
        // Unqualified: resolved on the role's search path.
        rel(None, "users"),
        rel(Some("auth"), "users"),
        rel(Some("pg_catalog"), "pg_stat_activity"),
        rel(Some("public"), "no_such_table"),
        rel(Some("public"), "subscriptions"),
    ]
    .into();
    let (reader, owner) = (db.roles.reader.clone(), db.roles.owner.clone());
    assert_eq!(
        hidden(&db, &reader, &relations).await,
        ["auth.users", "public.accounts", "public.subscriptions", "public.users"]
    );
    let targets = target(&db, &owner);
    let v = targets.get("production").unwrap().visibility(&relations).await.unwrap();
    assert!(v.bypassrls && !v.superuser && v.bypasses());
    assert!(v.hidden().is_empty());

    // A table's owner is exempt from its RLS, unless the table forces it.
    db.as_superuser("ALTER TABLE public.subscriptions OWNER TO {{reader}}")
        .await;
    assert_eq!(
        hidden(&db, &reader, &relations).await,
        ["auth.users", "public.accounts", "public.users"]
    );
    db.as_superuser("ALTER TABLE public.subscriptions FORCE ROW LEVEL SECURITY")
        .await;
    assert!(
        hidden(&db, &reader, &relations)
            .await
            .contains(&"public.subscriptions".to_string())
    );
    db.cleanup().await;
}
