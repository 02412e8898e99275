//! `POST /slack/commands`: verify → decode → dispatch, answered inside
//! Slack's 3-second window. A command that takes longer is acknowledged with
//! "working on it" and finishes in a tracked task that replies through the
//! command's `response_url` (via the outbox).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use slack_morphism::prelude::*;
use tracing::Instrument;

use super::verified::VerifiedBody;
use crate::dispatch::{self, Origin, Reply, Via};
use crate::error::EdgeError;
use crate::slack::ids::{ChannelId, UserId};
use crate::state::AppState;

/// Answer inline if the command finishes this fast; Slack gives up at 3 s.
const INLINE_BUDGET: Duration = Duration::from_millis(2000);

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
    let user = UserId::parse(event.user_id.as_ref()).map_err(|e| EdgeError::BadRequest(e.to_string()))?;
    let channel = ChannelId::parse(event.channel_id.as_ref()).map_err(|e| EdgeError::BadRequest(e.to_string()))?;
    let response_url = event.response_url.0.to_string();
    let origin = Origin {
        user,
        channel,
        response_url: Some(response_url.clone()),
        via: Via::Slack,
    };
    let command = event.command.0.clone();
    let text = event.text.unwrap_or_default();
    state.metrics.slack_request("commands", "accepted");

    let task_state = state.clone();
    // The command outlives the request when slow; its log lines keep the request's span.
    let run = async move { dispatch::dispatch(&task_state, &origin, &command, &text).await };
    let mut work = state.tasks.spawn(run.instrument(tracing::Span::current()));
    match tokio::time::timeout(INLINE_BUDGET, &mut work).await {
        Ok(Ok(reply)) => Ok(ephemeral(reply)),
        Ok(Err(join)) => Err(EdgeError::Internal(anyhow::anyhow!("command task failed: {join}"))),
        Err(_) => {
            let late_state = state.clone();
            state.tasks.spawn(async move {
                let reply = match work.await {
                    Ok(r) => r,
                    Err(e) => Reply::new(
                        crate::error::CommandError::Internal(anyhow::anyhow!("command task failed: {e}"))
                            .into_user_text("late reply"),
                    ),
                };
                if let Err(e) = late_state.outbox.respond(&response_url, reply.text).await {
                    tracing::error!(error = ?e, "could not queue a late command reply");
                }
            });
            Ok(ephemeral(Reply::new(":hourglass_flowing_sand: Working on it…")))
        }
    }
}

pub fn ephemeral(reply: Reply) -> Response {
    Json(
        SlackCommandEventResponse::new(SlackMessageContent::new().with_text(reply.text))
            .with_response_type(SlackMessageResponseType::Ephemeral),
    )
    .into_response()
}
