//! The health poller: the runbooks' health-check script, run by the bot.
//! Every configured endpoint (non-200 or slower than its budget) and every
//! target's database ping becomes an alert through the same pipeline: a
//! failure fires, a success resolves, and dedup by endpoint keeps a long
//! outage to one message.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::normalize::{Alert, Source, Status};
use crate::state::AppState;
use crate::store::lease;

const LEASE: &str = "health";

pub async fn run(state: Arc<AppState>, cancel: CancellationToken) {
    let every = state.config.alerts.health_poll;
    if every.is_zero() || (state.config.health_checks.is_empty() && state.targets.names().next().is_none()) {
        return;
    }
    let owner = uuid::Uuid::new_v4().to_string();
    loop {
        let now = state.clock.now_ms();
        let lease_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX / 4) * 2;
        match lease::acquire(&state.store, LEASE, &owner, now, lease_ms).await {
            Ok(true) => {
                if let Err(e) = poll(&state).await {
                    tracing::warn!(error = ?e, "health poll failed");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = ?e, "health lease failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
    let _ = lease::release(&state.store, LEASE, &owner).await;
}

/// One round of probes, submitted as alerts.
pub async fn poll(state: &AppState) -> anyhow::Result<()> {
    let mut alerts = Vec::new();
    for h in &state.config.health_checks {
        let p = crate::probe::http(&state.http, h).await;
        let detail = if p.slow {
            format!(
                "answered in {:.0} ms, over its {} ms budget",
                p.latency_ms, h.max_latency_ms
            )
        } else {
            format!("answered {} in {:.0} ms", p.status, p.latency_ms)
        };
        alerts.push(alert(
            &format!("endpoint:{}", h.name),
            p.ok,
            &format!("Health check {} failing", h.name),
            detail,
            // Shown in Slack: never credentials or query tokens.
            &crate::slack::text::public_url(&h.url),
        ));
    }
    for name in state.targets.names() {
        let Some(t) = state.targets.get(name) else { continue };
        let (ok, detail) = match tokio::time::timeout(Duration::from_secs(10), t.ping()).await {
            Ok(Ok(d)) => (true, format!("answered in {:.1} ms", d.as_secs_f64() * 1e3)),
            // Every connection in use says nothing either way: neither fire nor resolve.
            Ok(Err(crate::targets::StepError::Busy(_))) => continue,
            Ok(Err(e)) => (false, e.to_string()),
            Err(_) => (false, "no answer within 10 s".into()),
        };
        if !ok {
            state.metrics.target_unreachable(name, "health_poll");
        }
        alerts.push(alert(
            &format!("database:{name}"),
            ok,
            &format!("Database {name} unreachable"),
            detail,
            "",
        ));
    }
    if !alerts.is_empty() {
        super::accept(state, Source::Health, &alerts).await?;
    }
    Ok(())
}

fn alert(fingerprint: &str, ok: bool, title: &str, detail: String, url: &str) -> Alert {
    Alert {
        source: Source::Health,
        fingerprint: fingerprint.to_string(),
        status: if ok { Status::Resolved } else { Status::Firing },
        severity: "critical".into(),
        title: title.to_string(),
        description: Some(detail),
        labels: BTreeMap::from([("check".to_string(), fingerprint.to_string())]),
        links: if url.is_empty() {
            vec![]
        } else {
            vec![("endpoint".into(), url.to_string())]
        },
        starts_at: None,
        ends_at: None,
        group: None,
    }
}
