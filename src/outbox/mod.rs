//! The outbox: every Slack write (post, update, response_url reply) is a row
//! written in the same transaction as the state change that caused it, then
//! delivered by `worker`. Slack being slow, rate limited or down therefore
//! never loses a message and never blocks a command; a restart resumes where
//! the last instance stopped.
//!
//! Rows are grouped in lanes (a channel, or one response_url), paced per
//! lane. Within a lane, rows with the same order key (everything about one
//! incident: its root, updates and thread; or one message and its updates)
//! are delivered strictly in id order, so a thread reply never precedes its
//! root and updates land in the order they were made. Between order keys,
//! what a person caused goes before automated posts (alerts, automatic
//! diagnostics): during an alert storm a person's incident is not queued
//! behind a hundred alert posts.

mod delivery;
pub mod pacing;
mod rows;
pub mod steps;
pub mod worker;

pub use delivery::{Outcome, backoff_ms, classify};
pub use rows::{LEASE_MS, OutboxRow};
pub use steps::{RoomSteps, enqueue_step, room_thread_key, save_step};

use std::sync::Arc;

use slack_morphism::prelude::SlackMessageContent;
use sqlx::AnyConnection;
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::metrics::OutboxBacklog;
use crate::slack::ids::{ChannelId, UserId};
use crate::store::group::PersonTx;
use crate::store::{Backend, Store};

/// The key an incident's root message is remembered under; thread replies
/// and root updates name it before Slack has told us the root's `ts`.
pub fn incident_root_key(incident_id: i64) -> String {
    format!("incident:{incident_id}")
}

/// The handle every writer of Slack messages holds: it commits the
/// transaction that queued rows and wakes the worker, so a committed row is
/// never left waiting for the next poll.
#[derive(Clone)]
pub struct Outbox {
    store: Store,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Self {
        Outbox {
            store,
            clock,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Commit a transaction that queued outbox rows, then wake the worker.
    pub async fn commit(&self, tx: sqlx::Transaction<'static, sqlx::Any>) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.wake.notify_one();
        Ok(())
    }

    /// The same for a person's transaction (`Store::begin_for_person`).
    pub async fn commit_person(&self, tx: PersonTx) -> anyhow::Result<()> {
        tx.commit().await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Queue one ephemeral reply to a `response_url` and wake the worker.
    pub async fn respond(&self, url: &str, text: String) -> anyhow::Result<()> {
        self.respond_with(url, text, false).await
    }

    /// The same; `sensitive` keeps no copy of the text once delivered.
    pub async fn respond_with(&self, url: &str, text: String, sensitive: bool) -> anyhow::Result<()> {
        let now = self.clock.now_ms();
        let mut tx = self.store.begin().await?;
        let mut reply = Outgoing::respond(url, text_content(text));
        if sensitive {
            reply = reply.sensitive();
        }
        enqueue(&mut tx, &[reply], None, now).await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// What waits to be delivered: the background readiness check reads it
    /// (`readiness`), and `/metrics` serves what that check last read.
    pub async fn backlog(&self) -> anyhow::Result<OutboxBacklog> {
        let (pending, lanes, oldest, fullest_lane): (i64, i64, Option<i64>, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT lane), MIN(created_at),
                    COALESCE((SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM outbox
                                                  WHERE status = 'pending' GROUP BY lane) l), 0)
             FROM outbox WHERE status = 'pending'",
        )
        .fetch_one(&self.store.pool)
        .await?;
        let now = self.clock.now_ms();
        Ok(OutboxBacklog {
            pending,
            lanes,
            fullest_lane,
            oldest_age_ms: oldest.map_or(0, |t| (now - t).max(0)),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `chat.postMessage`: top level, or in the thread of `thread_ts` or of
    /// the message known as `thread_key`; remembered as `message_key`.
    Post,
    /// `chat.update` of the message known as `message_key`.
    Update,
    /// A reply through a command's `response_url`.
    Respond,
    /// One step of making or keeping an incident's dedicated channel
    /// (create, invite, topic, bookmarks, archive), done by `RoomSteps`.
    Room,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Post => "post",
            Kind::Update => "update",
            Kind::Respond => "respond",
            Kind::Room => "room",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "post" => Kind::Post,
            "update" => Kind::Update,
            "respond" => Kind::Respond,
            "room" => Kind::Room,
            _ => return None,
        })
    }
}

/// One message to deliver.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub kind: Kind,
    pub channel: Option<ChannelId>,
    pub incident_id: Option<i64>,
    pub thread_ts: Option<String>,
    /// Reply in the thread of the message posted under this key.
    pub thread_key: Option<String>,
    /// Post: remember the ts under this key. Update: the message to update.
    pub message_key: Option<String>,
    pub response_url: Option<String>,
    pub content: SlackMessageContent,
    /// The content is a secret for its recipient (a recovery link): the
    /// stored payload is replaced by a placeholder once delivered or given up.
    pub sensitive: bool,
    /// Caused by monitoring, not a person: delivered after what people
    /// caused in the same channel.
    pub automated: bool,
    /// An alert's own post, or a grouped message listing new alerts: when
    /// their payload was received (for the intake → Slack delay in `/metrics`).
    pub intake_at: Option<i64>,
}

impl Outgoing {
    /// An incident's root message.
    pub fn root(incident_id: i64, channel: &ChannelId, content: SlackMessageContent) -> Self {
        let mut m = Self::post_keyed(channel, None, Some(incident_root_key(incident_id)), content);
        m.incident_id = Some(incident_id);
        m
    }
    /// A reply in an incident's thread.
    pub fn thread(incident_id: i64, channel: &ChannelId, content: SlackMessageContent) -> Self {
        let mut m = Self::post_keyed(channel, Some(incident_root_key(incident_id)), None, content);
        m.incident_id = Some(incident_id);
        m
    }
    /// A message for the incident's dedicated channel: delivery posts it
    /// there once the room is made, waits while it is being made (same
    /// lane and order key as the create step), and falls back to the
    /// incident's thread in `channel` when the room could not be made.
    pub fn to_room(incident_id: i64, channel: &ChannelId, content: SlackMessageContent) -> Self {
        let mut m = Self::post_keyed(channel, Some(room_thread_key(incident_id)), None, content);
        m.incident_id = Some(incident_id);
        m
    }
    /// `chat.update` of an incident's root message.
    pub fn update_root(incident_id: i64, channel: &ChannelId, content: SlackMessageContent) -> Self {
        let mut m = Self::update(channel, &incident_root_key(incident_id), content);
        m.incident_id = Some(incident_id);
        m
    }
    pub fn post(channel: &ChannelId, thread_ts: Option<String>, content: SlackMessageContent) -> Self {
        let mut m = Self::post_keyed(channel, None, None, content);
        m.thread_ts = thread_ts;
        m
    }
    pub fn post_keyed(
        channel: &ChannelId,
        thread_key: Option<String>,
        message_key: Option<String>,
        content: SlackMessageContent,
    ) -> Self {
        Outgoing {
            kind: Kind::Post,
            channel: Some(channel.clone()),
            incident_id: None,
            thread_ts: None,
            thread_key,
            message_key,
            response_url: None,
            content,
            sensitive: false,
            automated: false,
            intake_at: None,
        }
    }
    /// A direct message to `user`: `chat.postMessage` takes a user id as its
    /// channel and posts in the app's conversation with them (`chat:write`
    /// is enough; no `im:write` to open the conversation first).
    pub fn direct(user: &UserId, content: SlackMessageContent) -> Self {
        Self::post_keyed(&ChannelId::direct_to(user), None, None, content)
    }
    /// Mark the message as a secret for its recipient (see `sensitive`).
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }
    pub fn update(channel: &ChannelId, message_key: &str, content: SlackMessageContent) -> Self {
        Outgoing {
            kind: Kind::Update,
            channel: Some(channel.clone()),
            incident_id: None,
            thread_ts: None,
            thread_key: None,
            message_key: Some(message_key.to_string()),
            response_url: None,
            content,
            sensitive: false,
            automated: false,
            intake_at: None,
        }
    }
    pub fn respond(response_url: &str, content: SlackMessageContent) -> Self {
        Outgoing {
            kind: Kind::Respond,
            channel: None,
            incident_id: None,
            thread_ts: None,
            thread_key: None,
            message_key: None,
            response_url: Some(response_url.to_string()),
            content,
            sensitive: false,
            automated: false,
            intake_at: None,
        }
    }

