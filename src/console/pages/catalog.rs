//! `GET /console/catalog`: every command in `commands/`, its level, what
//! it needs approved, where in the runbooks it comes from, and its SQL for
//! those at `console.audit_level` (l3 by default). Targets by name only.

use std::sync::Arc;

use axum::extract::State;
use maud::{Markup, html};

use super::layout::{self, Page};
use crate::catalog::Entry;
use crate::catalog::schema::Kind;
use crate::console::{ConsoleError, Viewer};
use crate::state::AppState;

pub async fn show(State(state): State<Arc<AppState>>, viewer: Viewer) -> Result<Page, ConsoleError> {
    let entries: Vec<_> = state.catalog.all().collect();
    let body = html! {
        @if !viewer.can_audit {
            p.muted { "SQL is shown from level " (state.config.console.audit_level) "." }
        }
        table.catalog {
            thead { tr { th { "Command" } th { "Kind" } th { "Level" } th { "Approval" } th { "Summary" } th { "Runbook" } } }
            tbody { @for e in &entries { (row(e)) } }
        }
        @if viewer.can_audit {
            h2 { "SQL" }
            @for e in &entries { (sql(e)) }
        }
    };
    Ok(layout::page(&viewer, "Catalog", body))
}

fn label(e: &Entry) -> String {
    if e.def.standalone {
        e.def.command.clone()
    } else {
        format!("{} {}", e.def.command, e.def.name)
    }
}

fn row(e: &Entry) -> Markup {
    let d = &e.def;
    html! {
        tr {
            td { code { (label(e)) } }
            td { @match d.kind { Kind::Diagnostic => "diagnostic", Kind::Action => "action" } }
            td { (d.level) }
            td { @match &d.approval {
                Some(a) => { (a.approvals) " × " (a.level) ", expires in " (a.expires_minutes) " min" },
                None => "—",
            } }
            td { (d.summary) br; span.muted { (d.usage) } }
            td { (d.runbook.as_deref().unwrap_or("—")) }
        }
    }
}

fn sql(e: &Entry) -> Markup {
    let d = &e.def;
    let steps = d
        .steps
        .iter()
        .filter_map(|s| s.sql.as_ref().map(|q| (s.title.as_str(), q)));
    let plan = d.plan.iter().map(|p| (p.title.as_str(), &p.sql));
    let verify = d.verify.iter().map(|v| (v.title.as_str(), &v.sql));
    html! {
        details.sql {
            summary { code { (label(e)) } }
            @for (title, q) in steps { h4 { (title) } pre.sql { (q) } }
            @for (title, q) in plan { h4 { "Plan: " (title) } pre.sql { (q) } }
            @for (n, a) in d.apply.iter().enumerate() { h4 { "Apply " (n + 1) } pre.sql { (a.sql) } }
            @for (title, q) in verify { h4 { "Verify: " (title) } pre.sql { (q) } }
        }
    }
}
