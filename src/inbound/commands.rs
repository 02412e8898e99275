//! A slash command: decode → deduplicate → dispatch, answered inside
//! Slack's 3-second window. A command that takes longer is acknowledged
//! with "working on it" and finishes in a tracked task that replies through
//! the command's `response_url` (via the outbox).

use std::sync::Arc;

use slack_morphism::prelude::*;
use tracing::Instrument;

use super::{INLINE_BUDGET, Transport, claimed};
use crate::dispatch::{self, Origin, Reply, Via};
use crate::error::{CommandError, EdgeError};
use crate::slack::ids::{ChannelId, UserId};
use crate::state::AppState;

/// What a command answers inline.
pub struct Answer {
    pub response: SlackCommandEventResponse,
    /// Whether it carries a secret (see `Reply::sensitive`).
    pub sensitive: bool,
}

/// The inline reply, or `None` for a redelivery that was already handled
/// (acknowledged with nothing to show: its first delivery answered). The
/// claim runs inside the budget too: on SQLite it waits for the one writer.
pub async fn handle(
    state: &Arc<AppState>,
    event: SlackCommandEvent,
    transport: &Transport,
) -> Result<Option<Answer>, EdgeError> {
    let user = UserId::parse(event.user_id.as_ref()).map_err(|e| EdgeError::BadRequest(e.to_string()))?;
    let channel = ChannelId::parse(event.channel_id.as_ref()).map_err(|e| EdgeError::BadRequest(e.to_string()))?;
    let keys = transport.redelivery_keys(event.trigger_id.as_ref());
    let response_url = event.response_url.0.to_string();
    let origin = Origin {
        user,
        channel,
        response_url: Some(response_url.clone()),
        via: Via::Slack,
    };
    let (command, text) = (event.command.0, event.text.unwrap_or_default());
    let task_state = state.clone();
    let run = async move {
        if !claimed(&task_state, "commands", &keys).await? {
            return Ok(None);
        }
        anyhow::Ok(Some(dispatch::dispatch(&task_state, &origin, &command, &text).await))
    };
    // The command outlives the request when slow; its log lines keep the
    // request's (or envelope's) span.
    let mut work = state.tasks.spawn(run.instrument(tracing::Span::current()));
    match tokio::time::timeout(INLINE_BUDGET, &mut work).await {
        Ok(Ok(Ok(reply))) => Ok(reply.map(ephemeral)),
        Ok(Ok(Err(e))) => Err(EdgeError::Internal(e)),
        Ok(Err(join)) => Err(EdgeError::Internal(anyhow::anyhow!("command task failed: {join}"))),
        Err(_) => {
            let late_state = state.clone();
            state.tasks.spawn(async move {
                let reply = match work.await {
                    Ok(Ok(Some(r))) => r,
                    Ok(Ok(None)) => return,
                    Ok(Err(e)) => Reply::new(CommandError::Internal(e).into_user_text("late reply")),
                    Err(e) => Reply::new(
                        CommandError::Internal(anyhow::anyhow!("command task failed: {e}"))
                            .into_user_text("late reply"),
                    ),
                };
                let (text, sensitive) = (reply.text, reply.sensitive);
                if let Err(e) = late_state.outbox.respond_with(&response_url, text, sensitive).await {
                    tracing::error!(error = ?e, "could not queue a late command reply");
                }
            });
            Ok(Some(ephemeral(Reply::new(":hourglass_flowing_sand: Working on it…"))))
        }
    }
}

/// The ephemeral reply Slack shows the person who ran the command.
pub fn ephemeral(reply: Reply) -> Answer {
    Answer {
        sensitive: reply.sensitive,
        response: SlackCommandEventResponse::new(SlackMessageContent::new().with_text(reply.text))
            .with_response_type(SlackMessageResponseType::Ephemeral),
    }
}
