//! Executes a catalog diagnostic against a target: each step in a read-only
//! transaction with its own timeout and attempts, then judged.
//!
//! A step that cannot run reads could-not-check with its reason, never ok
//! and never critical: a missing table, a privilege, an extension, a
//! timeout or a target that is down says nothing about the data. The one
//! exception is a `ping` step, whose point is reachability. A step that
//! read a relation row-level security hides from the role could not check
//! either (`rls.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::checks;
use super::rls::Sight;
pub use super::verdict::{Verdict, judge};
use crate::catalog::Entry;
use crate::catalog::args::{self, Value};
use crate::catalog::relations::Relation;
use crate::catalog::schema::{Check, StepDef};
use crate::config::HealthCheck;
use crate::targets::{SqlState, StepError, Table, Target, Targets};

#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub title: String,
    pub expect: Option<String>,
    pub verdict: Verdict,
    pub table: Table,
    /// Indexes into `table.columns` to show, in order.
    pub shown: Vec<usize>,
    pub limit: u32,
    /// Why the step could not check (or what limits its result), in words
    /// safe to show.
    pub note: Option<String>,
    pub elapsed: Duration,
    /// The step failed because the target could not be reached.
    pub unreachable: bool,
}

impl StepOutcome {
    fn of(step: &StepDef) -> StepOutcome {
        StepOutcome {
            title: step.title.clone(),
            expect: step.expect.clone(),
            verdict: Verdict::Ok,
            table: Table::default(),
            shown: Vec::new(),
            limit: step.render.limit,
            note: None,
            elapsed: Duration::ZERO,
            unreachable: false,
        }
    }
}

/// A step not run because the target already proved unreachable.
fn not_run(step: &StepDef, down: &str) -> StepOutcome {
    StepOutcome {
        verdict: Verdict::CouldNotCheck,
        note: Some(format!("{down} (step not run)")),
        unreachable: true,
        ..StepOutcome::of(step)
    }
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub command: String,
    pub name: String,
    pub summary: String,
    pub runbook: Option<String>,
    pub target: String,
    pub args: Vec<(String, String)>,
    pub verdict: Verdict,
    pub steps: Vec<StepOutcome>,
    pub elapsed: Duration,
}

/// What a diagnostic needs besides its target.
pub struct Env<'a> {
    pub http: &'a reqwest::Client,
    pub health_checks: &'a [HealthCheck],
    /// Every configured target, for steps that report on all of them.
    pub targets: &'a Targets,
    /// Every relation the catalog reads.
    pub catalog_reads: &'a BTreeSet<Relation>,
}

pub async fn run(entry: &Entry, values: &BTreeMap<String, Value>, target: &Target, env: &Env<'_>) -> Outcome {
    let started = Instant::now();
    let def = &entry.def;
    let mut steps = Vec::new();
    // Once the target is unreachable, later steps say so instead of waiting again.
    let mut unreachable: Option<String> = None;
    let mut sight = Sight::new(target, entry.reads.steps.iter().flatten().cloned().collect());
    for (i, step) in def.steps.iter().enumerate() {
        if step.when_arg.as_ref().is_some_and(|a| !values.contains_key(a))
            || step.unless_arg.as_ref().is_some_and(|a| values.contains_key(a))
        {
            continue;
        }
        if let Some(down) = &unreachable
            && needs_target(step.check)
        {
            steps.push(not_run(step, down));
            continue;
        }
        let params: Vec<_> = step.params.iter().map(|p| args::bound(&def.args, values, p)).collect();
        let mut out = run_step(step, &params, target, env).await;
        sight.mark(&mut out, step, entry.reads.step(i)).await;
        if out.unreachable {
            unreachable = out.note.clone();
        }
        steps.push(out);
    }
    Outcome {
        command: def.command.clone(),
        name: def.name.clone(),
        summary: def.summary.clone(),
        runbook: def.runbook.clone(),
        target: target.name.clone(),
        args: def
            .args
            .iter()
            .filter_map(|a| values.get(&a.name).map(|v| (a.name.clone(), args::display(v))))
            .collect(),
        verdict: steps.iter().map(|s| s.verdict).max().unwrap_or(Verdict::Ok),
        steps,
        elapsed: started.elapsed(),
    }
}

/// Whether a step talks to the diagnostic's target (HTTP endpoints do not;
/// the RLS report asks every target, each with its own timeout).
fn needs_target(check: Check) -> bool {
    matches!(check, Check::Sql | Check::Ping)
}

async fn run_step(step: &StepDef, params: &[args::Bound], target: &Target, env: &Env<'_>) -> StepOutcome {
    let started = Instant::now();
    let mut out = StepOutcome::of(step);
    let result = match step.check {
        Check::Sql => with_attempts(step, target, || sql(step, params, target))
            .await
            .map(|t| (t, None)),
        Check::Ping => with_attempts(step, target, || ping(target)).await.map(|t| (t, None)),
        Check::HttpHealth => Ok(checks::http_health(env).await).map(|(t, v)| (t, Some(v))),
        Check::RlsVisibility => Ok(checks::rls_visibility(env).await).map(|(t, v)| (t, Some(v))),
    };
    match result {
        Ok((table, forced)) => {
            out.shown = shown_columns(&table.columns, &step.render.columns);
            out.verdict = forced.unwrap_or_else(|| judge(&step.judge, &table));
            out.table = table;
        }
        Err((attempts, e)) => {
            out.note = Some(reason(&target.name, attempts, &e));
            // A ping exists to test reachability: its failure is the finding.
            // Busy connections say nothing about reachability.
            out.verdict = match (step.check, &e) {
                (Check::Ping, StepError::Busy(_)) => Verdict::CouldNotCheck,
                (Check::Ping, _) => Verdict::Critical,
                _ => Verdict::CouldNotCheck,
            };
            out.unreachable = matches!(e, StepError::Unreachable(_));
        }
    }
    out.elapsed = started.elapsed();
    out
}

