//! Executes a catalog diagnostic against a target: each step in a read-only
//! transaction with its own timeout and attempts, then judged.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::catalog::Entry;
use crate::catalog::args::{self, Value};
use crate::catalog::schema::{Check, Judge, Severity, StepDef};
use crate::config::HealthCheck;
use crate::targets::{StepError, Table, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    Warning,
    Critical,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warning => "warning",
            Verdict::Critical => "critical",
        }
    }
    pub fn emoji(self) -> &'static str {
        match self {
            Verdict::Ok => ":large_green_circle:",
            Verdict::Warning => ":large_yellow_circle:",
            Verdict::Critical => ":red_circle:",
        }
    }
}

impl From<Severity> for Verdict {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Warning => Verdict::Warning,
            Severity::Critical => Verdict::Critical,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub title: String,
    pub expect: Option<String>,
    pub verdict: Verdict,
    pub table: Table,
    /// Indexes into `table.columns` to show, in order.
    pub shown: Vec<usize>,
    pub limit: u32,
    /// Why the step was skipped or failed, in words safe to show.
    pub note: Option<String>,
    pub elapsed: Duration,
    /// The step failed because the target could not be reached.
    pub unreachable: bool,
}

fn skipped(step: &StepDef, why: &str) -> StepOutcome {
    StepOutcome {
        title: step.title.clone(),
        expect: step.expect.clone(),
        verdict: Verdict::Critical,
        table: Table::default(),
        shown: Vec::new(),
        limit: step.render.limit,
        note: Some(format!("not run: {why}")),
        elapsed: Duration::ZERO,
        unreachable: true,
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
}

pub async fn run(entry: &Entry, values: &BTreeMap<String, Value>, target: &Target, env: &Env<'_>) -> Outcome {
    let started = Instant::now();
    let def = &entry.def;
    let mut steps = Vec::new();
    // Once the target is unreachable, later steps say so instead of waiting again.
    let mut unreachable: Option<String> = None;
    for step in &def.steps {
        if step.when_arg.as_ref().is_some_and(|a| !values.contains_key(a))
            || step.unless_arg.as_ref().is_some_and(|a| values.contains_key(a))
        {
            continue;
        }
        if let Some(down) = &unreachable {
            steps.push(skipped(step, down));
            continue;
        }
        let params: Vec<_> = step.params.iter().map(|p| args::bound(&def.args, values, p)).collect();
        let out = run_step(step, &params, target, env).await;
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

async fn run_step(step: &StepDef, params: &[args::Bound], target: &Target, env: &Env<'_>) -> StepOutcome {
    let started = Instant::now();
    let mut out = StepOutcome {
        title: step.title.clone(),
        expect: step.expect.clone(),
        verdict: Verdict::Ok,
        table: Table::default(),
        shown: Vec::new(),
        limit: step.render.limit,
        note: None,
        elapsed: Duration::ZERO,
        unreachable: false,
    };
    if let Some(ext) = &step.requires_extension {
        match extension_installed(target, ext).await {
            Ok(true) => {}
            Ok(false) => {
                out.note = Some(format!("`{ext}` is not installed on {}; step skipped.", target.name));
                out.elapsed = started.elapsed();
                return out;
            }
            Err(e) => return failed(out, target, 1, &e, started),
        }
    }
    let result = match step.check {
        Check::Sql => with_attempts(step, target, || async {
            target
                .query(
                    step.sql.as_deref().unwrap_or(""),
                    params,
                    step.timeout_ms,
                    step.render.limit,
                )
                .await
        })
        .await
        .map(|t| (t, None)),
        Check::Ping => with_attempts(step, target, || async {
            let took = target.ping().await?;
            Ok(Table {
                columns: vec!["target".into(), "latency_ms".into()],
                rows: vec![vec![target.name.clone(), format!("{:.1}", took.as_secs_f64() * 1e3)]],
                total: 1,
            })
        })
        .await
        .map(|t| (t, None)),
        Check::HttpHealth => Ok(http_health(env).await).map(|(t, v)| (t, Some(v))),
    };
    match result {
        Ok((table, forced)) => {
            out.shown = shown_columns(&table.columns, &step.render.columns);
            out.verdict = forced.unwrap_or_else(|| judge(&step.judge, &table));
            out.table = table;
            out.elapsed = started.elapsed();
            out
        }
        Err((attempts, e)) => failed(out, target, attempts, &e, started),
    }
}

fn failed(mut out: StepOutcome, target: &Target, attempts: u32, e: &StepError, started: Instant) -> StepOutcome {
    let tries = if attempts == 1 {
        "1 attempt".to_string()
    } else {
        format!("{attempts} attempts")
    };
    out.note = Some(match e {
        StepError::Unreachable(why) => format!("target {} unreachable after {tries}: {why}", target.name),
        StepError::Timeout(ms) => format!(
            "timed out after {ms} ms (statement_timeout) on {}, {tries}",
            target.name
        ),
        StepError::Query(why) => format!("query failed on {}: {why}", target.name),
        StepError::Conflict => format!("query failed on {}: {e}", target.name),
    });
    out.verdict = Verdict::Critical;
    out.unreachable = matches!(e, StepError::Unreachable(_));
    out.elapsed = started.elapsed();
    out
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

async fn extension_installed(target: &Target, ext: &str) -> Result<bool, StepError> {
    let sql = "SELECT extname FROM pg_extension WHERE extname = $1";
    let t = target
        .query(sql, &[args::Bound::Text(Some(ext.to_string()))], 2000, 1)
        .await?;
    Ok(t.total > 0)
}

/// The runbooks' health-check script: every configured endpoint must answer
/// 200, within its latency budget.
async fn http_health(env: &Env<'_>) -> (Table, Verdict) {
    let mut table = Table {
        columns: vec![
            "endpoint".into(),
            "status".into(),
            "latency_ms".into(),
            "budget_ms".into(),
        ],
        ..Default::default()
    };
    let mut verdict = Verdict::Ok;
    for h in env.health_checks {
        let p = crate::probe::http(env.http, h).await;
        let v = match (p.ok, p.slow) {
            (true, _) => Verdict::Ok,
            (false, true) => Verdict::Warning,
            (false, false) => Verdict::Critical,
        };
        verdict = verdict.max(v);
        table.rows.push(vec![
            h.name.clone(),
            p.status,
            format!("{:.0}", p.latency_ms),
            h.max_latency_ms.to_string(),
        ]);
    }
    table.total = table.rows.len() as i64;
    (table, verdict)
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

/// Apply a step's judge to its rows.
pub fn judge(j: &Judge, table: &Table) -> Verdict {
    let mut v = Verdict::Ok;
    if table.total > j.rows_over
        && let Some(s) = j.rows
    {
        v = v.max(s.into());
    }
    if table.total == 0
        && let Some(s) = j.empty
    {
        v = v.max(s.into());
    }
    if let Some(col) = &j.column
        && let Some(idx) = table.columns.iter().position(|c| c == col)
    {
        for row in &table.rows {
            let Some(x) = row.get(idx).and_then(|s| s.parse::<f64>().ok()) else {
                continue;
            };
            let over = |t: Option<f64>| t.is_some_and(|t| x > t);
            let under = |t: Option<f64>| t.is_some_and(|t| x < t);
            if over(j.critical_above) || under(j.critical_below) {
                v = v.max(Verdict::Critical);
            } else if over(j.warning_above) || under(j.warning_below) {
                v = v.max(Verdict::Warning);
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[&[&str]]) -> Table {
        Table {
            columns: vec!["name".into(), "pct".into()],
            rows: rows.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect(),
            total: rows.len() as i64,
        }
    }

    #[test]
    fn rows_and_empty_verdicts() {
        let j = Judge {
            rows: Some(Severity::Warning),
            ..Default::default()
        };
        assert_eq!(judge(&j, &table(&[])), Verdict::Ok);
        assert_eq!(judge(&j, &table(&[&["a", "1"]])), Verdict::Warning);
        let j = Judge {
            rows: Some(Severity::Critical),
            rows_over: 1,
            ..Default::default()
        };
        assert_eq!(judge(&j, &table(&[&["a", "1"]])), Verdict::Ok);
        assert_eq!(judge(&j, &table(&[&["a", "1"], &["b", "2"]])), Verdict::Critical);
        let j = Judge {
            empty: Some(Severity::Critical),
            ..Default::default()
        };
        assert_eq!(judge(&j, &table(&[])), Verdict::Critical);
        assert_eq!(judge(&j, &table(&[&["a", "1"]])), Verdict::Ok);
    }

    #[test]
    fn column_thresholds() {
        let j = Judge {
            column: Some("pct".into()),
            warning_above: Some(10.0),
            critical_above: Some(20.0),
            ..Default::default()
        };
        assert_eq!(judge(&j, &table(&[&["a", "5"]])), Verdict::Ok);
        assert_eq!(judge(&j, &table(&[&["a", "5"], &["b", "15"]])), Verdict::Warning);
        assert_eq!(judge(&j, &table(&[&["a", "25"], &["b", "NULL"]])), Verdict::Critical);
        let j = Judge {
            column: Some("pct".into()),
            critical_below: Some(1.0),
            ..Default::default()
        };
        assert_eq!(judge(&j, &table(&[&["hook", "0"]])), Verdict::Critical);
        assert_eq!(judge(&j, &table(&[&["hook", "1"]])), Verdict::Ok);
    }

    #[test]
    fn columns_to_show() {
        let cols = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        assert_eq!(shown_columns(&cols, &[]), vec![0, 1, 2]);
        assert_eq!(shown_columns(&cols, &["c".into(), "a".into(), "zz".into()]), vec![2, 0]);
    }
}
