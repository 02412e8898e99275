//! `block_actions` from our buttons. The click is checked with the same
//! rules as the equivalent command (level, incident state); the answer goes
//! to the clicker as an ephemeral message through the `response_url`, so the
//! acknowledgement never waits longer than `INLINE_BUDGET` for it.

use std::sync::Arc;

use slack_morphism::prelude::*;
use tracing::Instrument;

use super::{INLINE_BUDGET, Transport, claimed};
use crate::dispatch::{self, Origin, Via};
use crate::error::EdgeError;
use crate::slack::ids::{ChannelId, UserId};
use crate::state::AppState;

pub async fn handle(
    state: &Arc<AppState>,
    event: SlackInteractionEvent,
    transport: &Transport,
) -> Result<(), EdgeError> {
    let SlackInteractionEvent::BlockActions(ev) = event else {
        // Shortcuts, modals and the like are not ours; acknowledge and ignore.
        return Ok(());
    };
    let bad = |why: String| EdgeError::BadRequest(why);
    let user = ev
        .user
        .as_ref()
        .ok_or_else(|| bad("block_actions without a user".into()))
        .and_then(|u| UserId::parse(u.id.as_ref()).map_err(|e| bad(e.to_string())))?;
    let channel = ev
        .channel
        .as_ref()
        .ok_or_else(|| bad("block_actions without a channel".into()))
        .and_then(|c| ChannelId::parse(c.id.as_ref()).map_err(|e| bad(e.to_string())))?;
    let action = ev
        .actions
        .as_ref()
        .and_then(|a| a.first())
        .ok_or_else(|| bad("block_actions without an action".into()))?;
    let (action_id, value) = (action.action_id.to_string(), action.value.clone().unwrap_or_default());
    let keys = transport.redelivery_keys(ev.trigger_id.as_ref());
    let response_url = ev.response_url.as_ref().map(|u| u.0.to_string());
    let origin = Origin {
        user,
        channel,
        response_url: response_url.clone(),
        via: Via::Slack,
    };
    let task_state = state.clone();
    // The claim runs inside the budget too: on SQLite it waits for the one writer.
    let run = async move {
        if !claimed(&task_state, "interactions", &keys).await? {
            return Ok(());
        }
        let reply = dispatch::click(&task_state, &origin, &action_id, &value).await;
        // No reply: a refusal already answered within the abuse window.
        match (response_url, reply) {
            (Some(url), Some(reply)) => task_state.outbox.respond(&url, reply.text).await,
            _ => Ok(()),
        }
    };
    // The click's log lines keep the request's (or envelope's) span.
    let mut work = state.tasks.spawn(run.instrument(tracing::Span::current()));
    match tokio::time::timeout(INLINE_BUDGET, &mut work).await {
        Ok(Ok(queued)) => Ok(queued?),
        Ok(Err(join)) => Err(EdgeError::Internal(anyhow::anyhow!("click task failed: {join}"))),
        // Still working: acknowledge now; the reply follows through the outbox.
        Err(_) => {
            state.tasks.spawn(async move {
                if let Ok(Err(e)) = work.await {
                    tracing::error!(error = ?e, "could not queue a late click reply");
                }
            });
            Ok(())
        }
    }
}
