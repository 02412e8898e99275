//! Applies an approved action exactly once, and only as approved.
//!
//! `apply` takes an `ApprovedRequest`, which only the conditional
//! `approved → applying` update can produce: the executor cannot be reached
//! for a request that was not approved, nor twice for the same approval.
//! It then runs the stored snapshot of the action (refusing when the catalog,
//! script or hook changed since approval) in one SERIALIZABLE transaction:
//! re-read the plan and refuse on any difference; run each statement, which
//! must return exactly its plan step's approved keys; audit; verify; record
//! the transaction id; commit. Irreversible effects run after that, one
//! approved key at a time. While it works, the instance renews its lease.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::{Connection, PgConnection};

use super::auth_admin;
use super::effects;
use super::plan::{self, Plan, PlanError, request_hash};
use super::snapshot::Snapshot;
use super::store::{self, ApprovedRequest, Request, State};
use super::{deploy, notify};
use crate::catalog::args::{self, Bound, Source, Value};
use crate::catalog::schema::{Expect, VerifyDef};
use crate::state::AppState;
use crate::targets::exact::execute_returning;
use crate::targets::{StepError, classify, execute_on, query_on};

/// Claim an approved request and apply it; a no-op when another click,
/// task or instance already claimed it, or when its approval expired.
pub async fn run_approved(state: Arc<AppState>, id: i64) {
    let claimed = async {
        let mut tx = state.store.begin().await?;
        let lease_ms = state.config.approvals.lease.as_millis() as i64;
        let r = store::claim_for_apply(&mut tx, id, state.clock.now_ms(), lease_ms)
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
    let lease = LeaseKeeper::start(state, r.id);
    let (to, text) = match execute(state, r).await {
        Ok(summary) => (State::Applied, summary),
        Err(e) => (e.state(), e.to_string()),
    };
    tracing::info!(request.id = r.id, state = to.as_str(), "action finished");
    // The target has committed (or not); the state store must learn which.
    // Should it stay unreachable, the lease lapses and the worker asks the
    // target itself (by the recorded transaction id).
    for attempt in 0..6u32 {
        match notify::finished(state, r, to, &text).await {
            Ok(()) => break,
            Err(e) => {
                tracing::error!(request.id = r.id, attempt, error = ?e, "could not record an action's result; retrying");
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
        }
    }
    lease.stop();
}

/// Renews the request's lease while this instance applies it.
struct LeaseKeeper(tokio::task::JoinHandle<()>);

impl LeaseKeeper {
    fn start(state: &AppState, id: i64) -> LeaseKeeper {
        let (store, clock) = (state.store.clone(), state.clock.clone());
        let lease = state.config.approvals.lease;
        LeaseKeeper(tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                let renewed = async {
                    let mut conn = store.writer.acquire().await?;
                    store::renew_lease(&mut conn, id, clock.now_ms(), lease.as_millis() as i64).await
                };
                match renewed.await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => tracing::warn!(request.id = id, error = ?e, "could not renew the apply lease"),
                }
            }
        }))
    }

    fn stop(self) {
        self.0.abort();
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
    /// COMMIT was sent and the target could not say how it ended.
    #[error("{0}")]
    Unknown(String),
}

impl ApplyError {
    pub fn state(&self) -> State {
        match self {
            ApplyError::Failed(_) => State::Failed,
            ApplyError::RolledBack(_) => State::RolledBack,
            ApplyError::Unknown(_) => State::Interrupted,
        }
    }

    /// Drift, a concurrent change, a serialization failure: all read the
    /// same to the people in the thread (the cause goes to the log).
    fn changed_since_approval(why: impl std::fmt::Display) -> ApplyError {
        tracing::info!(cause = %why, "apply refused: data changed since approval");
        ApplyError::Failed("data changed since approval — request again".into())
    }
}

/// What was approved, as stored with the request.
pub struct Approved {
    pub plan: Plan,
    pub snapshot: Snapshot,
    pub values: BTreeMap<String, Value>,
}

impl Approved {
    /// Bind a statement's parameters: arguments, approved keys, and for an
    /// effect the key it runs for and that key's approved row.
    pub fn params(&self, names: &[String], one: Option<(&str, &plan::PlanTable)>) -> Vec<Bound> {
        let def = &self.snapshot.def;
        names
            .iter()
            .map(
                |n| match args::resolve_source(&def.args, &self.keyed(), n, args::Context::Effect) {
                    Ok(Source::PlanKeys(id)) => {
                        Bound::TextList(self.plan.table(&id).map(|t| t.keys()).unwrap_or_default())
                    }
                    Ok(Source::Key) => Bound::Text(one.map(|(k, _)| k.to_string())),
                    Ok(Source::RowColumn(col)) => Bound::Text(one.and_then(|(k, t)| {
                        let i = t.columns.iter().position(|c| *c == col)?;
                        t.row_of(k)?.get(i)?.clone()
                    })),
                    _ => args::bound(&def.args, &self.values, n),
                },
            )
            .collect()
    }

