//! The approvals audit (level `console.audit_level`, l3 by default): every
//! request, searchable; and one request in full: who asked, who approved,
//! the exact plan rows and their hash, what ran (the stored definition),
//! how it was verified, the result and its audit trail. Connection URLs
//! are never shown: targets by name, deploy hooks by service and URL hash.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use maud::{Markup, html};

use super::layout::{self, Page};
use super::when;
use crate::approval::plan::{Plan, PlanTable};
use crate::approval::snapshot::Snapshot;
use crate::approval::store::{self as requests, Request};
use crate::console::filters::Paging;
use crate::console::queries::{self, AuditRow, Vote};
use crate::console::{ConsoleError, Viewer, path_id};
use crate::state::AppState;

pub const PAGE: i64 = 50;
/// The search pages one can walk to: the newest 10,000 requests (a search
/// that narrows finds older ones); bounds the OFFSET a request can ask for.
pub const PAGES_MAX: i64 = 200;
/// Plan rows shown per table.
const ROWS_MAX: usize = 200;

pub async fn list(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    RawQuery(q): RawQuery,
) -> Result<Page, ConsoleError> {
    viewer.require_audit(&state)?;
    let paging = Paging::parse(&super::query_pairs(q)?, true, PAGES_MAX).map_err(ConsoleError::BadInput)?;
    let q = paging.q.as_deref();
    let mut rows = queries::approvals(&state.store.pool, q, (paging.page - 1) * PAGE, PAGE + 1).await?;
    let more = rows.len() as i64 > PAGE && paging.page < PAGES_MAX;
    rows.truncate(PAGE as usize);
    let link = |page: i64| {
        let mut pairs = vec![("page", page.to_string())];
        if let Some(q) = q {
            pairs.push(("q", q.to_string()));
        }
        format!(
            "/console/approvals?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    };
    let body = html! {
        form.filters method="get" action="/console/approvals" {
            label { "Search " input type="search" name="q" maxlength="100" value=(q.unwrap_or(""))
                placeholder="requester, approver, command, plan row, hash, SQL, result"; }
            button type="submit" { "Search" }
        }
        @if rows.is_empty() { p.empty { "No approval requests match." } } @else {
            table.approvals {
                thead { tr { th { "#" } th { "Action" } th { "Target" } th { "Incident" } th { "Requested by" }
                    th { "Requested (UTC)" } th { "State" } th { "Decided by" } th { "Plan hash" } } }
                tbody { @for r in &rows { tr {
                    td { a href=(format!("/console/approvals/{}", r.id)) { "#" (r.id) } }
                    td { (r.command) " " (r.name) }
                    td { (r.target) }
                    td { @if let Some(i) = r.incident_id { a href=(format!("/console/incidents/{i}")) { "#" (i) } } @else { "—" } }
                    td { (r.requested_by) }
                    td.nowrap { (when(r.requested_at)) }
                    td { (r.state) }
                    td { (r.decided_by.as_deref().unwrap_or("—")) }
                    td { code { (r.plan_hash.chars().take(12).collect::<String>()) } }
                } } }
            }
        }
        nav.pager {
            @if paging.page > 1 { a href=(link(paging.page - 1)) { "← Newer" } }
            @if more { a.next href=(link(paging.page + 1)) { "Older →" } }
        }
    };
    Ok(layout::page(&viewer, "Approvals audit", body))
}

pub async fn show(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Page, ConsoleError> {
    viewer.require_audit(&state)?;
    let id = path_id(&id)?;
    let r = {
        let mut conn = state.store.pool.acquire().await?;
        requests::get(&mut conn, id).await?.ok_or(ConsoleError::NotFound)?
    };
    let votes = queries::votes(&state.store.pool, id).await?;
    let audit = queries::audit_of(&state.store.pool, id).await?;
    // Stored by this bot; a row that does not parse is shown as missing.
    let plan: Option<Plan> = serde_json::from_str(&r.plan).ok();
    let snapshot: Option<Snapshot> = r.snapshot.as_deref().and_then(|s| serde_json::from_str(s).ok());
    let body = html! {
        (facts(&r, &votes))
        h2 { "Plan" }
        p { "Hash " code #plan-hash { (r.plan_hash) } }
        @match &plan {
            Some(p) => { p { (p.touched) " rows to change." } @for t in &p.tables { (plan_table(t)) } },
            None => p.empty { "The stored plan could not be read." },
        }
        h2 { "What ran" }
        @match &snapshot { Some(s) => (what_ran(s)), None => p.empty { "No stored definition." } }
        h2 { "Result" }
        pre.result { (r.result.as_deref().unwrap_or("No result yet.")) }
        h2 { "Audit trail" }
        (audit_table(&audit))
    };
    Ok(layout::page(
        &viewer,
        &format!("Approval #{} {}", r.id, r.label()),
        body,
    ))
}

fn facts(r: &Request, votes: &[Vote]) -> Markup {
    html! {
        dl.facts {
            dt { "Action" } dd { code { (r.label()) } }
            dt { "Target" } dd { (r.target) }
            dt { "Incident" } dd { @if let Some(i) = r.incident_id { a href=(format!("/console/incidents/{i}")) { "#" (i) } } @else { "—" } }
            dt { "Requested" } dd { (when(r.requested_at)) " by " (r.requested_by) }
            dt { "Needs" } dd { (r.approvals_needed) " approval(s) at level " (r.approver_level) }
            dt { "Approvers" } dd id="approvers" {
                @if votes.is_empty() { "none" }
                @for v in votes { span.vote { (v.approver) " at " (when(v.at)) } " " }
            }
            dt { "State" } dd id="state" { (r.state.as_str()) }
            @if let Some(by) = &r.decided_by { dt { "Decided by" } dd { (by) } }
        }
    }
}

fn plan_table(t: &PlanTable) -> Markup {
    html! {
        h3 { (t.title) @if !t.counts { " (context, not changed)" } }
        table.plan {
            thead { tr { @for c in &t.columns { th { (c) @if t.key.as_deref() == Some(c.as_str()) { " (key)" } } } } }
            tbody { @for row in t.rows.iter().take(ROWS_MAX) { tr { @for cell in row {
                td { @match cell { Some(v) => (v), None => span.null { "NULL" } } }
            } } } }
        }
        @if t.rows.len() > ROWS_MAX { p.muted { "… and " (t.rows.len() - ROWS_MAX) " more rows." } }
    }
}

/// The stored definition: apply statements, rollback script, deploy hook
/// (service, method and URL hash only), verification queries.
fn what_ran(s: &Snapshot) -> Markup {
    let def = &s.def;
    html! {
        @for (n, a) in def.apply.iter().enumerate() {
            h3 { "Apply statement " (n + 1) }
            pre.sql { (a.sql) }
        }
        @for e in &def.effects {
            h3 { "Effect: " (e.title) }
            pre.sql { (e.run) }
        }
        @if let Some(script) = &s.script {
            h3 { "Rollback script " code { (script.file) } " (sha256 " code { (script.sha256()) } ")" }
            pre.sql { (script.text) }
        }
        @if let Some(h) = &s.hook {
            h3 { "Deploy hook" }
            p { (h.method) " to the hook of service " strong { (h.service) } " (URL sha256 " code { (h.url_sha256) } ")" }
        }
        h3 { "Verification" }
        @if def.verify.is_empty() { p.empty { "No verification queries." } }
        @for v in &def.verify {
            p { strong { (v.title) } " — expects " (format!("{:?}", v.expect).to_lowercase()) }
            pre.sql { (v.sql) }
        }
    }
}

fn audit_table(rows: &[AuditRow]) -> Markup {
    html! {
        table.audit {
            thead { tr { th { "Time (UTC)" } th { "Who" } th { "Via" } th { "What" } th { "Detail" } } }
            tbody { @for a in rows { tr {
                td.nowrap { (when(a.at)) } td { (a.actor) } td { (a.via.as_deref().unwrap_or("—")) }
                td { (a.kind) } td { (a.detail) }
            } } }
        }
    }
}
