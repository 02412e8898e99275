//! `GET /console/incidents`: newest first, filtered by severity, state,
//! service and declaration date, 50 a page by keyset (`before` = the last
//! id shown), so a deep page costs what the first does.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use maud::{Markup, html};

use super::layout::{self, Page};
use super::when;
use crate::console::filters::IncidentFilter;
use crate::console::queries::{self, IncidentRow};
use crate::console::{ConsoleError, Viewer};
use crate::incident::model::{State as IncidentState, human_duration};
use crate::severity::Severity;
use crate::state::AppState;

pub const PAGE: i64 = 50;

pub async fn list(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    RawQuery(q): RawQuery,
) -> Result<Page, ConsoleError> {
    let filter = IncidentFilter::parse(&super::query_pairs(q)?).map_err(ConsoleError::BadInput)?;
    let mut rows = queries::incidents(&state.store.pool, &filter, PAGE + 1).await?;
    let more = rows.len() as i64 > PAGE;
    rows.truncate(PAGE as usize);
    let now = state.clock.now_ms();
    let next = more.then(|| rows.last().map(|r| r.incident.id)).flatten();
    let body = html! {
        (form(&filter))
        @if rows.is_empty() {
            p.empty { "No incidents match." }
        } @else {
            table.incidents {
                thead { tr { th { "#" } th { "Severity" } th { "Title" } th { "State" } th { "Service" }
                    th { "Declared (UTC)" } th { "Acknowledged after" } th { "Open for" } } }
                tbody { @for r in &rows { (row(r, now)) } }
            }
        }
        nav.pager {
            @if filter.before.is_some() {
                a href=(format!("/console/incidents?{}", filter.query(None))) { "← Newest" }
            }
            @if let Some(id) = next {
                a.next href=(format!("/console/incidents?{}", filter.query(Some(id)))) { "Older →" }
            }
        }
    };
    Ok(layout::page(&viewer, "Incidents", body))
}

fn row(r: &IncidentRow, now: i64) -> Markup {
    let i = &r.incident;
    let open = i.resolved_at.unwrap_or(now) - i.declared_at;
    html! {
        tr {
            td { a href=(format!("/console/incidents/{}", i.id)) { "#" (i.id) } }
            td { span class=(format!("sev {}", i.severity.as_str())) { (i.severity.as_str().to_uppercase()) } }
            td { a href=(format!("/console/incidents/{}", i.id)) { (i.title) } }
            td { (i.state.as_str()) }
            td { (r.service.as_deref().unwrap_or("—")) }
            td { (when(i.declared_at)) }
            td { (i.acknowledged_at.map(|a| human_duration(a - i.declared_at)).unwrap_or_else(|| "—".into())) }
            td { (human_duration(open)) }
        }
    }
}

fn form(f: &IncidentFilter) -> Markup {
    html! {
        form.filters method="get" action="/console/incidents" {
            label { "Severity " select name="severity" {
                option value="" { "any" }
                @for s in Severity::ALL {
                    option value=(s.as_str()) selected[f.severity == Some(s)] { (s.as_str().to_uppercase()) }
                }
            } }
            label { "State " select name="state" {
                option value="" { "any" }
                @for s in [IncidentState::Declared, IncidentState::Acknowledged, IncidentState::Resolved] {
                    option value=(s.as_str()) selected[f.state == Some(s)] { (s.as_str()) }
                }
            } }
            label { "Service " input type="text" name="service" maxlength="100" value=(f.service.as_deref().unwrap_or("")); }
            label { "From " input type="date" name="from" value=(f.from_text()); }
            label { "To " input type="date" name="to" value=(f.to_text()); }
            button type="submit" { "Filter" }
        }
    }
}