    fn keyed(&self) -> Vec<&str> {
        self.plan
            .tables
            .iter()
            .filter(|t| t.key.is_some())
            .map(|t| t.id.as_str())
            .collect()
    }
}

/// Decode the stored plan and snapshot and check they are what was hashed.
pub fn stored(r: &Request) -> Result<Approved, ApplyError> {
    let old = || ApplyError::Failed("the request was stored by an older version of the bot; request it again".into());
    let plan: Plan = serde_json::from_str(&r.plan).map_err(|_| old())?;
    let snapshot: Snapshot = serde_json::from_str(r.snapshot.as_deref().ok_or_else(old)?).map_err(|_| old())?;
    if request_hash(&plan, &snapshot) != r.plan_hash {
        return Err(ApplyError::Failed(
            "the stored plan does not match its hash; nothing was changed".into(),
        ));
    }
    let values = args::bind_args(&snapshot.def.args, &r.words).map_err(|e| ApplyError::Failed(e.0))?;
    Ok(Approved { plan, snapshot, values })
}

/// `stored`, and the catalog, script and hook still say the same.
pub fn approved(state: &AppState, r: &Request) -> Result<Approved, ApplyError> {
    let stored = stored(r)?;
    let entry = if r.name.is_empty() {
        state.catalog.standalone(&r.command)
    } else {
        state.catalog.get(&r.command, &r.name)
    }
    .ok_or_else(|| ApplyError::Failed("the action is no longer in the catalog; nothing was changed".into()))?;
    let current = Snapshot::of(&entry, &stored.values, &state.config.deploy_hooks)
        .and_then(|s| auth_admin::attach(s, &r.target, &state.config.supabase_auth))
        .map_err(|e| ApplyError::Failed(e.0))?;
    auth_admin::unchanged(&stored.snapshot, &current)?;
    if current.canonical() != stored.snapshot.canonical() {
        return Err(ApplyError::Failed(
            "the action's definition (catalog file, rollback script or deploy hook) changed since approval — request again; nothing was changed".into(),
        ));
    }
    Ok(stored)
}

async fn execute(state: &AppState, r: &Request) -> Result<String, ApplyError> {
    let a = approved(state, r)?;
    if let Some(hook) = &a.snapshot.hook {
        return deploy::call(state, r, hook, &a.snapshot).await;
    }
    let target = state
        .targets
        .get(&r.target)
        .ok_or_else(|| ApplyError::Failed(format!("no target `{}` in the config", r.target)))?;
    let unreachable = |e: StepError| ApplyError::Failed(format!("target {}: {e}; nothing was changed", target.name));
    let mut summary = Vec::new();
    if !a.snapshot.def.apply.is_empty() || a.snapshot.script.is_some() {
        let mut conn = target.acquire().await.map_err(unreachable)?;
        summary.push(Transaction { state, r, a: &a }.run(&mut conn).await?);
    }
    if !a.snapshot.def.effects.is_empty() {
        summary.push(effects::run(target, &a).await?);
    }
    if !a.snapshot.def.auth_admin.is_empty() {
        summary.push(auth_admin::run(state, r, target, &a).await?);
    }
    Ok(summary.join("\n"))
}

/// The transactional part of one approved request.
struct Transaction<'a> {
    state: &'a AppState,
    r: &'a Request,
    a: &'a Approved,
}

