//! `GET /console/login?token=…` shows who the link signs in and a button;
//! the button's `POST` uses the link and opens the session. Opening the
//! link signs nobody in by itself, so a link previewer (Slack's unfurler, a
//! mail scanner) fetching it cannot use it up.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout;
use crate::console::auth::{self, LinkRefused};
use crate::console::{ConsoleError, Viewer};
use crate::state::AppState;

fn refused(why: LinkRefused) -> ConsoleError {
    match why {
        LinkRefused::Unknown => ConsoleError::LinkUnknown,
        LinkRefused::Used => ConsoleError::LinkGone("was already used"),
        LinkRefused::Expired => ConsoleError::LinkGone("has expired"),
    }
}

pub async fn show(State(state): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Result<Response, ConsoleError> {
    let pairs = super::query_pairs(q)?;
    let token = pairs
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let user = auth::peek_link(&state.store, token, state.clock.now_ms())
        .await?
        .map_err(refused)?;
    Ok(layout::bare_with(
        "Sign in",
        html! {
            p { "This link signs you in to the incident console as Slack user " strong { (user) } "." }
            form method="post" action="/console/login" {
                input type="hidden" name="token" value=(token);
                button #sign-in type="submit" { "Sign in" }
            }
            p.muted { "The link works once and expires minutes after it was sent." }
        },
    )
    .into_response())
}

pub async fn sign_in(
    State(state): State<Arc<AppState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, ConsoleError> {
    let token = form.get("token").map(String::as_str).unwrap_or("");
    let cfg = &state.config.console;
    let ttl = cfg.session_ttl;
    let opened = auth::sign_in(&state.store, token, state.clock.now_ms(), ttl.as_millis() as i64)
        .await?
        .map_err(refused)?;
    tracing::info!(slack.user_id = %opened.user, "console session opened");
    Ok((
        StatusCode::SEE_OTHER,
        [
            (
                header::SET_COOKIE,
                auth::set_cookie(&opened.cookie, ttl.as_secs(), cfg.secure()),
            ),
            (header::LOCATION, "/console/incidents".to_string()),
        ],
    )
        .into_response())
}

pub async fn sign_out(
    State(state): State<Arc<AppState>>,
    viewer: Viewer,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, ConsoleError> {
    check_csrf(&viewer, &form)?;
    auth::sign_out(&state.store, &viewer.session).await?;
    Ok((
        [(header::SET_COOKIE, auth::clear_cookie(state.config.console.secure()))],
        layout::bare("Signed out", "You are signed out of the incident console."),
    )
        .into_response())
}

/// A form's `csrf` field must be the session's token.
pub fn check_csrf(viewer: &Viewer, form: &HashMap<String, String>) -> Result<(), ConsoleError> {
    let given = form.get("csrf").map(String::as_str).unwrap_or("");
    if auth::csrf_ok(&viewer.session, given) {
        Ok(())
    } else {
        Err(ConsoleError::Forbidden(
            "The form's security token is missing or wrong; reload the page and try again.".into(),
        ))
    }
}
