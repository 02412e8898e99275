//! The outbox: every Slack write (post, update, response_url reply) is a row
//! written in the same transaction as the state change that caused it, then
//! delivered by `worker`. Slack being slow, rate limited or down therefore
//! never loses a message and never blocks a command; a restart resumes where
//! the last instance stopped.
//!
//! Rows are grouped in lanes (a channel, or one response_url) and a lane is
//! delivered strictly in id order, so a thread reply never precedes its root
//! and updates land in the order they were made.

pub mod pacing;
pub mod worker;

use slack_morphism::prelude::SlackMessageContent;
use sqlx::AnyConnection;

use crate::slack::ids::ChannelId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A top-level post, or a reply to a known `thread_ts`.
    Post,
    /// An incident's root message; its `ts` is stored on the incident.
    PostRoot,
    /// A reply in an incident's thread; `thread_ts` is the root's `ts`.
    PostThread,
    /// `chat.update` of an incident's root message.
    UpdateRoot,
    /// A reply through a command's `response_url`.
    Respond,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Post => "post",
            Kind::PostRoot => "post_root",
            Kind::PostThread => "post_thread",
            Kind::UpdateRoot => "update_root",
            Kind::Respond => "respond",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "post" => Kind::Post,
            "post_root" => Kind::PostRoot,
            "post_thread" => Kind::PostThread,
            "update_root" => Kind::UpdateRoot,
            "respond" => Kind::Respond,
            _ => return None,
        })
    }

    /// Whether the write is a `chat.postMessage`, which Slack paces per channel.
    pub fn is_post(self) -> bool {
        matches!(self, Kind::Post | Kind::PostRoot | Kind::PostThread)
    }
}

/// One message to deliver.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub kind: Kind,
    pub channel: Option<ChannelId>,
    pub incident_id: Option<i64>,
    pub thread_ts: Option<String>,
    pub response_url: Option<String>,
    pub content: SlackMessageContent,
}

impl Outgoing {
    pub fn root(incident_id: i64, channel: &ChannelId, content: SlackMessageContent) -> Self {
        Self::incident(Kind::PostRoot, incident_id, channel, content)
    }
    pub fn thread(incident_id: i64, channel: &ChannelId, content: SlackMessageContent) -> Self {
        Self::incident(Kind::PostThread, incident_id, channel, content)
    }
    pub fn update_root(incident_id: i64, channel: &ChannelId, content: SlackMessageContent) -> Self {
        Self::incident(Kind::UpdateRoot, incident_id, channel, content)
    }
    pub fn post(channel: &ChannelId, thread_ts: Option<String>, content: SlackMessageContent) -> Self {
        Outgoing {
            kind: Kind::Post,
            channel: Some(channel.clone()),
            incident_id: None,
            thread_ts,
            response_url: None,
            content,
        }
    }
    pub fn respond(response_url: &str, content: SlackMessageContent) -> Self {
        Outgoing {
            kind: Kind::Respond,
            channel: None,
            incident_id: None,
            thread_ts: None,
            response_url: Some(response_url.to_string()),
            content,
        }
    }

    fn incident(kind: Kind, incident_id: i64, channel: &ChannelId, content: SlackMessageContent) -> Self {
        Outgoing {
            kind,
            channel: Some(channel.clone()),
            incident_id: Some(incident_id),
            thread_ts: None,
            response_url: None,
            content,
        }
    }

    fn lane(&self) -> String {
        match (&self.channel, &self.response_url) {
            (Some(c), _) => format!("ch:{c}"),
            (None, Some(url)) => format!("url:{url}"),
            (None, None) => "none".to_string(),
        }
    }
}

/// Queue messages inside the caller's transaction. `notify_url` (the
/// command's response_url) is where a permanent delivery failure is reported.
pub async fn enqueue(
    conn: &mut AnyConnection,
    messages: &[Outgoing],
    notify_url: Option<&str>,
    now_ms: i64,
) -> anyhow::Result<()> {
    for m in messages {
        let payload = serde_json::to_string(&m.content)?;
        sqlx::query(
            "INSERT INTO outbox (lane, kind, channel, incident_id, thread_ts, response_url, notify_url, payload, status, attempts, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $9)",
        )
        .bind(m.lane())
        .bind(m.kind.as_str())
        .bind(m.channel.as_ref().map(|c| c.as_str().to_string()))
        .bind(m.incident_id)
        .bind(m.thread_ts.clone())
        .bind(m.response_url.clone())
        .bind(notify_url.map(str::to_string))
        .bind(payload)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Queue one ephemeral reply to a `response_url` and wake the worker.
pub async fn respond(state: &crate::app::AppState, url: &str, text: String) -> anyhow::Result<()> {
    let now = state.clock.now_ms();
    let mut tx = state.store.begin().await?;
    enqueue(
        &mut tx,
        &[Outgoing::respond(url, worker::text_content(text))],
        None,
        now,
    )
    .await?;
    tx.commit().await?;
    state.outbox_wake.notify_one();
    Ok(())
}

/// Count of undelivered rows, for `/metrics`.
pub async fn pending_count(store: &crate::store::Store) -> anyhow::Result<i64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
        .fetch_one(&store.pool)
        .await?;
    Ok(n)
}
