//! Steps that are not SQL: the configured HTTP health endpoints.

use super::run::Env;
use super::verdict::Verdict;
use crate::targets::Table;

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
