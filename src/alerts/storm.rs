//! Storm mode: a route's declare rate limit. Beyond `storm.incidents`
//! incidents declared by one route in `storm.minutes`, the route's new
//! groups attach to its newest open incident instead of opening more, and
//! that incident's thread is told so once. Counting happens in the alert
//! transaction, which one instance runs at a time (the `alerts` lease).

use sqlx::AnyConnection;

use crate::config::StormLimit;
use crate::incident::model::{Incident, State};
use crate::incident::store as incidents;

/// Whether a route whose recent incidents were declared at `declared_at`
/// is over its limit at `now`.
pub fn over(declared_at: &[i64], now: i64, limit: &StormLimit) -> bool {
    let recent = declared_at.iter().filter(|t| now - **t < limit.window_ms()).count();
    recent >= limit.incidents as usize
}

/// When the route's most recent incidents were declared (as many as its
/// limit: that is all `over` needs).
pub async fn recent(tx: &mut AnyConnection, route: &str, limit: &StormLimit) -> anyhow::Result<Vec<i64>> {
    let at = sqlx::query_scalar(
        "SELECT declared_at FROM alert_declares WHERE route = $1 ORDER BY declared_at DESC LIMIT $2",
    )
    .bind(route)
    .bind(i64::from(limit.incidents))
    .fetch_all(&mut *tx)
    .await?;
    Ok(at)
}

/// Remember that `route` declared `incident`.
pub async fn record(tx: &mut AnyConnection, route: &str, incident: i64, now: i64) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO alert_declares (incident_id, route, declared_at) VALUES ($1, $2, $3)")
        .bind(incident)
        .bind(route)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The route's newest incident that is still open.
pub async fn newest_open(tx: &mut AnyConnection, route: &str) -> anyhow::Result<Option<Incident>> {
    let id: Option<i64> = sqlx::query_scalar(
        "SELECT d.incident_id FROM alert_declares d JOIN incidents i ON i.id = d.incident_id
         WHERE d.route = $1 AND i.state <> 'resolved' ORDER BY d.declared_at DESC, d.incident_id DESC LIMIT 1",
    )
    .bind(route)
    .fetch_optional(&mut *tx)
    .await?;
    match id {
        Some(id) => Ok(incidents::get(tx, id).await?.filter(|i| i.state != State::Resolved)),
        None => Ok(None),
    }
}

/// True the first time it is asked for `incident`: its thread is told once.
pub async fn first_notice(tx: &mut AnyConnection, incident: i64, now: i64) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE alert_declares SET storm_noticed_at = $1 WHERE incident_id = $2 AND storm_noticed_at IS NULL",
    )
    .bind(now)
    .bind(incident)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What the incident's thread is told.
pub fn notice(route: &str, limit: &StormLimit) -> String {
    format!(
        ":ocean: *Storm mode*: alert route `{route}` has declared {} incidents in the last {} min, its limit. \
         New alert groups from it are attached to this incident instead of opening more; \
         `/incident list` shows the open ones.",
        limit.incidents, limit.minutes
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_only_declares_inside_the_window() {
        let limit = StormLimit {
            incidents: 2,
            minutes: 10,
        };
        let min = 60_000;
        assert!(!over(&[], 0, &limit));
        assert!(!over(&[0], 0, &limit));
        assert!(over(&[5 * min, 0], 9 * min, &limit));
        // The first declare leaves the window at 10 minutes.
        assert!(!over(&[5 * min, 0], 10 * min, &limit));
        assert!(over(&[9 * min, 5 * min, 0], 10 * min, &limit));
    }

    #[test]
    fn the_notice_names_the_route_and_its_limit() {
        let n = notice("routes[0]", &StormLimit::default());
        assert!(
            n.contains("`routes[0]`") && n.contains("3 incidents in the last 10 min"),
            "{n}"
        );
    }
}