    /// Rows that must keep their relative order: everything about one
    /// incident, else one thread or one message and its updates, else the
    /// lane's unkeyed posts.
    fn order_key(&self) -> String {
        let room = self.thread_key.as_deref().and_then(steps::room_of_key);
        match self.incident_id.or(room) {
            Some(id) => incident_root_key(id),
            None => self
                .thread_key
                .clone()
                .or_else(|| self.message_key.clone())
                .unwrap_or_default(),
        }
    }

    /// Mark as caused by monitoring rather than a person.
    pub fn automated(mut self) -> Self {
        self.automated = true;
        self
    }

    /// Mark as the first post of alerts whose payload arrived at `received_at_ms`.
    pub fn alert_received_at(mut self, received_at_ms: i64) -> Self {
        self.intake_at = Some(received_at_ms);
        self
    }

    fn lane(&self) -> String {
        match (&self.channel, &self.response_url) {
            (Some(c), _) => format!("ch:{c}"),
            // A response_url is a credential (it can post for 30 minutes):
            // the lane, which reaches logs, carries only a hash of it.
            (None, Some(url)) => {
                use sha2::{Digest, Sha256};
                format!("url:{}", &hex::encode(Sha256::digest(url.as_bytes()))[..16])
            }
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
    for chunk in messages.chunks(ENQUEUE_CHUNK) {
        let sql = insert_sql(chunk.len());
        bind_rows(sqlx::query(sqlx::AssertSqlSafe(sql)), chunk, notify_url, now_ms)?
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A timeline event to write with the messages that tell of it.
pub struct Noted<'a> {
    pub incident_id: i64,
    pub actor: &'a str,
    pub kind: &'a str,
    pub text: &'a str,
}

/// `enqueue` plus the incident's timeline event (at `now_ms`), in one
/// statement: every statement is a round trip to the state store's one
/// writer, which a person's command waits for (PostgreSQL: the event in a
/// data-modifying `WITH`; SQLite, which has none: two statements in one
/// query, run back to back on its connection thread).
pub async fn enqueue_noted(
    conn: &mut AnyConnection,
    backend: Backend,
    event: Noted<'_>,
    messages: &[Outgoing],
    notify_url: Option<&str>,
    now_ms: i64,
) -> anyhow::Result<()> {
    if messages.len() > ENQUEUE_CHUNK {
        crate::store::timeline::add_event(conn, event.incident_id, now_ms, event.actor, event.kind, event.text).await?;
        return enqueue(conn, messages, notify_url, now_ms).await;
    }
    let rows = insert_sql(messages.len());
    let first = 3 + messages.len() * ROW_BINDS;
    let note = format!(
        "INSERT INTO incident_events (incident_id, occurred_at, actor, kind, text) VALUES (${first}, $1, ${}, ${}, ${})",
        first + 1,
        first + 2,
        first + 3
    );
    let sql = match backend {
        Backend::Postgres => format!("WITH noted AS ({note}) {rows}"),
        Backend::Sqlite => format!("{note}; {rows}"),
    };
    bind_rows(sqlx::query(sqlx::AssertSqlSafe(sql)), messages, notify_url, now_ms)?
        .bind(event.incident_id)
        .bind(event.actor)
        .bind(event.kind)
        .bind(event.text)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds `$1` (now), `$2` (notify_url), then `ROW_BINDS` per message, in the
/// order `insert_sql` numbers them.
fn bind_rows<'q>(
    q: Query<'q>,
    messages: &'q [Outgoing],
    notify_url: Option<&'q str>,
    now_ms: i64,
) -> anyhow::Result<Query<'q>> {
    let mut q = q.bind(now_ms).bind(notify_url);
    for m in messages {
        q = q
            .bind(m.lane())
            .bind(m.kind.as_str())
            .bind(m.channel.as_ref().map(|c| c.as_str()))
            .bind(m.incident_id)
            .bind(m.thread_ts.as_deref())
            .bind(m.thread_key.as_deref())
            .bind(m.message_key.as_deref())
            .bind(m.response_url.as_deref())
            .bind(serde_json::to_string(&m.content)?)
            .bind(i64::from(m.sensitive))
            .bind(i64::from(m.automated))
            .bind(m.order_key())
            .bind(m.intake_at);
    }
    Ok(q)
}

/// Rows per `INSERT`: one statement (one round trip to the state store)
/// for all of a command's messages, and a bounded set of statement texts.
const ENQUEUE_CHUNK: usize = 32;
/// Binds per row after the two shared ones (`$1` now, `$2` notify_url).
const ROW_BINDS: usize = 13;

/// `INSERT … VALUES (…), (…)` for `rows` messages, placeholders only (no
/// value is ever formatted into the text). Rows get ids in list order on
/// both backends, which is the delivery order within an order key.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO outbox (lane, kind, channel, incident_id, thread_ts, thread_key, message_key, response_url, \
         payload, sensitive, priority, order_key, intake_at, notify_url, status, attempts, next_attempt_at, created_at) VALUES ",
    );
    for r in 0..rows {
        let p: Vec<String> = (0..ROW_BINDS).map(|i| format!("${}", 3 + r * ROW_BINDS + i)).collect();
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("({}, $2, 'pending', 0, $1, $1)", p.join(", ")));
    }
    sql
}