impl Transaction<'_> {
    fn timeout(&self) -> u64 {
        self.a.snapshot.def.apply_timeout_ms
    }

    fn failed(&self, e: &sqlx::Error) -> ApplyError {
        if is_conflict(e) {
            return ApplyError::changed_since_approval("a concurrent change to the planned rows");
        }
        ApplyError::Failed(format!(
            "target {}: {}; nothing was changed",
            self.r.target,
            classify(e, self.timeout())
        ))
    }

    fn params(&self, names: &[String]) -> Vec<Bound> {
        self.a.params(names, None)
    }

    async fn run(&self, conn: &mut PgConnection) -> Result<String, ApplyError> {
        // SERIALIZABLE: a concurrent change to any planned row, or to which
        // rows the plan matches, ends in a serialization failure, reported
        // as "data changed since approval" and never retried.
        let mut tx = conn
            .begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE")
            .await
            .map_err(|e| self.failed(&e))?;
        let settings = format!(
            "SET LOCAL statement_timeout = {}; {}",
            self.timeout(),
            plan::SESSION_SETTINGS
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(settings))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.failed(&e))?;
        self.replan(&mut tx).await?;
        if let Some(s) = &self.a.snapshot.script {
            sqlx::raw_sql(sqlx::AssertSqlSafe(s.text.clone()))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.rolled_back(&e, "the rollback script failed"))?;
        }
        let changed = self.statements(&mut tx).await?;
        audit_on_target(&mut tx, self.r, plan::short(&self.r.plan_hash))
            .await
            .map_err(|e| self.rolled_back(&e, "writing the target's audit log failed"))?;
        let verified = self.verify(&mut tx).await?;
        let xid: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.failed(&e))?;
        if !self.record_xid(&xid).await {
            return Err(ApplyError::Failed(
                "the state store could not record the apply; rolled back, nothing was changed".into(),
            ));
        }
        let summary = format!("{changed} rows changed; verified: {}", verified.join("; "));
        match tx.commit().await {
            Ok(()) => Ok(summary),
            Err(e) => self.commit_outcome(&e, &xid, summary).await,
        }
    }

    /// COMMIT failed to answer (a dropped connection, say): it may have
    /// committed. Ask the target about the transaction instead of guessing.
    async fn commit_outcome(&self, e: &sqlx::Error, xid: &str, summary: String) -> Result<String, ApplyError> {
        if is_conflict(e) {
            return Err(ApplyError::changed_since_approval("a serialization failure at commit"));
        }
        let asked = async {
            let target = self.state.targets.get(&self.r.target)?;
            let mut conn = target.acquire().await.ok()?;
            sqlx::query_scalar::<_, Option<String>>("SELECT pg_xact_status($1::text::xid8)::text")
                .bind(xid)
                .fetch_one(&mut *conn)
                .await
                .ok()?
        };
        match asked.await.as_deref() {
            Some("committed") => Ok(summary),
            Some("aborted") => Err(ApplyError::RolledBack(format!(
                "the commit failed ({}); the target rolled it back, nothing was changed",
                classify(e, self.timeout())
            ))),
            _ => Err(ApplyError::Unknown(format!(
                "the commit did not answer ({}) and the target cannot say whether it committed; check the target before requesting again",
                classify(e, self.timeout())
            ))),
        }
    }

    fn rolled_back(&self, e: &sqlx::Error, what: &str) -> ApplyError {
        if is_conflict(e) {
            return ApplyError::changed_since_approval("a concurrent change to the planned rows");
        }
        ApplyError::RolledBack(format!(
            "{what}: {}; everything was rolled back",
            classify(e, self.timeout())
        ))
    }

    /// The plan read again inside this transaction must be the approved one.
    async fn replan(&self, conn: &mut PgConnection) -> Result<(), ApplyError> {
        let now = plan::compute(conn, &self.a.snapshot.def, &self.a.values, self.timeout())
            .await
            .map_err(|e| match e {
                PlanError::Target(StepError::Conflict) => {
                    ApplyError::changed_since_approval("a concurrent change to the planned rows")
                }
                PlanError::Target(t) => {
                    ApplyError::Failed(format!("target {}: {t}; nothing was changed", self.r.target))
                }
                other => ApplyError::changed_since_approval(other),
            })?;
        if request_hash(&now, &self.a.snapshot) != self.r.plan_hash {
            return Err(ApplyError::changed_since_approval(
                "the planned rows are not the approved ones",
            ));
        }
        Ok(())
    }

    /// Run the apply statements. A statement bound to a plan step must
    /// return (`RETURNING`) exactly that step's approved keys: a row outside
    /// the plan, or an approved row left out, rolls everything back. An
    /// `unrestricted` statement (shown as such on the card) runs as written.
    async fn statements(&self, conn: &mut PgConnection) -> Result<u64, ApplyError> {
        let mut changed = 0u64;
        for (i, a) in self.a.snapshot.def.apply.iter().enumerate() {
            let n = i + 1;
            let params = self.params(&a.params);
            let failed = |e: StepError| match e {
                StepError::Conflict => ApplyError::changed_since_approval("a concurrent change to the planned rows"),
                other => ApplyError::RolledBack(format!("statement {n} failed: {other}; everything was rolled back")),
            };
            let Some(id) = &a.plan else {
                changed += execute_on(conn, &a.sql, &params).await.map_err(failed)?;
                continue;
            };
            let returned = execute_returning(conn, &a.sql, &params, self.timeout())
                .await
                .map_err(failed)?;
            let table = self.a.plan.table(id).ok_or_else(|| {
                ApplyError::RolledBack(format!("statement {n} names plan step `{id}`, which the plan lacks"))
            })?;
            check_returned(n, table.key.as_deref().unwrap_or(""), &table.keys(), &returned)?;
            changed += returned.rows.len() as u64;
        }
        Ok(changed)
    }

    /// Every verification must pass; the titles of those that did.
    async fn verify(&self, conn: &mut PgConnection) -> Result<Vec<String>, ApplyError> {
        let mut verified = Vec::new();
        for v in &self.a.snapshot.def.verify {
            verified.push(self.verify_one(conn, v).await?);
        }
        Ok(verified)
    }

    async fn verify_one(&self, conn: &mut PgConnection, v: &VerifyDef) -> Result<String, ApplyError> {
        let t = query_on(conn, &v.sql, &self.params(&v.params), self.timeout(), 5)
            .await
            .map_err(|e| match e {
                StepError::Conflict => ApplyError::changed_since_approval("a concurrent change to the planned rows"),
                e => ApplyError::RolledBack(format!("verification `{}` could not run: {e}", v.title)),
            })?;
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
        Ok(v.title.clone())
    }

    /// Record the target's transaction id before committing it; false when
    /// the state store cannot (the caller then must not commit).
    async fn record_xid(&self, xid: &str) -> bool {
        let recorded = async {
            let mut tx = self.state.store.begin().await?;
            let ours = store::record_xid(&mut tx, self.r.id, xid).await?;
            tx.commit().await?;
            anyhow::Ok(ours)
        };
        match recorded.await {
            Ok(ours) => ours,
            Err(e) => {
                tracing::error!(request.id = self.r.id, error = ?e, "could not record the apply transaction");
                false
            }
        }
    }
}

