//! Applies an approved action exactly once: recompute the plan inside the
//! apply transaction and refuse on drift, run the statements, audit, verify,
//! and commit only when every verification passes.
//!
//! `apply` takes an `ApprovedRequest`, which only the conditional
//! `approved → applying` update can produce: the executor cannot be reached
//! for a request that was not approved, nor twice for the same approval.

use std::collections::BTreeMap;
use std::sync::Arc;

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
        let r = store::claim_for_apply(&mut tx, id, state.clock.now_ms()).await?;
        tx.commit().await?;
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
    let (to, text) = execute(state, r).await;
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

/// The entry and typed arguments of a stored request.
pub fn resolve(state: &AppState, r: &Request) -> Result<(Arc<Entry>, BTreeMap<String, Value>), String> {
    let entry = if r.name.is_empty() {
        state.catalog.standalone(&r.command)
    } else {
        state.catalog.get(&r.command, &r.name)
    }
    .ok_or_else(|| "the action is no longer in the catalog".to_string())?;
    let values = args::bind_args(&entry.def.args, &r.words).map_err(|e| e.0)?;
    Ok((entry, values))
}

async fn execute(state: &AppState, r: &Request) -> (State, String) {
    let (entry, values) = match resolve(state, r) {
        Ok(x) => x,
        Err(e) => return (State::Failed, e),
    };
    if let Some(arg) = &entry.def.deploy_hook_arg {
        let service = values.get(arg).map(args::display).unwrap_or_default();
        return match deploy::call(state, r, &service).await {
            Ok(msg) => (State::Applied, msg),
            Err(msg) => (State::Failed, msg),
        };
    }
    let Some(target) = state.targets.get(&r.target) else {
        return (State::Failed, format!("no target `{}` in the config", r.target));
    };
    let script = match script_for(&entry, &values) {
        Ok(s) => s,
        Err(e) => return (State::Failed, e),
    };
    let mut conn = match target.pool.acquire().await {
        Ok(c) => c,
        Err(e) => return (State::Failed, format!("target {} {}", target.name, classify(&e, 0))),
    };
    match in_transaction(&mut conn, r, &entry, &values, script.as_deref()).await {
        Ok(msg) => (State::Applied, msg),
        Err((to, msg)) => (to, msg),
    }
}

fn script_for(entry: &Entry, values: &BTreeMap<String, Value>) -> Result<Option<String>, String> {
    let Some(arg) = &entry.def.script_arg else {
        return Ok(None);
    };
    let version = values.get(arg).map(args::display).unwrap_or_default();
    let path = rollback_script(entry, &version)
        .ok_or_else(|| format!("there is no rollback script for `{version}` in the catalog"))?;
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|e| format!("cannot read the rollback script: {e}"))
}

async fn in_transaction(
    conn: &mut PgConnection,
    r: &Request,
    entry: &Entry,
    values: &BTreeMap<String, Value>,
    script: Option<&str>,
) -> Result<String, (State, String)> {
    let def = &entry.def;
    let failed = |e: sqlx::Error| {
        (
            State::Failed,
            format!("target {}: {}", r.target, classify(&e, def.apply_timeout_ms)),
        )
    };
    let mut tx = conn.begin().await.map_err(failed)?;
    tx.execute(sqlx::AssertSqlSafe(format!(
        "SET LOCAL statement_timeout = {}",
        def.apply_timeout_ms
    )))
    .await
    .map_err(failed)?;
    // Lock nothing by hand: the plan is recomputed in this transaction and
    // compared, and the statements' own row locks hold until commit.
    let plan = plan::compute(&mut tx, entry, values, script, def.apply_timeout_ms)
        .await
        .map_err(|e| match e {
            PlanError::Empty | PlanError::TooLarge { .. } => (
                State::Failed,
                format!("data changed since approval ({e}) — request again"),
            ),
            PlanError::Target(t) => (State::Failed, format!("target {}: {t}", r.target)),
        })?;
    if plan.hash() != r.plan_hash {
        return Err((State::Failed, "data changed since approval — request again".into()));
    }
    if let Some(s) = script {
        sqlx::raw_sql(sqlx::AssertSqlSafe(s.to_string()))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                (
                    State::RolledBack,
                    format!("the rollback script failed: {}", classify(&e, 0)),
                )
            })?;
    }
    let mut changed = 0u64;
    for (i, a) in def.apply.iter().enumerate() {
        let params: Vec<_> = a.params.iter().map(|n| args::bound(&def.args, values, n)).collect();
        let n = crate::targets::execute_on(&mut tx, &a.sql, &params)
            .await
            .map_err(|e| (State::RolledBack, format!("statement {} failed: {e}", i + 1)))?;
        if let Some(p) = a.expect_rows_from_plan {
            let want = plan.tables[p].rows.len() as u64;
            if n != want {
                return Err((
                    State::RolledBack,
                    format!(
                        "statement {} changed {n} rows where the plan showed {want}; nothing was changed",
                        i + 1
                    ),
                ));
            }
        }
        changed += n;
    }
    audit_on_target(&mut tx, r, &plan.short_hash()).await.map_err(failed)?;
    let mut verified = Vec::new();
    for v in &def.verify {
        let params: Vec<_> = v.params.iter().map(|n| args::bound(&def.args, values, n)).collect();
        let t = query_on(&mut tx, &v.sql, &params, def.apply_timeout_ms, 5)
            .await
            .map_err(|e| {
                (
                    State::RolledBack,
                    format!("verification `{}` could not run: {e}", v.title),
                )
            })?;
        let ok = match v.expect {
            Expect::Empty => t.total == 0,
            Expect::Rows => t.total > 0,
        };
        if !ok {
            return Err((
                State::RolledBack,
                format!(
                    "verification failed: {} (found {} rows); everything was rolled back",
                    v.title, t.total
                ),
            ));
        }
        verified.push(v.title.clone());
    }
    tx.commit().await.map_err(failed)?;
    Ok(format!("{changed} rows changed; verified: {}", verified.join("; ")))
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
