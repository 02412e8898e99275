//! An action's plan: the exact rows it will touch, computed from the catalog's
//! `plan` queries, and a hash of them. The plan is computed when the action
//! is requested (shown on the approval card) and again inside the apply
//! transaction; a different hash means the data changed since approval.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::catalog::Entry;
use crate::catalog::args::{self, Value};
use crate::config::DeployHook;
use crate::targets::{StepError, Table, query_on};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanTable {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub counts: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub tables: Vec<PlanTable>,
    /// Rows the action will change (the counted tables).
    pub touched: i64,
    /// Extra lines shown with the plan (rollback script, deploy hook).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Target(#[from] StepError),
    #[error("the plan touches {touched} rows, more than this action's limit of {max}; narrow it down")]
    TooLarge { touched: i64, max: i64 },
    #[error("the plan is empty: there is nothing to change")]
    Empty,
}

impl Plan {
    /// SHA-256 over everything shown: titles, columns, every row, notes.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for t in &self.tables {
            h.update(t.title.as_bytes());
            h.update([0]);
            for c in &t.columns {
                h.update(c.as_bytes());
                h.update([1]);
            }
            for r in &t.rows {
                for v in r {
                    h.update(v.as_bytes());
                    h.update([2]);
                }
                h.update([3]);
            }
        }
        for n in &self.notes {
            h.update(n.as_bytes());
            h.update([4]);
        }
        hex::encode(h.finalize())
    }

    pub fn short_hash(&self) -> String {
        self.hash()[..12].to_string()
    }
}

/// Run the plan queries on `conn` (a read-only transaction at request time,
/// the apply transaction at apply time).
pub async fn compute(
    conn: &mut PgConnection,
    entry: &Entry,
    values: &BTreeMap<String, Value>,
    script: Option<&str>,
    timeout_ms: u64,
) -> Result<Plan, PlanError> {
    let def = &entry.def;
    let max = def.max_rows.unwrap_or(0);
    let mut plan = Plan {
        tables: Vec::new(),
        touched: 0,
        notes: Vec::new(),
    };
    for p in &def.plan {
        let params: Vec<_> = p.params.iter().map(|n| args::bound(&def.args, values, n)).collect();
        // One row more than allowed is enough to know the plan is too large.
        let limit = u32::try_from(max + 1).unwrap_or(u32::MAX).max(1);
        let t: Table = query_on(conn, &p.sql, &params, timeout_ms, limit).await?;
        if p.counts {
            plan.touched += t.total;
        }
        plan.tables.push(PlanTable {
            title: p.title.clone(),
            columns: t.columns,
            rows: t.rows,
            counts: p.counts,
        });
    }
    if plan.touched > max {
        return Err(PlanError::TooLarge {
            touched: plan.touched,
            max,
        });
    }
    if plan.touched == 0 {
        return Err(PlanError::Empty);
    }
    if let Some(s) = script {
        plan.notes.push(format!(
            "rollback script ({} lines, sha256 {}):\n{s}",
            s.lines().count(),
            &hex::encode(Sha256::digest(s))[..12]
        ));
    }
    Ok(plan)
}

/// The plan of a deploy-hook action: which hook will be called.
pub fn for_deploy(service: &str, hook: &DeployHook) -> Plan {
    let endpoint = crate::slack::text::public_url(&hook.url);
    Plan {
        tables: vec![PlanTable {
            title: "Deploy hook that will be called".into(),
            columns: vec!["service".into(), "method".into(), "endpoint".into()],
            rows: vec![vec![service.to_string(), hook.method.clone(), endpoint]],
            counts: true,
        }],
        touched: 1,
        notes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rows: &[&str]) -> Plan {
        Plan {
            tables: vec![PlanTable {
                title: "t".into(),
                columns: vec!["name".into()],
                rows: rows.iter().map(|r| vec![r.to_string()]).collect(),
                counts: true,
            }],
            touched: rows.len() as i64,
            notes: vec![],
        }
    }

    #[test]
    fn the_hash_changes_with_any_row() {
        assert_eq!(plan(&["a", "b"]).hash(), plan(&["a", "b"]).hash());
        assert_ne!(plan(&["a", "b"]).hash(), plan(&["a", "c"]).hash());
        assert_ne!(plan(&["ab"]).hash(), plan(&["a", "b"]).hash());
        assert_eq!(plan(&["a"]).short_hash().len(), 12);
    }

    #[test]
    fn deploy_plans_never_show_the_query_string() {
        let hook = DeployHook {
            url: "https://deploy.example.com/hooks/rollback?token=secret".into(),
            method: "POST".into(),
            token: None,
        };
        let p = for_deploy("api", &hook);
        assert_eq!(
            p.tables[0].rows[0],
            vec!["api", "POST", "https://deploy.example.com/hooks/rollback"]
        );
    }
}