/// A statement must have changed exactly the approved keys of its step.
fn check_returned(
    n: usize,
    key: &str,
    approved: &[String],
    returned: &crate::targets::exact::ExactTable,
) -> Result<(), ApplyError> {
    if returned.rows.is_empty() {
        if approved.is_empty() {
            return Ok(());
        }
        return Err(ApplyError::RolledBack(format!(
            "statement {n} changed none of the {} approved rows; everything was rolled back",
            approved.len()
        )));
    }
    let Some(col) = returned.columns.iter().position(|c| c == key) else {
        return Err(ApplyError::RolledBack(format!(
            "statement {n} did not return its key `{key}`; everything was rolled back"
        )));
    };
    let got: Vec<&str> = returned.rows.iter().filter_map(|r| r[col].as_deref()).collect();
    if let Some(extra) = got.iter().find(|k| !approved.iter().any(|a| a == *k)) {
        return Err(ApplyError::RolledBack(format!(
            "statement {n} changed a row the plan did not show ({key} {}); everything was rolled back",
            crate::slack::text::visible(extra)
        )));
    }
    let missing = approved.iter().filter(|a| !got.contains(&a.as_str())).count();
    if missing > 0 || got.len() != approved.len() {
        return Err(ApplyError::RolledBack(format!(
            "statement {n} changed {} rows where the plan showed {} ({missing} approved rows untouched); everything was rolled back",
            got.len(),
            approved.len()
        )));
    }
    Ok(())
}

/// A serialization failure or deadlock: someone else changed the rows.
fn is_conflict(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001") | Some("40P01")))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::exact::ExactTable;

    fn returned(keys: &[&str]) -> ExactTable {
        ExactTable {
            columns: vec!["id".into()],
            rows: keys.iter().map(|k| vec![Some(k.to_string())]).collect(),
            total: keys.len() as i64,
        }
    }

    #[test]
    fn a_statement_must_change_exactly_the_approved_keys() {
        let approved = vec!["a".to_string(), "b".to_string()];
        assert_eq!(check_returned(1, "id", &approved, &returned(&["b", "a"])), Ok(()));
        let e = check_returned(2, "id", &approved, &returned(&["a", "b", "c"])).unwrap_err();
        assert!(
            e.to_string().contains("changed a row the plan did not show (id c)"),
            "{e}"
        );
        let e = check_returned(2, "id", &approved, &returned(&["a"])).unwrap_err();
        assert!(e.to_string().contains("changed 1 rows where the plan showed 2"), "{e}");
        let e = check_returned(2, "id", &approved, &returned(&["a", "a"])).unwrap_err();
        assert!(e.to_string().contains("1 approved rows untouched"), "{e}");
        let e = check_returned(3, "id", &approved, &ExactTable::default()).unwrap_err();
        assert!(e.to_string().contains("changed none of the 2 approved rows"), "{e}");
        assert_eq!(e.state(), State::RolledBack);
        assert_eq!(check_returned(4, "id", &[], &ExactTable::default()), Ok(()));
        let mut unnamed = returned(&["a", "b"]);
        unnamed.columns = vec!["other".into()];
        let e = check_returned(5, "id", &approved, &unnamed).unwrap_err();
        assert!(e.to_string().contains("did not return its key `id`"), "{e}");
    }
}
