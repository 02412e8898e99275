//! Events API callbacks, claimed by `event_id` (and, over Socket Mode, the
//! envelope id) in the same transaction as their effects: a redelivery is
//! acknowledged without acting twice, and a failure leaves the ids
//! unclaimed so Slack's retry is handled.

use std::sync::Arc;

use slack_morphism::prelude::*;

use super::Transport;
use crate::error::EdgeError;
use crate::outbox::{self, plain};
use crate::slack::ids::ChannelId;
use crate::state::AppState;
use crate::store::events;
use crate::throttle::Verdict;

pub async fn handle(state: &Arc<AppState>, cb: SlackPushEventCallback, transport: &Transport) -> Result<(), EdgeError> {
    let now = state.clock.now_ms();
    if let SlackEventCallbackBody::AppMention(m) = &cb.event
        && !mention_allowed(state, m, now)
    {
        return Ok(());
    }
    let mut keys = vec![cb.event_id.to_string()];
    keys.extend(transport.envelope_key());
    let mut tx = state.store.begin().await.map_err(anyhow::Error::from)?;
    if !events::claim_all(&mut tx, &keys, now).await? {
        state.metrics.slack_request("events", "duplicate");
        tracing::info!(event_id = %cb.event_id, "duplicate event delivery ignored");
        return Ok(());
    }
    state.metrics.slack_request("events", "accepted");
    if let SlackEventCallbackBody::AppMention(m) = cb.event {
        on_mention(&mut tx, &m, now).await?;
    }
    state.outbox.commit(tx).await.map_err(anyhow::Error::from)?;
    Ok(())
}

/// Mentions answered per user are limited (`abuse.mention_*`): one person
/// repeating @bot cannot fill the channel's lane or the dedupe table. Over
/// the limit, nothing is stored, not even the event id.
fn mention_allowed(state: &AppState, m: &SlackAppMentionEvent, now: i64) -> bool {
    match state.mentions.check(m.user.as_ref(), now) {
        Verdict::Allow { .. } => true,
        Verdict::Suppress => {
            state.metrics.throttled("mention");
            false
        }
    }
}

/// Someone @-mentioned the bot: answer in the thread with where to start.
async fn on_mention(tx: &mut sqlx::AnyConnection, m: &SlackAppMentionEvent, now: i64) -> anyhow::Result<()> {
    let Ok(channel) = ChannelId::parse(m.channel.as_ref()) else {
        return Ok(());
    };
    let thread = m.origin.thread_ts.clone().unwrap_or_else(|| m.origin.ts.clone());
    let text = "I run incidents from slash commands: `/incident p1 <title>` declares one, `/incident list` shows what is open, `/incident help` lists the rest.".to_string();
    outbox::enqueue(tx, &[plain(&channel, Some(thread.to_string()), text)], None, now).await
}
