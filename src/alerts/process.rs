//! Turns inbox payloads into Slack messages and incidents, in arrival order,
//! one instance at a time (the `alerts` lease). Each payload is handled in
//! one state-store transaction that also marks it processed, so a payload
//! delivered once is handled once, and one delivered twice only counts.
//!
//! A payload is split into its alert groups (`group.rs`); a group's alerts
//! go together (`batch.rs`), an alert without a group alone (`single.rs`).
//! The route's diagnostics are claimed in the same transaction and started
//! after it commits, within the bot-wide budget (`diagnose::auto`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use super::normalize::Alert;
use super::{batch, group, single};
use crate::diagnose::auto;
use crate::state::AppState;
use crate::store::lease;

const LEASE: &str = "alerts";
const LEASE_MS: i64 = 15_000;
const BATCH: i64 = 100;

pub async fn run(state: Arc<AppState>, cancel: CancellationToken) {
    let owner = uuid::Uuid::new_v4().to_string();
    let mut failures = HashMap::new();
    loop {
        match drain(&state, &owner, &mut failures).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = ?e, "alert processing failed; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = state.alerts_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    let _ = lease::release(&state.store, LEASE, &owner).await;
}

/// A payload that fails this many times in a row is set aside (marked with
/// its error) so one bad payload cannot stop every alert behind it.
const MAX_FAILURES: u32 = 3;

/// Process what is waiting; true when a full batch was handled.
pub async fn drain(state: &Arc<AppState>, owner: &str, failures: &mut HashMap<i64, u32>) -> anyhow::Result<bool> {
    let held = lease::acquire(&state.store, LEASE, owner, state.clock.now_ms(), LEASE_MS)
        .await
        .context("taking the alerts lease")?;
    if !held {
        return Ok(false);
    }
    let rows =
        sqlx::query("SELECT id, alerts, received_at FROM alert_inbox WHERE processed_at IS NULL ORDER BY id LIMIT $1")
            .bind(BATCH)
            .fetch_all(&state.store.pool)
            .await
            .context("reading the alert inbox")?;
    let full = rows.len() as i64 == BATCH;
    for r in rows {
        let id: i64 = r.try_get("id")?;
        let payload: String = r.try_get("alerts")?;
        let received_at: i64 = r.try_get("received_at")?;
        match process_one(state, owner, id, &payload, received_at).await {
            Ok(true) => {
                failures.remove(&id);
            }
            // Another replica holds the lease now: it goes on, in order.
            Ok(false) => return Ok(false),
            Err(e) => {
                let n = failures.entry(id).or_insert(0);
                *n += 1;
                if *n < MAX_FAILURES {
                    // Keep order: later payloads wait for this one.
                    return Err(e.context(format!("alert payload {id}, attempt {n}")));
                }
                tracing::error!(inbox.id = id, error = ?e, "alert payload set aside after repeated failures");
                state.metrics.alert("any", "failed");
                sqlx::query(
                    "UPDATE alert_inbox SET processed_at = $1, error = $2 WHERE id = $3 AND processed_at IS NULL",
                )
                .bind(state.clock.now_ms())
                .bind(format!("{e:#}").chars().take(500).collect::<String>())
                .bind(id)
                .execute(&state.store.writer)
                .await?;
                failures.remove(&id);
            }
        }
    }
    Ok(full)
}

/// One payload in one transaction; false when this replica no longer holds
/// the alerts lease (a long batch outlived it), and nothing was done.
async fn process_one(
    state: &Arc<AppState>,
    owner: &str,
    id: i64,
    payload: &str,
    received_at: i64,
) -> anyhow::Result<bool> {
    let alerts: Vec<Alert> = serde_json::from_str(payload)?;
    let now = state.clock.now_ms();
    let mut tx = state.store.begin_in_background().await?;
    // Renewed in the transaction: two replicas never group at once, which
    // could give one alert group two incidents.
    if !lease::renew_in(&mut tx, LEASE, owner, now, LEASE_MS).await? {
        return Ok(false);
    }
    // Another instance that held the lease before us may have done it.
    let claimed = sqlx::query("UPDATE alert_inbox SET processed_at = $1 WHERE id = $2 AND processed_at IS NULL")
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if claimed.rows_affected() != 1 {
        return Ok(true);
    }
    let mut wanted = Vec::new();
    for b in group::partition(&state.config.alerts.routes, &alerts) {
        match &b.key {
            Some(key) => wanted.extend(batch::handle(&mut tx, state, key, &b.alerts, now, received_at).await?),
            None => {
                for a in b.alerts {
                    wanted.extend(single::handle(&mut tx, state, a, None, now, received_at).await?);
                }
            }
        }
    }
    // Claimed in this transaction: however many alerts asked, a diagnostic
    // runs once per incident per window.
    let mut diagnose = Vec::new();
    for d in wanted {
        diagnose.extend(auto::claim(&mut tx, state, d, now).await?);
    }
    state.outbox.commit(tx).await?;
    for d in diagnose {
        auto::start(state, d).await;
    }
    Ok(true)
}