pub fn text_content(text: String) -> SlackMessageContent {
    SlackMessageContent::new().with_text(text)
}

/// A plain-text post, for callers that only have a channel and text.
pub fn plain(channel: &ChannelId, thread_ts: Option<String>, text: String) -> Outgoing {
    Outgoing::post(channel, thread_ts, text_content(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_insert_numbers_every_row_after_the_shared_binds() {
        let one = insert_sql(1);
        assert!(
            one.ends_with("($3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $2, 'pending', 0, $1, $1)"),
            "{one}"
        );
        let two = insert_sql(2);
        assert!(two.contains("$15, $2, 'pending', 0, $1, $1), ($16, "), "{two}");
        assert!(two.ends_with("$28, $2, 'pending', 0, $1, $1)"), "{two}");
        // Columns named and values given agree: 18 columns, 18 values per row.
        let columns = one[one.find('(').unwrap()..one.find(" VALUES").unwrap()]
            .matches(',')
            .count()
            + 1;
        let values = one[one.rfind('(').unwrap()..].matches(',').count() + 1;
        assert_eq!((columns, values), (18, 18));
        let largest = insert_sql(ENQUEUE_CHUNK);
        let last = 2 + ENQUEUE_CHUNK * ROW_BINDS;
        assert!(
            largest.ends_with(&format!("${last}, $2, 'pending', 0, $1, $1)")),
            "{largest}"
        );
    }
}
