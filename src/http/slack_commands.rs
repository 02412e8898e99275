//! `POST /slack/commands`: verify → decode, then the command path shared
//! with Socket Mode (`inbound::commands`): dispatched and answered inline
//! within Slack's 3-second window, or "working on it" and a later reply
//! through the command's `response_url`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use slack_morphism::prelude::*;

use super::verified::VerifiedBody;
use crate::error::EdgeError;
use crate::inbound::{Transport, commands};
use crate::state::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/slack/commands", post(handle))
}

async fn handle(State(state): State<Arc<AppState>>, VerifiedBody(body): VerifiedBody) -> Result<Response, EdgeError> {
    let fields: HashMap<String, String> =
        serde_urlencoded::from_bytes(&body).map_err(|e| EdgeError::BadRequest(format!("form body: {e}")))?;
    if fields.get("ssl_check").map(String::as_str) == Some("1") {
        return Ok(().into_response());
    }
    let event: SlackCommandEvent =
        serde_urlencoded::from_bytes(&body).map_err(|e| EdgeError::BadRequest(format!("slash command: {e}")))?;
    // Slack never resends a slash command over HTTP, so nothing is a duplicate here.
    let reply = commands::handle(&state, event, &Transport::Http).await?;
    Ok(reply
        .map(|r| Json(r.response).into_response())
        .unwrap_or_else(|| ().into_response()))
}
