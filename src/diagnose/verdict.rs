//! What a diagnostic step found: ok, could not check, warning or critical,
//! and how a step's judge turns its rows into one.
//!
//! Could-not-check sits between ok and the findings: a definite finding
//! outranks uncertainty, and uncertainty outranks green, so a diagnostic
//! whose steps could not run can never read as healthy.

use crate::catalog::schema::{Judge, Severity};
use crate::targets::Table;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    /// The step did not run, or ran without seeing everything it reads:
    /// its result says nothing either way.
    CouldNotCheck,
    Warning,
    Critical,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [Verdict::Ok, Verdict::CouldNotCheck, Verdict::Warning, Verdict::Critical];

    /// The metric label and log field value.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::CouldNotCheck => "could_not_check",
            Verdict::Warning => "warning",
            Verdict::Critical => "critical",
        }
    }

    /// The verdict in words, for people.
    pub fn words(self) -> &'static str {
        match self {
            Verdict::CouldNotCheck => "could not check",
            other => other.as_str(),
        }
    }

    pub fn emoji(self) -> &'static str {
        match self {
            Verdict::Ok => ":large_green_circle:",
            Verdict::CouldNotCheck => ":grey_question:",
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

/// The findings among rows that may be only some of the real ones (rows
/// hidden by row-level security): rows seen over a limit, or a value past a
/// threshold, are findings whatever else exists; "no rows" is not.
pub fn judge_partial(j: &Judge, table: &Table) -> Verdict {
    judge(
        &Judge {
            empty: None,
            ..j.clone()
        },
        table,
    )
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
    fn uncertainty_outranks_green_and_findings_outrank_uncertainty() {
        assert!(Verdict::Ok < Verdict::CouldNotCheck);
        assert!(Verdict::CouldNotCheck < Verdict::Warning);
        assert!(Verdict::Warning < Verdict::Critical);
        assert_eq!(Verdict::ALL.iter().max(), Some(&Verdict::Critical));
        assert_eq!(Verdict::CouldNotCheck.as_str(), "could_not_check");
        assert_eq!(Verdict::CouldNotCheck.words(), "could not check");
        assert_eq!(Verdict::CouldNotCheck.emoji(), ":grey_question:");
    }

    #[test]
    fn a_partial_result_keeps_its_findings_but_not_its_emptiness() {
        let j = Judge {
            empty: Some(Severity::Critical),
            rows: Some(Severity::Warning),
            rows_over: 1,
            ..Default::default()
        };
        assert_eq!(judge(&j, &table(&[])), Verdict::Critical);
        assert_eq!(judge_partial(&j, &table(&[])), Verdict::Ok);
        assert_eq!(judge_partial(&j, &table(&[&["a", "1"], &["b", "2"]])), Verdict::Warning);
    }
}
