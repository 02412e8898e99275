//! `GET /console/incidents/{id}`: the facts, the timeline as a chart on a
//! time axis and as a table (100 events a page), the approvals it caused,
//! and the postmortem draft (download; post to the thread from level l2).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use maud::{Markup, html};

use super::layout::{self, Page};
use super::when;
use crate::config::Level;
use crate::console::filters::Paging;
use crate::console::queries::{self, ApprovalRow, EventRow, IncidentRow};
use crate::console::svg::{self, Mark};
use crate::console::{ConsoleError, Viewer, path_id};
use crate::incident::model::human_duration;
use crate::state::AppState;

pub const PAGE: i64 = 100;
/// Timeline pages one can ask for (a million events); bounds the OFFSET.
pub const PAGES_MAX: i64 = 10_000;
/// Events drawn on the chart; a longer timeline is drawn up to here.
pub const CHART_MAX: i64 = 2000;

pub async fn show(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Page, ConsoleError> {
    let id = path_id(&id)?;
    let pairs = super::query_pairs(q)?;
    let paging = Paging::parse(&pairs, false, PAGES_MAX).map_err(ConsoleError::BadInput)?;
    let posted = pairs.iter().any(|(k, v)| k == "posted" && v == "1");
    let pool = &state.store.pool;
    let row = queries::incident(pool, id).await?.ok_or(ConsoleError::NotFound)?;
    let total = queries::timeline_count(pool, id).await?;
    let mut chart = queries::timeline_page(pool, id, 0, CHART_MAX).await?;
    let mut page = queries::timeline_page(pool, id, (paging.page - 1) * PAGE, PAGE).await?;
    if !viewer.can_audit {
        let audit = state.config.console.audit_level;
        EventRow::hide_approval_detail(&mut chart, audit);
        EventRow::hide_approval_detail(&mut page, audit);
    }
    let approvals = queries::approvals_of(pool, id).await?;
    let now = state.clock.now_ms();
    let i = &row.incident;
    let end = i
        .resolved_at
        .unwrap_or(now)
        .max(chart.last().map_or(0, |e| e.occurred_at));
    let marks: Vec<Mark<'_>> = chart
        .iter()
        .map(|e| Mark {
            at: e.occurred_at,
            kind: &e.kind,
            text: &e.text,
        })
        .collect();
    let body = html! {
        @if posted { p.notice { "The postmortem draft is queued for the incident's thread." } }
        (facts(&row, now))
        (postmortem_actions(&viewer, id))
        h2 { "Timeline" }
        @if total > CHART_MAX { p.muted { "The chart shows the first " (CHART_MAX) " of " (total) " events." } }
        (svg::timeline(i.declared_at, end, &marks))
        (events_table(&page, total, paging.page, id))
        h2 { "Approvals" }
        (approvals_table(&approvals, viewer.can_audit))
    };
    Ok(layout::page(&viewer, &format!("#{} {}", i.id, i.title), body))
}

fn facts(row: &IncidentRow, now: i64) -> Markup {
    let i = &row.incident;
    html! {
        dl.facts {
            dt { "Severity" } dd { span class=(format!("sev {}", i.severity.as_str())) { (i.severity.as_str().to_uppercase()) } " " (i.severity.label()) }
            dt { "State" } dd { (i.state.as_str()) }
            dt { "Service" } dd { (row.service.as_deref().unwrap_or("—")) }
            dt { "Commander" } dd { (i.commander) }
            dt { "Declared" } dd { (when(i.declared_at)) " by " (i.declared_by) }
            dt { "Acknowledged" } dd { @match (i.acknowledged_at, &i.acknowledged_by) {
                (Some(a), Some(by)) => { "after " (human_duration(a - i.declared_at)) " by " (by) },
                _ => "not yet",
            } }
            dt { "Resolved" } dd { @match (i.resolved_at, &i.resolved_by) {
                (Some(r), Some(by)) => { "after " (human_duration(r - i.declared_at)) " by " (by) },
                _ => { "open for " (human_duration(now - i.declared_at)) },
            } }
            @if let Some(s) = &i.status_text { dt { "Status" } dd { (s) } }
            @if let Some(s) = &i.summary { dt { "Summary" } dd { (s) } }
        }
    }
}

fn postmortem_actions(viewer: &Viewer, id: i64) -> Markup {
    html! {
        div.actions {
            a.button #postmortem-download href=(format!("/console/incidents/{id}/postmortem")) { "Download postmortem draft (Markdown)" }
            @if viewer.level >= Level::L2 {
                form method="post" action=(format!("/console/incidents/{id}/postmortem")) {
                    input type="hidden" name="csrf" value=(viewer.session.csrf);
                    button type="submit" { "Post the draft to the incident's thread" }
                }
            }
        }
    }
}

fn events_table(events: &[EventRow], total: i64, page: i64, id: i64) -> Markup {
    let pages = ((total + PAGE - 1) / PAGE).max(1);
    html! {
        table.timeline {
            thead { tr { th { "Time (UTC)" } th { "Who" } th { "Kind" } th { "What" } } }
            tbody {
                @for e in events {
                    tr { td.nowrap { (when(e.occurred_at)) } td { (e.actor) } td { (e.kind) } td { (e.text) } }
                }
            }
        }
        nav.pager {
            span { "Page " (page) " of " (pages) " · " (total) " events" }
            @if page > 1 { a href=(format!("/console/incidents/{id}?page={}", page - 1)) { "← Earlier" } }
            @if page < pages { a.next href=(format!("/console/incidents/{id}?page={}", page + 1)) { "Later →" } }
        }
    }
}

fn approvals_table(rows: &[ApprovalRow], can_audit: bool) -> Markup {
    html! {
        @if rows.is_empty() {
            p.empty { "No approvals were requested for this incident." }
        } @else {
            table.approvals {
                thead { tr { th { "#" } th { "Action" } th { "Requested by" } th { "State" } th { "Requested (UTC)" } } }
                tbody {
                    @for r in rows {
                        tr {
                            td { @if can_audit { a href=(format!("/console/approvals/{}", r.id)) { "#" (r.id) } } @else { "#" (r.id) } }
                            td { (r.command) " " (r.name) }
                            td { (r.requested_by) }
                            td { (r.state) }
                            td { (when(r.requested_at)) }
                        }
                    }
                }
            }
        }
    }
}
