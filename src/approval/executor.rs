//! Applies an approved action exactly once: recompute the plan inside the
//! apply transaction and refuse on drift, run the statements, audit, verify,
//! and commit only when every verification passes.
//!
//! `apply` takes an `ApprovedRequest`, which only the conditional
//! `approved → applying` update can produce: the executor cannot be reached
//! for a request that was not approved, nor twice for the same approval.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use sqlx::{Connection, Executor, PgConnection};

use super::plan::{self, PlanError};
use super::store::{self, ApprovedRequest, Request, State};
use super::{deploy, notify};
use crate::catalog::args::{self, Value};
use crate::catalog::schema::Expect;
use crate::catalog::{Entry, rollback_script};
use crate::state::AppState;
use crate::targets::{classify, query_on};

/// Claim an approved request and apply it; a no-op when another click,
/// task or instance already claimed it.
pub async fn run_approved(state: Arc<AppState>, id: i64) {
    let claimed = async {
        let mut tx = state.store.begin().await?;
        let r = store::claim_for_apply(&mut tx, id, state.clock.now_ms())
            .await
            .context("claiming the approved request")?;
        tx.commit().await.context("committing the claim")?;
        anyhow::Ok(r)
    };
    match claimed.await {
        Ok(Some(req)) => apply(&state, req).await,
        Ok(None) => {}
        Err(e) => tracing::error!(request.id = id, error = ?e, "could not claim an approved request"),
    }
}

pub async fn apply(state: &AppState, req: ApprovedRequest) {
    let r = req.request();
    tracing::info!(request.id = r.id, command.name = %r.kind_name(), target = %r.target, "applying approved action");
    let (to, text) = match execute(state, r).await {
        Ok(summary) => (State::Applied, summary),
        Err(e) => (e.state(), e.to_string()),
    };
    tracing::info!(request.id = r.id, state = to.as_str(), "action finished");
    // The target has committed (or not); the state store must learn which,
    // or the worker would later report the request as interrupted.
    for attempt in 0..6u32 {
        match notify::finished(state, r, to, &text).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(request.id = r.id, attempt, error = ?e, "could not record an action's result; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500 << attempt)).await;
            }
        }
    }
}

/// Why an approved action did not apply. The words are safe to show in Slack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Nothing was changed: refused before the first statement, or the
    /// target could not be reached.
    #[error("{0}")]
    Failed(String),
    /// Statements ran and everything was rolled back.
    #[error("{0}")]
    RolledBack(String),
}

impl ApplyError {
    pub fn state(&self) -> State {
        match self {
            ApplyError::Failed(_) => State::Failed,
            ApplyError::RolledBack(_) => State::RolledBack,
        }
    }
}

/// The entry and typed arguments of a stored request.
pub fn resolve(state: &AppState, r: &Request) -> Result<(Arc<Entry>, BTreeMap<String, Value>), ApplyError> {
    let entry = if r.name.is_empty() {
        state.catalog.standalone(&r.command)
    } else {
        state.catalog.get(&r.command, &r.name)
    }
    .ok_or_else(|| ApplyError::Failed("the action is no longer in the catalog".into()))?;
    let values = args::bind_args(&entry.def.args, &r.words).map_err(|e| ApplyError::Failed(e.0))?;
    Ok((entry, values))
}

async fn execute(state: &AppState, r: &Request) -> Result<String, ApplyError> {
    let (entry, values) = resolve(state, r)?;
    if let Some(arg) = &entry.def.deploy_hook_arg {
        let service = values.get(arg).map(args::display).unwrap_or_default();
        return deploy::call(state, r, &service).await;
    }
    let target = state
        .targets
        .get(&r.target)
        .ok_or_else(|| ApplyError::Failed(format!("no target `{}` in the config", r.target)))?;
    let script = script_for(&entry, &values)?;
    let mut conn = target
        .pool
        .acquire()
        .await
        .map_err(|e| ApplyError::Failed(format!("target {} {}", target.name, classify(&e, 0))))?;
    let run = Apply {
        r,
        entry: &entry,
        values: &values,
        script: script.as_deref(),
    };
    run.in_transaction(&mut conn).await
}

fn script_for(entry: &Entry, values: &BTreeMap<String, Value>) -> Result<Option<String>, ApplyError> {
    let Some(arg) = &entry.def.script_arg else {
        return Ok(None);
    };
    let version = values.get(arg).map(args::display).unwrap_or_default();
    let path = rollback_script(entry, &version)
        .ok_or_else(|| ApplyError::Failed(format!("there is no rollback script for `{version}` in the catalog")))?;
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|e| ApplyError::Failed(format!("cannot read the rollback script: {e}")))
}

/// One approved request's statements, run in one transaction on its target.
struct Apply<'a> {
    r: &'a Request,
    entry: &'a Entry,
    values: &'a BTreeMap<String, Value>,
    script: Option<&'a str>,
}

