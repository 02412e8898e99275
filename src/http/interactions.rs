//! `POST /slack/interactions`: `block_actions` from our buttons. The click is
//! checked with the same rules as the equivalent command (level, incident
//! state); the answer goes to the clicker as an ephemeral message.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use slack_morphism::prelude::*;

use super::verified::VerifiedBody;
use crate::dispatch::{self, Origin, Via};
use crate::error::EdgeError;
use crate::slack::ids::{ChannelId, UserId};
use crate::state::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/slack/interactions", post(handle))
}

async fn handle(State(state): State<Arc<AppState>>, VerifiedBody(body): VerifiedBody) -> Result<Response, EdgeError> {
    let mut fields: HashMap<String, String> =
        serde_urlencoded::from_bytes(&body).map_err(|e| EdgeError::BadRequest(format!("form body: {e}")))?;
    let payload = fields
        .remove("payload")
        .ok_or_else(|| EdgeError::BadRequest("missing `payload` field".into()))?;
    let event: SlackInteractionEvent =
        serde_json::from_str(&payload).map_err(|e| EdgeError::BadRequest(format!("payload: {e}")))?;
    let SlackInteractionEvent::BlockActions(ev) = event else {
        // Shortcuts, modals and the like are not ours; acknowledge and ignore.
        return Ok(StatusCode::OK.into_response());
    };
    let user = ev
        .user
        .as_ref()
        .ok_or_else(|| EdgeError::BadRequest("block_actions without a user".into()))
        .and_then(|u| UserId::parse(u.id.as_ref()).map_err(|e| EdgeError::BadRequest(e.to_string())))?;
    let channel = ev
        .channel
        .as_ref()
        .ok_or_else(|| EdgeError::BadRequest("block_actions without a channel".into()))
        .and_then(|c| ChannelId::parse(c.id.as_ref()).map_err(|e| EdgeError::BadRequest(e.to_string())))?;
    let action = ev
        .actions
        .as_ref()
        .and_then(|a| a.first())
        .ok_or_else(|| EdgeError::BadRequest("block_actions without an action".into()))?;
    let response_url = ev.response_url.as_ref().map(|u| u.0.to_string());
    let origin = Origin {
        user,
        channel,
        response_url: response_url.clone(),
        via: Via::Slack,
    };
    state.metrics.slack_request("interactions", "accepted");

    let reply = dispatch::click(
        &state,
        &origin,
        action.action_id.as_ref(),
        action.value.as_deref().unwrap_or(""),
    )
    .await;
    if let Some(url) = response_url {
        state.outbox.respond(&url, reply.text).await?;
    }
    Ok(StatusCode::OK.into_response())
}