async fn sql(step: &StepDef, params: &[args::Bound], target: &Target) -> Result<Table, StepError> {
    let sql = step.sql.as_deref().unwrap_or("");
    let (timeout, limit) = (step.timeout_ms, step.render.limit);
    match &step.requires_extension {
        Some(ext) => target.query_with_extension(ext, sql, params, timeout, limit).await,
        None => target.query(sql, params, timeout, limit).await,
    }
}

async fn ping(target: &Target) -> Result<Table, StepError> {
    let took = target.ping().await?;
    Ok(Table {
        columns: vec!["target".into(), "latency_ms".into()],
        rows: vec![vec![target.name.clone(), format!("{:.1}", took.as_secs_f64() * 1e3)]],
        total: 1,
    })
}

/// Why a step could not check, naming the target, never its URL.
fn reason(name: &str, attempts: u32, e: &StepError) -> String {
    let tries = if attempts == 1 {
        "1 attempt".to_string()
    } else {
        format!("{attempts} attempts")
    };
    match e {
        StepError::Unreachable(why) => format!("target {name} unreachable after {tries}: {why}"),
        StepError::Timeout(ms) => format!("timed out after {ms} ms (statement_timeout) on {name}, {tries}"),
        StepError::Query { code, message } => {
            let code_words = code.map(|c| format!(" ({c})")).unwrap_or_default();
            format!("{message}{code_words} on {name}{}", hint(*code))
        }
        StepError::Conflict => format!("changed by a concurrent transaction on {name}"),
        StepError::NotInstalled(ext) => format!("extension `{ext}` is not installed on {name}"),
        StepError::Busy(n) => {
            format!("all {n} connections to {name} stayed busy; not run (the pool is never exceeded)")
        }
    }
}

/// What an operator should look at, for the failures a catalog step meets.
fn hint(code: Option<SqlState>) -> &'static str {
    match code {
        Some(SqlState::INSUFFICIENT_PRIVILEGE) => "; the bot's role lacks a privilege",
        Some(
            SqlState::UNDEFINED_TABLE
            | SqlState::UNDEFINED_COLUMN
            | SqlState::UNDEFINED_FUNCTION
            | SqlState::UNDEFINED_OBJECT
            | SqlState::INVALID_SCHEMA_NAME,
        ) => "; the catalog's SQL does not match this database",
        Some(SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE | SqlState::FEATURE_NOT_SUPPORTED) => {
            "; the database is not set up for this query"
        }
        _ => "",
    }
}

/// Retry transient failures with the runbooks' jittered backoff (about 0,
/// 100 and 300 ms before attempts 1, 2 and 3).
async fn with_attempts<F, Fut>(step: &StepDef, target: &Target, f: F) -> Result<Table, (u32, StepError)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Table, StepError>>,
{
    let attempts = step.attempts.unwrap_or(target.attempts).max(1);
    let mut last = None;
    for attempt in 1..=attempts {
        if attempt > 1 {
            let base: u64 = if attempt == 2 { 100 } else { 300 };
            tokio::time::sleep(Duration::from_millis(base / 2 + rand::random_range(0..=base))).await;
        }
        // The statement timeout bounds the query; this bounds connecting too.
        let bound = Duration::from_millis(step.timeout_ms) + target.connect_timeout * 2;
        let r = match tokio::time::timeout(bound, f()).await {
            Ok(r) => r,
            Err(_) => Err(StepError::Timeout(step.timeout_ms)),
        };
        match r {
            Ok(t) => return Ok(t),
            Err(e) if e.transient() => last = Some((attempt, e)),
            Err(e) => return Err((attempt, e)),
        }
    }
    Err(last.expect("at least one attempt"))
}

fn shown_columns(columns: &[String], wanted: &[String]) -> Vec<usize> {
    if wanted.is_empty() {
        return (0..columns.len()).collect();
    }
    wanted
        .iter()
        .filter_map(|w| columns.iter().position(|c| c == w))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_to_show() {
        let cols = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        assert_eq!(shown_columns(&cols, &[]), vec![0, 1, 2]);
        assert_eq!(shown_columns(&cols, &["c".into(), "a".into(), "zz".into()]), vec![2, 0]);
    }

    #[test]
    fn hints_name_what_to_look_at() {
        assert!(hint(Some(SqlState::UNDEFINED_COLUMN)).contains("catalog's SQL"));
        assert!(hint(Some(SqlState::INSUFFICIENT_PRIVILEGE)).contains("privilege"));
        assert!(hint(Some(SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)).contains("not set up"));
        assert_eq!(hint(None), "");
    }

    #[test]
    fn reasons_name_the_target_the_cause_and_the_code() {
        let q = StepError::Query {
            code: Some(SqlState::UNDEFINED_TABLE),
            message: "relation \"public.nope\" does not exist".into(),
        };
        assert_eq!(
            reason("production", 1, &q),
            "relation \"public.nope\" does not exist (42P01) on production; the catalog's SQL does not match this database"
        );
        assert_eq!(
            reason("staging", 3, &StepError::Unreachable("connection refused".into())),
            "target staging unreachable after 3 attempts: connection refused"
        );
        assert_eq!(
            reason("production", 1, &StepError::NotInstalled("pg_stat_statements".into())),
            "extension `pg_stat_statements` is not installed on production"
        );
        assert_eq!(reason("p", 1, &StepError::other("bad row")), "bad row on p");
        assert_eq!(
            reason("p", 1, &StepError::Busy(4)),
            "all 4 connections to p stayed busy; not run (the pool is never exceeded)"
        );
    }
}
