//! Events API callbacks, claimed by `event_id` (and, over Socket Mode, the
//! envelope id) in the same transaction as their effects: a redelivery is
//! acknowledged without acting twice, and a failure leaves the ids
//! unclaimed so Slack's retry is handled.

use std::sync::Arc;

use slack_morphism::prelude::*;

use super::Transport;
use crate::error::EdgeError;
use crate::incident::room::pins::{self, Marked};
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
    let marked = match marked(&cb.event, &state.config.incidents.pin_emoji) {
        Some(m) if m.how == "Marked" && !reaction_allowed(state, &m.by, now) => return Ok(()),
        Some(m) => with_text(state, m, &keys).await?,
        None => None,
    };
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
    if let Some((incident, m)) = marked
        && pins::add(&mut tx, incident, &m, now).await?
    {
        tracing::info!(incident.id = incident, how = m.how, "message added to the timeline");
    }
    state.outbox.commit(tx).await.map_err(anyhow::Error::from)?;
    Ok(())
}

/// A pin (`pin_added`, which slack-morphism does not model, so it arrives
/// as raw JSON) or a reaction with the configured emoji: the message marked.
fn marked(event: &SlackEventCallbackBody, emoji: &str) -> Option<Marked> {
    match event {
        SlackEventCallbackBody::ReactionAdded(r) if r.reaction.0 == emoji => match &r.item {
            SlackReactionsItem::Message(m) => Some(Marked {
                channel: m.origin.channel.as_ref()?.to_string(),
                ts: m.origin.ts.to_string(),
                thread_ts: m.origin.thread_ts.as_ref().map(ToString::to_string),
                by: r.user.to_string(),
                text: m.content.text.clone(),
                how: "Marked",
            }),
            SlackReactionsItem::File(_) => None,
        },
        SlackEventCallbackBody::Unknown(v) if v["type"] == "pin_added" => {
            let message = &v["item"]["message"];
            let channel = v["channel_id"].as_str().or(v["item"]["channel"].as_str())?;
            Some(Marked {
                channel: channel.to_string(),
                ts: message["ts"].as_str()?.to_string(),
                thread_ts: message["thread_ts"].as_str().map(str::to_string),
                by: v["user"].as_str().unwrap_or("someone").to_string(),
                text: message["text"].as_str().map(str::to_string),
                how: "Pinned",
            })
        }
        _ => None,
    }
}

/// The incident a marked message belongs to, with the message's text
/// (read from Slack when the event does not carry it). None when the
/// message is in no incident's room or thread. Slack is asked only when
/// the text will be used: not for a redelivery (its `keys` are claimed
/// already) nor for a message already on the timeline.
async fn with_text(state: &AppState, mut m: Marked, keys: &[String]) -> anyhow::Result<Option<(i64, Marked)>> {
    let mut conn = state.store.pool.acquire().await?;
    let Some(incident) = pins::incident_of(&mut conn, &m).await? else {
        return Ok(None);
    };
    let needed = m.text.is_none()
        && !events::seen_any(&mut conn, keys).await?
        && !pins::known(&mut conn, incident, &m.ts).await?;
    drop(conn);
    if needed {
        m.text = pins::fetch_text(&state.slack, &m.channel, &m.ts).await;
    }
    Ok(Some((incident, m)))
}

/// Reactions with the timeline emoji share the mentions' per-user limit
/// (`abuse.mention_*`, a bucket of their own): each may cost a Slack call.
/// Over it, the reaction is dropped before anything is stored.
fn reaction_allowed(state: &AppState, user: &str, now: i64) -> bool {
    match state.mentions.check(&format!("reaction:{user}"), now) {
        Verdict::Allow { .. } => true,
        Verdict::Suppress => {
            state.metrics.throttled("reaction");
            false
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(inner: serde_json::Value) -> SlackEventCallbackBody {
        let cb = serde_json::json!({
            "type": "event_callback", "token": "x", "team_id": "T0TEAM", "api_app_id": "A0APP",
            "event": inner, "event_id": "Ev1", "event_time": 1_700_000_000,
        });
        match serde_json::from_value::<SlackPushEvent>(cb).expect("Slack's payload decodes") {
            SlackPushEvent::EventCallback(cb) => cb.event,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pins_and_the_configured_reaction_mark_a_message() {
        let pin = event(serde_json::json!({
            "type": "pin_added", "user": "U0A", "channel_id": "C0ROOM",
            "item": {"type": "message", "channel": "C0ROOM", "created": 1, "created_by": "U0A",
                     "message": {"type": "message", "user": "U0B", "text": "the index is missing", "ts": "1700000000.000100"}},
            "event_ts": "1700000001.000200"
        }));
        let m = marked(&pin, "pushpin").expect("a pin marks");
        assert_eq!(
            (m.channel.as_str(), m.ts.as_str(), m.by.as_str()),
            ("C0ROOM", "1700000000.000100", "U0A")
        );
        assert_eq!(m.text.as_deref(), Some("the index is missing"));

        let reaction = |name: &str| {
            event(serde_json::json!({
                "type": "reaction_added", "user": "U0A", "reaction": name, "item_user": "U0B",
                "item": {"type": "message", "channel": "C0ROOM", "ts": "1700000000.000100"},
                "event_ts": "1700000001.000300"
            }))
        };
        let m = marked(&reaction("pushpin"), "pushpin").expect("the emoji marks");
        assert_eq!((m.channel.as_str(), m.text), ("C0ROOM", None));
        assert_eq!(marked(&reaction("tada"), "pushpin"), None);
        let malformed = event(serde_json::json!({"type": "pin_added", "user": "U0A", "item": {}}));
        assert_eq!(marked(&malformed, "pushpin"), None);
    }
}
