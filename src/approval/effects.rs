//! Irreversible effects (terminating sessions, say): steps no rollback can
//! undo. They run only on the approved keys of their plan step, one key at
//! a time in its own short transaction: first `recheck`, a read-only query
//! that returns a row only when the key still qualifies as approved (the
//! same session, still idle, in this database); then, and only then, `run`.
//! Two statements make the order certain: PostgreSQL orders the quals of
//! one statement by cost, so a side effect in a WHERE clause can run before
//! the conditions meant to guard it. The result lists every key.

use sqlx::Connection;

use super::executor::{ApplyError, Approved};
use super::plan::PlanTable;
use crate::catalog::schema::EffectDef;
use crate::slack::text::visible;
use crate::targets::{StepError, Target, query_on};

/// How one approved key fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The recheck found it no longer qualifies; nothing was done to it.
    Skipped,
    Failed(String),
}

/// Run every effect of the action; the report of exactly what was done.
pub async fn run(target: &Target, a: &Approved) -> Result<String, ApplyError> {
    let mut lines = Vec::new();
    let mut done = 0;
    let mut failed = 0;
    for e in &a.snapshot.def.effects {
        let Some(table) = a.plan.table(&e.plan) else {
            return Err(ApplyError::Failed(format!(
                "the plan has no step `{}`; nothing was done",
                e.plan
            )));
        };
        let mut outcomes = Vec::new();
        for key in table.keys() {
            let outcome = one(target, a, e, table, &key).await;
            match &outcome {
                Outcome::Done => done += 1,
                Outcome::Failed(_) => failed += 1,
                Outcome::Skipped => {}
            }
            outcomes.push((key, outcome));
        }
        lines.push(report(&e.title, &outcomes));
    }
    let text = lines.join("\n");
    if done == 0 && failed > 0 {
        return Err(ApplyError::Failed(text));
    }
    Ok(text)
}

async fn one(target: &Target, a: &Approved, e: &EffectDef, table: &PlanTable, key: &str) -> Outcome {
    let timeout = a.snapshot.def.apply_timeout_ms;
    let attempt = async {
        let mut conn = target.acquire().await?;
        // A new transaction per key: a fresh view of pg_stat_activity and
        // its own statement timeout.
        let mut tx = conn.begin().await.map_err(|e| crate::targets::classify(&e, timeout))?;
        let recheck = a.params(&e.recheck_params, Some((key, table)));
        if query_on(&mut tx, &e.recheck, &recheck, timeout, 1).await?.total == 0 {
            return Ok(Outcome::Skipped);
        }
        let run = a.params(&e.run_params, Some((key, table)));
        let result = query_on(&mut tx, &e.run, &run, timeout, 1).await?;
        let _ = tx.commit().await;
        let worked = result.rows.first().and_then(|r| r.first()).map(String::as_str);
        Ok::<_, StepError>(match worked {
            Some("true") => Outcome::Done,
            Some(other) => Outcome::Failed(format!("returned {other}")),
            None => Outcome::Failed("returned nothing".into()),
        })
    };
    attempt.await.unwrap_or_else(|e| Outcome::Failed(e.to_string()))
}

/// One line per effect: what was done, skipped and failed, naming each key.
pub fn report(title: &str, outcomes: &[(String, Outcome)]) -> String {
    let list = |want: fn(&Outcome) -> bool| {
        outcomes
            .iter()
            .filter(|(_, o)| want(o))
            .map(|(k, o)| match o {
                Outcome::Failed(why) => format!("{} ({})", visible(k), visible(why)),
                _ => visible(k),
            })
            .collect::<Vec<_>>()
    };
    let done = list(|o| *o == Outcome::Done);
    let skipped = list(|o| *o == Outcome::Skipped);
    let failed = list(|o| matches!(o, Outcome::Failed(_)));
    let mut parts = vec![format!("done for {}: {}", done.len(), or_none(&done))];
    if !skipped.is_empty() {
        parts.push(format!(
            "skipped {} that no longer qualified: {}",
            skipped.len(),
            skipped.join(", ")
        ));
    }
    if !failed.is_empty() {
        parts.push(format!("failed for {}: {}", failed.len(), failed.join(", ")));
    }
    format!("{title} — {}", parts.join("; "))
}

fn or_none(v: &[String]) -> String {
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_every_key() {
        let r = report(
            "Terminate idle sessions",
            &[
                ("101".into(), Outcome::Done),
                ("102".into(), Outcome::Skipped),
                ("103".into(), Outcome::Failed("must be a superuser".into())),
                ("104".into(), Outcome::Done),
            ],
        );
        assert_eq!(
            r,
            "Terminate idle sessions — done for 2: 101, 104; skipped 1 that no longer qualified: 102; failed for 1: 103 (must be a superuser)"
        );
        assert_eq!(report("x", &[]), "x — done for 0: none");
    }
}
