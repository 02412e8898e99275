//! Pinning a message, or reacting to it with the configured emoji, in an
//! incident's room or thread adds it to the incident's timeline (and so to
//! the postmortem). Slack's redeliveries are dropped by event id upstream;
//! `incident_pins` keys on (incident, message ts) so a pin and a reaction,
//! or two people, add one message once.

use std::time::Duration;

use slack_morphism::prelude::*;
use sqlx::AnyConnection;

use crate::incident::store as db;
use crate::slack::client::SlackApi;

/// The longest excerpt of a message kept on the timeline.
const EXCERPT_MAX: usize = 500;
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// A message someone marked: pinned or reacted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    pub channel: String,
    pub ts: String,
    /// The thread it is in, when the event says.
    pub thread_ts: Option<String>,
    pub by: String,
    /// Its text when the event carries it (`pin_added` does).
    pub text: Option<String>,
    pub how: &'static str,
}

/// The incident a marked message belongs to: the room it is in, or the
/// incident whose root message (in the incident channel) is its thread.
pub async fn incident_of(conn: &mut AnyConnection, m: &Marked) -> anyhow::Result<Option<i64>> {
    if let Some(id) = super::incident_in_room(conn, &m.channel).await? {
        return Ok(Some(id));
    }
    let root = m.thread_ts.as_deref().unwrap_or(&m.ts);
    let key: Option<String> =
        sqlx::query_scalar("SELECT key FROM slack_messages WHERE channel = $1 AND ts = $2 AND key LIKE 'incident:%'")
            .bind(&m.channel)
            .bind(root)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(key.and_then(|k| k.strip_prefix("incident:")?.parse().ok()))
}

/// Whether the message is on the incident's timeline already.
pub async fn known(conn: &mut AnyConnection, incident_id: i64, ts: &str) -> anyhow::Result<bool> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM incident_pins WHERE incident_id = $1 AND message_ts = $2")
        .bind(incident_id)
        .bind(ts)
        .fetch_one(&mut *conn)
        .await?;
    Ok(n > 0)
}

/// Add the message to the timeline unless it is there; true when added.
pub async fn add(conn: &mut AnyConnection, incident_id: i64, m: &Marked, now: i64) -> anyhow::Result<bool> {
    let fresh = sqlx::query(
        "INSERT INTO incident_pins (incident_id, message_ts, channel, added_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (incident_id, message_ts) DO NOTHING",
    )
    .bind(incident_id)
    .bind(&m.ts)
    .bind(&m.channel)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if fresh {
        let text = excerpt(m.text.as_deref().unwrap_or("(message text not available)"));
        db::add_event(conn, incident_id, now, &m.by, "pinned", &format!("{}: {text}", m.how)).await?;
    }
    Ok(fresh)
}

fn excerpt(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= EXCERPT_MAX {
        one_line
    } else {
        format!("{}…", one_line.chars().take(EXCERPT_MAX).collect::<String>())
    }
}

/// A reaction event names the message only: read its text
/// (`reactions.get`, which needs only `reactions:read` and finds thread
/// replies too). None when Slack cannot say in time; the timeline then
/// notes it without text.
pub async fn fetch_text(slack: &SlackApi, channel: &str, ts: &str) -> Option<String> {
    let req = SlackApiReactionsGetRequest::new()
        .with_channel(SlackChannelId::new(channel.to_string()))
        .with_timestamp(SlackTs::new(ts.to_string()));
    let session = slack.session();
    let resp = tokio::time::timeout(FETCH_TIMEOUT, session.reactions_get(&req)).await;
    match resp {
        Ok(Ok(SlackApiReactionsGetResponse::Message(r))) => r.message.content.text,
        Ok(Ok(SlackApiReactionsGetResponse::File(_))) => None,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "could not read a marked message's text");
            None
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_one_line_and_bounded() {
        assert_eq!(excerpt("a\n  b\tc"), "a b c");
        let long = excerpt(&"x".repeat(600));
        assert_eq!(long.chars().count(), EXCERPT_MAX + 1);
        assert!(long.ends_with('…'));
    }
}
