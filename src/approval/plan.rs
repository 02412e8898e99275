//! An action's plan: the exact rows it will change, from the catalog's
//! `plan` queries, each row at full precision and identified by its step's
//! key column. The plan is computed when the action is requested (shown on
//! the approval card) and again inside the apply transaction; together with
//! the action's snapshot it is hashed, and a different hash means the data
//! or the action changed since approval.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use super::snapshot::Snapshot;
use crate::catalog::args::{self, Value};
use crate::catalog::schema::CommandFile;
use crate::targets::StepError;
use crate::targets::exact::query_exact;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanTable {
    /// The step's id: apply statements name it as `plan.<id>`.
    pub id: String,
    pub title: String,
    /// The column whose values are the approved keys.
    pub key: Option<String>,
    pub columns: Vec<String>,
    /// Every cell exactly as PostgreSQL rendered it; `None` is NULL.
    pub rows: Vec<Vec<Option<String>>>,
    /// Whether these rows count toward the blast radius (context rows do not).
    pub counts: bool,
}

impl PlanTable {
    fn key_index(&self) -> Option<usize> {
        let key = self.key.as_ref()?;
        self.columns.iter().position(|c| c == key)
    }

    /// The approved keys, in plan order.
    pub fn keys(&self) -> Vec<String> {
        let Some(i) = self.key_index() else {
            return Vec::new();
        };
        self.rows.iter().filter_map(|r| r[i].clone()).collect()
    }

    /// The approved row of one key.
    pub fn row_of(&self, key: &str) -> Option<&[Option<String>]> {
        let i = self.key_index()?;
        self.rows
            .iter()
            .find(|r| r[i].as_deref() == Some(key))
            .map(Vec::as_slice)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub tables: Vec<PlanTable>,
    /// Rows the action will change (the counted tables).
    pub touched: i64,
    /// What the database does on its own for those rows (cascades,
    /// triggers), as found at request time; shown, not hashed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub database: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Target(#[from] StepError),
    #[error("the plan touches {touched} rows, more than this action's limit of {max}; narrow it down")]
    TooLarge { touched: i64, max: i64 },
    /// Nothing to change; `why` is what the action's context steps (those
    /// with `counts = false`) found, e.g. the rows it leaves alone and why.
    #[error("the plan is empty: there is nothing to change{why}")]
    Empty { why: String },
    #[error("plan step `{step}` has no column `{key}` (its key)")]
    NoKeyColumn { step: String, key: String },
    #[error("plan step `{step}` has a row whose key `{key}` is NULL")]
    NullKey { step: String, key: String },
    #[error("plan step `{step}` lists key {value} twice: a key must name one row")]
    DuplicateKey { step: String, value: String },
}

impl Plan {
    /// The approved keys of each keyed step.
    pub fn keys(&self) -> BTreeMap<&str, Vec<String>> {
        self.tables
            .iter()
            .filter(|t| t.key.is_some())
            .map(|t| (t.id.as_str(), t.keys()))
            .collect()
    }

