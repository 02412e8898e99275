//! What the database itself does when an action writes its planned rows:
//! foreign keys that carry a DELETE on to other tables (deleting their rows
//! or setting their references to NULL), and triggers that fire. The engine
//! holds every statement to the approved keys, but a cascade or a trigger
//! changes rows no statement names, so the approver is shown them, with the
//! rows each cascade reaches counted for the planned keys.
//!
//! Read from `pg_constraint` and `pg_trigger` when the request is made, in
//! its read-only transaction. The counts are for that moment and are not
//! part of the plan hash: a session that gains a refresh token between
//! request and apply must not make revoking it impossible.

use std::collections::BTreeSet;

use sqlx::{PgConnection, Row};

use super::plan::Plan;
use crate::catalog::args::Bound;
use crate::catalog::schema::CommandFile;
use crate::catalog::sql_guard::{ApplyShape, Write, apply_shape, written};
use crate::slack::text::visible;
use crate::targets::exact::query_exact;

/// How far a chain of cascades is followed (sessions → refresh tokens → …).
const MAX_DEPTH: usize = 4;

/// A keyed statement of the action: its SQL, the plan step whose keys it
/// is bound to, and its parameters.
struct Keyed<'a> {
    sql: &'a str,
    plan: &'a str,
    params: &'a [String],
    /// When it runs, if not with the action ("On day 30, ").
    when: String,
}

/// One line per statement that fires triggers or cascades.
pub async fn of(conn: &mut PgConnection, def: &CommandFile, plan: &Plan, timeout_ms: u64) -> Vec<String> {
    let mut statements: Vec<Keyed> = def
        .apply
        .iter()
        .filter_map(|a| {
            Some(Keyed {
                sql: &a.sql,
                plan: a.plan.as_deref()?,
                params: &a.params,
                when: String::new(),
            })
        })
        .collect();
    if let Some(f) = &def.followup {
        statements.push(Keyed {
            sql: &f.sql,
            plan: &f.plan,
            params: &f.params,
            when: format!("On day {}, ", f.after_days),
        });
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for s in statements {
        let Some((write, table)) = written(s.sql) else { continue };
        if seen.insert((write.as_str(), table.clone())) {
            out.extend(triggers(conn, &table, write).await);
        }
        if write == Write::Delete
            && let Some(line) = cascades(conn, &s, &table, plan, timeout_ms).await
        {
            out.push(line);
        }
    }
    out
}

/// "UPDATE on auth.users fires triggers: a, b", or nothing.
async fn triggers(conn: &mut PgConnection, table: &str, write: Write) -> Option<String> {
    // tgtype bits: 4 INSERT, 8 DELETE, 16 UPDATE.
    let bit: i32 = match write {
        Write::Insert => 4,
        Write::Delete => 8,
        Write::Update => 16,
    };
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT tgname::text FROM pg_trigger
         WHERE tgrelid = to_regclass($1) AND NOT tgisinternal AND tgenabled <> 'D' AND (tgtype::int & $2) <> 0
         ORDER BY 1",
    )
    .bind(table)
    .bind(bit)
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    (!names.is_empty()).then(|| {
        format!(
            "{} on {} also runs its triggers: {}",
            write.as_str(),
            visible(table),
            visible(&names.join(", "))
        )
    })
}

/// "Deleting 2 rows of auth.sessions also deletes, by foreign key: …".
async fn cascades(conn: &mut PgConnection, s: &Keyed<'_>, table: &str, plan: &Plan, timeout_ms: u64) -> Option<String> {
    let keys = plan.table(s.plan)?.keys();
    if keys.is_empty() {
        return None;
    }
    let n = s.params.iter().position(|p| *p == format!("plan.{}", s.plan))? + 1;
    let column = match apply_shape(s.sql) {
        Ok(ApplyShape::Filtered { any_filters, .. }) => any_filters.into_iter().find(|(_, k)| *k == n)?.0,
        _ => return None,
    };
    // The table and column come from the catalog file `check` parsed.
    let root = format!("SELECT * FROM {table} WHERE {column}::text = ANY($1)");
    let mut reached = Vec::new();
    walk(conn, table, &root, &keys, 1, timeout_ms, &mut reached).await;
    if reached.is_empty() {
        return None;
    }
    let deleting = if s.when.is_empty() { "Deleting" } else { "deleting" };
    Some(format!(
        "{}{deleting} {} row{} of {} also, by foreign key: {}",
        s.when,
        keys.len(),
        if keys.len() == 1 { "" } else { "s" },
        visible(table),
        reached.join("; ")
    ))
}

/// Follow the foreign keys that reference `parent` with ON DELETE
/// CASCADE, SET NULL or SET DEFAULT; count the rows each reaches.
async fn walk(
    conn: &mut PgConnection,
    parent: &str,
    parent_rows: &str,
    keys: &[String],
    depth: usize,
    timeout_ms: u64,
    reached: &mut Vec<String>,
) {
    let children = sqlx::query(
        "SELECT format('%I.%I', n.nspname, t.relname) AS child, c.confdeltype::text AS action,
                (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)
                   FROM unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum) AS child_cols,
                (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)
                   FROM unnest(c.confkey) WITH ORDINALITY k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum) AS parent_cols
         FROM pg_constraint c
         JOIN pg_class t ON t.oid = c.conrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE c.contype = 'f' AND c.confrelid = to_regclass($1) AND c.confdeltype IN ('c', 'n', 'd')
         ORDER BY 1, 3",
    )
    .bind(parent)
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    for c in children {
        let (child, action): (String, String) = (c.get("child"), c.get("action"));
        let (child_cols, parent_cols): (String, String) = (c.get("child_cols"), c.get("parent_cols"));
        let rows =
            format!("SELECT * FROM {child} WHERE ({child_cols}) IN (SELECT {parent_cols} FROM ({parent_rows}) p)");
        // Tables the planned rows do not reach are left out of the line.
        if let Some(count) = count(conn, &rows, keys, timeout_ms).await {
            let verb = if action == "c" {
                "deletes"
            } else {
                "clears the reference in"
            };
            reached.push(format!("{verb} {count} of {}", visible(&child)));
        }
        // A self-reference is followed once; SET NULL stops the chain.
        if action == "c" && depth < MAX_DEPTH && child != parent {
            Box::pin(walk(conn, &child, &rows, keys, depth + 1, timeout_ms, reached)).await;
        }
    }
}

/// "2 rows", `None` for none; counted in a savepoint, so a count that
/// times out does not abort the request's transaction for the others.
async fn count(conn: &mut PgConnection, rows: &str, keys: &[String], timeout_ms: u64) -> Option<String> {
    let sql = format!("SELECT count(*)::text AS n FROM ({rows}) x");
    if sqlx::raw_sql("SAVEPOINT rb_count").execute(&mut *conn).await.is_err() {
        return Some("an uncounted number of rows".into());
    }
    let counted = query_exact(conn, &sql, &[Bound::TextList(keys.to_vec())], timeout_ms, 1).await;
    let undo = if counted.is_ok() {
        "RELEASE SAVEPOINT rb_count"
    } else {
        "ROLLBACK TO SAVEPOINT rb_count"
    };
    let _ = sqlx::raw_sql(undo).execute(&mut *conn).await;
    match counted {
        Ok(t) => {
            let n = t
                .rows
                .first()
                .and_then(|r| r.first().cloned().flatten())
                .unwrap_or_default();
            (n != "0").then(|| format!("{n} row{}", if n == "1" { "" } else { "s" }))
        }
        Err(e) => Some(format!("an uncounted number of rows ({e})")),
    }
}