impl Apply<'_> {
    fn params(&self, names: &[String]) -> Vec<args::Bound> {
        names
            .iter()
            .map(|n| args::bound(&self.entry.def.args, self.values, n))
            .collect()
    }

    fn unreachable(&self, e: &sqlx::Error) -> ApplyError {
        let timeout = self.entry.def.apply_timeout_ms;
        ApplyError::Failed(format!("target {}: {}", self.r.target, classify(e, timeout)))
    }

    /// Recompute the plan and refuse on drift, run the statements, audit,
    /// verify; commit only when every verification passes.
    async fn in_transaction(&self, conn: &mut PgConnection) -> Result<String, ApplyError> {
        let def = &self.entry.def;
        let mut tx = conn.begin().await.map_err(|e| self.unreachable(&e))?;
        tx.execute(sqlx::AssertSqlSafe(format!(
            "SET LOCAL statement_timeout = {}",
            def.apply_timeout_ms
        )))
        .await
        .map_err(|e| self.unreachable(&e))?;
        // Lock nothing by hand: the plan is recomputed in this transaction and
        // compared, and the statements' own row locks hold until commit.
        let plan = self.replan(&mut tx).await?;
        if let Some(s) = self.script {
            sqlx::raw_sql(sqlx::AssertSqlSafe(s.to_string()))
                .execute(&mut *tx)
                .await
                .map_err(|e| ApplyError::RolledBack(format!("the rollback script failed: {}", classify(&e, 0))))?;
        }
        let changed = self.statements(&mut tx, &plan).await?;
        audit_on_target(&mut tx, self.r, &plan.short_hash())
            .await
            .map_err(|e| self.unreachable(&e))?;
        let verified = self.verify(&mut tx).await?;
        tx.commit().await.map_err(|e| self.unreachable(&e))?;
        Ok(format!("{changed} rows changed; verified: {}", verified.join("; ")))
    }

    async fn replan(&self, conn: &mut PgConnection) -> Result<plan::Plan, ApplyError> {
        let timeout = self.entry.def.apply_timeout_ms;
        let plan = plan::compute(conn, self.entry, self.values, self.script, timeout)
            .await
            .map_err(|e| match e {
                PlanError::Empty | PlanError::TooLarge { .. } => {
                    ApplyError::Failed(format!("data changed since approval ({e}) — request again"))
                }
                PlanError::Target(t) => ApplyError::Failed(format!("target {}: {t}", self.r.target)),
            })?;
        if plan.hash() != self.r.plan_hash {
            return Err(ApplyError::Failed("data changed since approval — request again".into()));
        }
        Ok(plan)
    }

    /// Run the apply statements; each one bound to a plan query must change
    /// exactly as many rows as that query showed.
    async fn statements(&self, conn: &mut PgConnection, plan: &plan::Plan) -> Result<u64, ApplyError> {
        let mut changed = 0u64;
        for (i, a) in self.entry.def.apply.iter().enumerate() {
            let n = crate::targets::execute_on(conn, &a.sql, &self.params(&a.params))
                .await
                .map_err(|e| ApplyError::RolledBack(format!("statement {} failed: {e}", i + 1)))?;
            if let Some(p) = a.expect_rows_from_plan {
                let want = plan.tables[p].rows.len() as u64;
                if n != want {
                    return Err(ApplyError::RolledBack(format!(
                        "statement {} changed {n} rows where the plan showed {want}; nothing was changed",
                        i + 1
                    )));
                }
            }
            changed += n;
        }
        Ok(changed)
    }

    /// Every verification must pass; the titles of those that did.
    async fn verify(&self, conn: &mut PgConnection) -> Result<Vec<String>, ApplyError> {
        let mut verified = Vec::new();
        for v in &self.entry.def.verify {
            let t = query_on(
                conn,
                &v.sql,
                &self.params(&v.params),
                self.entry.def.apply_timeout_ms,
                5,
            )
            .await
            .map_err(|e| ApplyError::RolledBack(format!("verification `{}` could not run: {e}", v.title)))?;
            let ok = match v.expect {
                Expect::Empty => t.total == 0,
                Expect::Rows => t.total > 0,
            };
            if !ok {
                return Err(ApplyError::RolledBack(format!(
                    "verification failed: {} (found {} rows); everything was rolled back",
                    v.title, t.total
                )));
            }
            verified.push(v.title.clone());
        }
        Ok(verified)
    }
}

/// Write to the application's own `public.audit_logs` when it has one with
/// `action`, `actor` and `details` columns.
async fn audit_on_target(conn: &mut PgConnection, r: &Request, plan_hash: &str) -> Result<(), sqlx::Error> {
    let cols: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name = 'audit_logs' AND column_name IN ('action', 'actor', 'details')",
    )
    .fetch_one(&mut *conn)
    .await?;
    if cols < 3 {
        return Ok(());
    }
    let details = serde_json::json!({
        "request_id": r.id,
        "command": r.label(),
        "requested_by": r.requested_by,
        "approved_by": r.decided_by,
        "plan_hash": plan_hash,
        "via": "runbook-bot",
    });
    sqlx::query("INSERT INTO public.audit_logs (action, actor, details) VALUES ($1, $2, $3)")
        .bind(r.label())
        .bind(r.decided_by.clone().unwrap_or_default())
        .bind(details)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