    pub fn table(&self, id: &str) -> Option<&PlanTable> {
        self.tables.iter().find(|t| t.id == id)
    }
}

/// SHA-256 over everything the approver approves: every planned row at full
/// precision and the action's whole definition (SQL, script text, hook).
pub fn request_hash(plan: &Plan, snapshot: &Snapshot) -> String {
    let rows = Plan {
        database: Vec::new(),
        ..plan.clone()
    };
    let mut h = Sha256::new();
    h.update(serde_json::to_string(&rows).unwrap_or_default().as_bytes());
    h.update([0]);
    h.update(snapshot.canonical().as_bytes());
    hex::encode(h.finalize())
}

pub fn short(hash: &str) -> &str {
    &hash[..12.min(hash.len())]
}

/// Make the text PostgreSQL renders deterministic across sessions, so a
/// plan computed at request time and again at apply time compares equal.
pub const SESSION_SETTINGS: &str = "SET LOCAL TimeZone = 'UTC'; SET LOCAL IntervalStyle = 'iso_8601'; \
     SET LOCAL extra_float_digits = 1; SET LOCAL DateStyle = 'ISO, YMD'";

/// Run the plan queries on `conn` (a read-only transaction at request time,
/// the apply transaction at apply time), with `SESSION_SETTINGS` applied.
pub async fn compute(
    conn: &mut PgConnection,
    def: &CommandFile,
    values: &BTreeMap<String, Value>,
    timeout_ms: u64,
) -> Result<Plan, PlanError> {
    let max = def.max_rows.unwrap_or(0);
    let mut plan = Plan {
        tables: Vec::new(),
        touched: 0,
        database: Vec::new(),
    };
    for p in &def.plan {
        let params: Vec<_> = p.params.iter().map(|n| args::bound(&def.args, values, n)).collect();
        // One row more than allowed is enough to know the plan is too large.
        let limit = u32::try_from(max + 1).unwrap_or(u32::MAX).max(1);
        let t = query_exact(conn, &p.sql, &params, timeout_ms, limit).await?;
        if p.counts {
            plan.touched += t.total;
        }
        let table = PlanTable {
            id: p.id.clone(),
            title: p.title.clone(),
            key: p.key.clone(),
            columns: t.columns,
            rows: t.rows,
            counts: p.counts,
        };
        check_keys(&table)?;
        plan.tables.push(table);
    }
    if plan.touched > max {
        return Err(PlanError::TooLarge {
            touched: plan.touched,
            max,
        });
    }
    if plan.touched == 0 {
        return Err(PlanError::Empty {
            why: context_of_empty(&plan),
        });
    }
    Ok(plan)
}

/// What the context steps of an empty plan show, in a few words: the first
/// rows of each, so "nothing to change" also says what was left and why.
fn context_of_empty(plan: &Plan) -> String {
    let mut out = String::new();
    for t in plan.tables.iter().filter(|t| !t.counts && !t.rows.is_empty()) {
        let rows: Vec<String> = t
            .rows
            .iter()
            .take(3)
            .map(|r| {
                let cells: Vec<String> = r.iter().map(|v| shown(v.as_deref().unwrap_or("NULL"))).collect();
                cells.join(" ")
            })
            .collect();
        let more = t.rows.len().saturating_sub(3);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        out.push_str(&format!(". {}: {}{more}", t.title, rows.join("; ")));
    }
    out
}

/// A database value in a refusal: written out, escaped for Slack, short.
fn shown(v: &str) -> String {
    use crate::slack::text::{escape, fit, visible};
    escape(&fit(visible(v), 80))
}

/// Every row of a keyed step has a key, and no key names two rows.
fn check_keys(t: &PlanTable) -> Result<(), PlanError> {
    let Some(key) = &t.key else { return Ok(()) };
    if t.rows.is_empty() {
        return Ok(());
    }
    let Some(i) = t.key_index() else {
        return Err(PlanError::NoKeyColumn {
            step: t.id.clone(),
            key: key.clone(),
        });
    };
    let mut seen = BTreeSet::new();
    for r in &t.rows {
        let Some(v) = &r[i] else {
            return Err(PlanError::NullKey {
                step: t.id.clone(),
                key: key.clone(),
            });
        };
        if !seen.insert(v) {
            return Err(PlanError::DuplicateKey {
                step: t.id.clone(),
                value: v.clone(),
            });
        }
    }
    Ok(())
}

/// The plan of a deploy-hook action: which hook will be called. The
/// endpoint is shown as scheme and host only; the hash covers all of it.
pub fn for_deploy(service: &str, method: &str, url: &str) -> Plan {
    Plan {
        tables: vec![PlanTable {
            id: "hook".into(),
            title: "Deploy hook that will be called".into(),
            key: Some("service".into()),
            columns: vec!["service".into(), "method".into(), "endpoint".into()],
            rows: vec![vec![
                Some(service.to_string()),
                Some(method.to_string()),
                Some(crate::slack::text::origin_url(url)),
            ]],
            counts: true,
        }],
        touched: 1,
        database: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[&str]) -> PlanTable {
        PlanTable {
            id: "flags".into(),
            title: "t".into(),
            key: Some("name".into()),
            columns: vec!["name".into(), "updated_at".into()],
            rows: rows
                .iter()
                .map(|r| vec![Some(r.to_string()), Some("2026-11-22T10:00:00.123456+00:00".into())])
                .collect(),
            counts: true,
        }
    }

    fn plan(rows: &[&str]) -> Plan {
        Plan {
            tables: vec![table(rows)],
            touched: rows.len() as i64,
            database: Vec::new(),
        }
    }

    #[test]
    fn the_hash_covers_every_row_and_the_action() {
        let s = Snapshot::for_tests("UPDATE t SET a = 1 WHERE name = ANY($1) RETURNING name");
        let h = |p: &Plan| request_hash(p, &s);
        assert_eq!(h(&plan(&["a", "b"])), h(&plan(&["a", "b"])));
        assert_ne!(h(&plan(&["a", "b"])), h(&plan(&["a", "c"])));
        assert_ne!(h(&plan(&["ab"])), h(&plan(&["a", "b"])));
        let mut micro = plan(&["a"]);
        micro.tables[0].rows[0][1] = Some("2026-11-22T10:00:00.123457+00:00".into());
        assert_ne!(h(&plan(&["a"])), h(&micro), "a microsecond is a change");
        let other = Snapshot::for_tests("UPDATE t SET a = 2 WHERE name = ANY($1) RETURNING name");
        assert_ne!(h(&plan(&["a"])), request_hash(&plan(&["a"]), &other), "so is the SQL");
        assert_eq!(short(&h(&plan(&["a"]))).len(), 12);
    }

    #[test]
    fn keys_must_name_one_row_each() {
        assert_eq!(plan(&["a", "b"]).keys()["flags"], ["a", "b"]);
        assert_eq!(check_keys(&table(&["a", "b"])), Ok(()));
        assert!(matches!(
            check_keys(&table(&["a", "a"])),
            Err(PlanError::DuplicateKey { .. })
        ));
        let mut null = table(&["a"]);
        null.rows[0][0] = None;
        assert!(matches!(check_keys(&null), Err(PlanError::NullKey { .. })));
        let mut no_key = table(&["a"]);
        no_key.key = Some("id".into());
        assert!(matches!(check_keys(&no_key), Err(PlanError::NoKeyColumn { .. })));
        assert_eq!(table(&["a"]).row_of("a").unwrap()[0].as_deref(), Some("a"));
    }

    #[test]
    fn an_empty_plan_says_what_its_context_steps_left_alone() {
        let mut context = table(&["a", "b<!channel>\nforged", "c", "d"]);
        context.counts = false;
        context.title = "Left deleted".into();
        let mut p = plan(&[]);
        assert_eq!(context_of_empty(&p), "");
        p.tables.push(context);
        let why = context_of_empty(&p);
        assert!(why.starts_with(". Left deleted: a 2026-11-22"), "{why}");
        assert!(why.ends_with(" and 1 more"), "{why}");
        assert!(
            !why.contains("<!channel>") && !why.contains('\n'),
            "escaped and one line: {why}"
        );
        let e = PlanError::Empty { why };
        assert!(
            e.to_string()
                .starts_with("the plan is empty: there is nothing to change. Left deleted")
        );
    }

    #[test]
    fn deploy_plans_show_scheme_and_host_only() {
        let p = for_deploy(
            "api",
            "POST",
            "https://deploy.example.com/hooks/T0KEN/rollback?token=secret",
        );
        assert_eq!(
            p.tables[0].rows[0],
            [
                Some("api".to_string()),
                Some("POST".to_string()),
                Some("https://deploy.example.com".to_string())
            ]
        );
    }
}
