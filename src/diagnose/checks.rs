//! Steps that are not SQL: the configured HTTP health endpoints, and what
//! row-level security hides from each target's role.

use std::time::Duration;

use super::run::Env;
use super::verdict::Verdict;
use crate::targets::rls::{self, Visibility};
use crate::targets::{StepError, Table};

/// How long one target may take to say what its role sees.
const RLS_SURVEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Hidden tables named per target before "and N more".
const NAMED: usize = 5;

/// The runbooks' health-check script: every configured endpoint must answer
/// 200, within its latency budget.
pub async fn http_health(env: &Env<'_>) -> (Table, Verdict) {
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

/// Every configured target's role: does it bypass row-level security, and
/// if not, which tables the catalog reads hide rows from it. Blind is a
/// warning (its diagnostics could not check those tables); a target that
/// cannot be asked could not check.
pub async fn rls_visibility(env: &Env<'_>) -> (Table, Verdict) {
    let mut table = Table {
        columns: vec![
            "target".into(),
            "role".into(),
            "bypasses_rls".into(),
            "rows_hidden_on".into(),
        ],
        ..Default::default()
    };
    let mut verdict = Verdict::Ok;
    for (name, seen) in rls::survey(env.targets, env.catalog_reads, RLS_SURVEY_TIMEOUT).await {
        let (row, v) = rls_row(name, &seen);
        verdict = verdict.max(v);
        table.rows.push(row);
    }
    table.total = table.rows.len() as i64;
    (table, verdict)
}

fn rls_row(target: &str, seen: &Result<Visibility, StepError>) -> (Vec<String>, Verdict) {
    let v = match seen {
        Ok(v) => v,
        Err(e) => {
            let row = vec![
                target.into(),
                "?".into(),
                "unknown".into(),
                format!("could not ask: {e}"),
            ];
            return (row, Verdict::CouldNotCheck);
        }
    };
    let bypass = match (v.superuser, v.bypassrls) {
        (true, _) => "superuser",
        (false, true) => "BYPASSRLS",
        (false, false) => "no",
    };
    let hidden = v.hidden();
    let (shown, verdict) = if hidden.is_empty() {
        ("none".to_string(), Verdict::Ok)
    } else {
        (rls::some_of(&hidden, NAMED), Verdict::Warning)
    };
    (vec![target.into(), v.role.clone(), bypass.into(), shown], verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::relations::Relation;

    #[test]
    fn a_blind_role_is_a_warning_and_an_unknown_one_could_not_check() {
        let mut v = Visibility {
            role: "diag".into(),
            superuser: false,
            bypassrls: false,
            hidden: Default::default(),
        };
        assert_eq!(
            rls_row("p", &Ok(v.clone())),
            (vec!["p".into(), "diag".into(), "no".into(), "none".into()], Verdict::Ok)
        );
        v.hidden
            .insert(Relation::new(Some("auth"), "users"), "auth.users".into());
        let (row, verdict) = rls_row("p", &Ok(v));
        assert_eq!((row[3].as_str(), verdict), ("auth.users", Verdict::Warning));
        let (row, verdict) = rls_row("p", &Err(StepError::Unreachable("connection refused".into())));
        assert_eq!(row[3], "could not ask: unreachable: connection refused");
        assert_eq!(verdict, Verdict::CouldNotCheck);
    }
}
