//! The postmortem draft of an incident: `GET` downloads it as Markdown;
//! `POST` (level l2, the session's CSRF token) posts the same text to the
//! incident's thread through the outbox, recorded on the timeline in the
//! same transaction.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::login::check_csrf;
use crate::config::Level;
use crate::console::postmortem::{EVENTS_MAX, Target, markdown};
use crate::console::queries;
use crate::console::{ConsoleError, Viewer, path_id};
use crate::outbox::{self, Outgoing};
use crate::slack::ids::ChannelId;
use crate::slack::text::{escape, fit};
use crate::state::AppState;

/// Slack takes up to 40,000 characters in a message's text.
const SLACK_TEXT_MAX: usize = 39_000;

/// The draft as `viewer` may read it: below the audit level, approvals'
/// events without their detail.
async fn draft(
    state: &AppState,
    viewer: &Viewer,
    id: i64,
    to: Target,
) -> Result<(queries::IncidentRow, String), ConsoleError> {
    let pool = &state.store.pool;
    let row = queries::incident(pool, id).await?.ok_or(ConsoleError::NotFound)?;
    let mut events = queries::timeline_page(pool, id, 0, EVENTS_MAX).await?;
    if !viewer.can_audit {
        queries::EventRow::hide_approval_detail(&mut events, state.config.console.audit_level);
    }
    let total = queries::timeline_count(pool, id).await?;
    let text = markdown(&row, &events, total, state.clock.now_ms(), to);
    Ok((row, text))
}

pub async fn download(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let id = path_id(&id)?;
    let (_, text) = draft(&state, &viewer, id, Target::File).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/markdown; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"incident-{id}-postmortem.md\""),
            ),
        ],
        text,
    )
        .into_response())
}

pub async fn post_to_thread(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, ConsoleError> {
    check_csrf(&viewer, &form)?;
    viewer.require(Level::L2, "Posting to the incident's thread")?;
    let id = path_id(&id)?;
    let (row, text) = draft(&state, &viewer, id, Target::Slack).await?;
    let channel = ChannelId::parse(&row.incident.channel)
        .map_err(|e| ConsoleError::Internal(anyhow::anyhow!("stored channel: {e}")))?;
    let now = state.clock.now_ms();
    let user = viewer.session.user.as_str();
    let mut tx = state.store.begin_for_person().await?;
    let msg = Outgoing::thread(id, &channel, outbox::text_content(fit(escape(&text), SLACK_TEXT_MAX)));
    outbox::enqueue(&mut tx, &[msg], None, now).await?;
    crate::store::timeline::add_event(
        &mut tx,
        id,
        now,
        user,
        "postmortem_posted",
        "Postmortem draft posted to the thread from the console",
    )
    .await?;
    state.outbox.commit_person(tx).await?;
    tracing::info!(incident.id = id, slack.user_id = %user, "postmortem draft posted from the console");
    Ok((
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/console/incidents/{id}?posted=1"))],
    )
        .into_response())
}
