//! `GET /console/metrics`: incidents declared per week and their mean time
//! to acknowledge (MTTA) and to resolve (MTTR), over the last 12 weeks
//! (weeks start on Monday, UTC), as SVG bars and a table.

use std::sync::Arc;

use axum::extract::State;
use chrono::{Datelike, Duration, TimeZone, Utc};
use maud::html;

use super::layout::{self, Page};
use crate::console::queries::{self, Week};
use crate::console::svg::{self, Bar};
use crate::console::{ConsoleError, Viewer};
use crate::incident::model::human_duration;
use crate::state::AppState;

pub const WEEKS: i64 = 12;
const WEEK_MS: i64 = 7 * 86_400_000;

/// Monday 00:00 UTC of the week `WEEKS - 1` weeks before `now`'s.
pub fn first_monday(now: i64) -> i64 {
    let today = Utc.timestamp_millis_opt(now).single().unwrap_or_default().date_naive();
    let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    let start = monday - Duration::weeks(WEEKS - 1);
    start
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp_millis()
}

/// Every week of the window, empty ones included.
pub fn fill(rows: &[Week]) -> Vec<Week> {
    (0..WEEKS)
        .map(|i| {
            rows.iter().find(|w| w.index == i).copied().unwrap_or(Week {
                index: i,
                ..Week::default()
            })
        })
        .collect()
}

fn mean(sum: i64, n: i64) -> Option<i64> {
    (n > 0).then(|| sum / n)
}

pub async fn show(State(state): State<Arc<AppState>>, viewer: Viewer) -> Result<Page, ConsoleError> {
    let since = first_monday(state.clock.now_ms());
    let weeks = fill(&queries::weeks(&state.store.pool, since).await?);
    let label = |w: &Week| {
        Utc.timestamp_millis_opt(since + w.index * WEEK_MS)
            .single()
            .map(|d| d.format("%m-%d").to_string())
            .unwrap_or_default()
    };
    let minutes = |ms: Option<i64>| ms.map_or(0.0, |m| m as f64 / 60_000.0);
    let shown = |ms: Option<i64>| ms.map(human_duration).unwrap_or_else(|| "—".into());
    let count: Vec<Bar> = weeks
        .iter()
        .map(|w| Bar {
            label: label(w),
            value: w.declared as f64,
            shown: w.declared.to_string(),
        })
        .collect();
    let mtta: Vec<Bar> = weeks
        .iter()
        .map(|w| {
            let m = mean(w.ack_sum, w.acked);
            Bar {
                label: label(w),
                value: minutes(m),
                shown: shown(m),
            }
        })
        .collect();
    let mttr: Vec<Bar> = weeks
        .iter()
        .map(|w| {
            let m = mean(w.resolve_sum, w.resolved);
            Bar {
                label: label(w),
                value: minutes(m),
                shown: shown(m),
            }
        })
        .collect();
    let total = |f: fn(&Week) -> i64| weeks.iter().map(f).sum::<i64>();
    let body = html! {
        dl.facts {
            dt { "Incidents" } dd { (total(|w| w.declared)) " in " (WEEKS) " weeks" }
            dt { "MTTA" } dd { (shown(mean(total(|w| w.ack_sum), total(|w| w.acked)))) }
            dt { "MTTR" } dd { (shown(mean(total(|w| w.resolve_sum), total(|w| w.resolved)))) }
        }
        h2 { "Incidents per week" }
        (svg::bars("Incidents declared per week", "incidents", &count))
        h2 { "Mean time to acknowledge" }
        (svg::bars("MTTA per week", "minutes", &mtta))
        h2 { "Mean time to resolve" }
        (svg::bars("MTTR per week", "minutes", &mttr))
        table.weeks {
            thead { tr { th { "Week of" } th { "Declared" } th { "MTTA" } th { "MTTR" } } }
            tbody { @for (i, w) in weeks.iter().enumerate() { tr {
                td { (label(w)) } td { (w.declared) } td { (mtta[i].shown) } td { (mttr[i].shown) }
            } } }
        }
    };
    Ok(layout::page(&viewer, "Metrics", body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_starts_on_a_monday_eleven_weeks_back() {
        // Thursday 2026-01-15 12:00 UTC → Monday 2025-10-27.
        let now = Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap().timestamp_millis();
        let want = Utc.with_ymd_and_hms(2025, 10, 27, 0, 0, 0).unwrap().timestamp_millis();
        assert_eq!(first_monday(now), want);
    }

    #[test]
    fn empty_weeks_are_filled() {
        let w = fill(&[Week {
            index: 3,
            declared: 2,
            ..Week::default()
        }]);
        assert_eq!(w.len(), 12);
        assert_eq!(w[3].declared, 2);
        assert_eq!(w[0].declared, 0);
        assert_eq!(mean(10, 0), None);
        assert_eq!(mean(10, 2), Some(5));
    }
}
