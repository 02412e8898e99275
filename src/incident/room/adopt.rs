//! A create whose answer we never stored (a timeout or 5xx after Slack made
//! the channel, a store error, a lapsed lease) must not leave an orphan
//! channel and make `-2`: the name is stored before each
//! `conversations.create`, and a retry that gets `name_taken` for that very
//! name looks the channel up among the bot's own (`users.conversations`,
//! `channels:read`/`groups:read`) and adopts it if the bot created it.

use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::Step;
use super::steps::{CALL_TIMEOUT, Steps};
use crate::incident::model::{Incident, Room};
use crate::incident::store as db;
use crate::outbox::Outcome;

/// Pages of the bot's channels read before giving up the search.
const MAX_PAGES: usize = 10;

/// What looking for the channel an earlier attempt made found.
pub(super) enum Found {
    Ours(String),
    /// Not ours (or Slack could not say): try the next name.
    NotOurs,
    /// Rate limited: run the step again after this.
    Later(Outcome),
}

impl Steps {
    /// The name the previous attempt of the create step tried last, if any.
    pub(super) async fn tried_name(&self, i: &Incident) -> anyhow::Result<Option<String>> {
        let mut conn = self.state.store.pool.acquire().await?;
        let name: Option<String> = sqlx::query_scalar("SELECT room_name FROM incidents WHERE id = $1")
            .bind(i.id)
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
        Ok(name)
    }

    /// Remember `name` before asking Slack for it.
    pub(super) async fn record_name(&self, i: &Incident, name: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE incidents SET room_name = $1 WHERE id = $2 AND room_state = 'pending'")
            .bind(name)
            .bind(i.id)
            .execute(&self.state.store.writer)
            .await?;
        Ok(())
    }

    /// After a create step gave up, a channel an attempt made but could not
    /// store (the store failing after Slack answered) is archived, so it
    /// does not linger next to the thread the incident went on in.
    pub(super) async fn archive_unstored(&self, i: &Incident) -> anyhow::Result<()> {
        let Some(name) = self.tried_name(i).await? else {
            return Ok(());
        };
        let Found::Ours(id) = self.find_ours(&name).await else {
            return Ok(());
        };
        let mut tx = self.state.store.begin_in_background().await?;
        let now = db::get(&mut tx, i.id).await?;
        if now.is_some_and(|n| n.room() == Room::Failed) {
            super::queue(
                &mut tx,
                i,
                Step::Archive { channel: Some(id) },
                None,
                self.state.clock.now_ms(),
            )
            .await?;
            self.state.outbox.commit(tx).await?;
        }
        Ok(())
    }

    /// The unarchived channel called `name` that this bot created.
    pub(super) async fn find_ours(&self, name: &str) -> Found {
        // Not knowing is not "not ours": that could make a second channel.
        let Ok(found) = tokio::time::timeout(CALL_TIMEOUT, self.search(name)).await else {
            return Found::Later(Outcome::Retry {
                after_ms: 1000,
                error: "timed out looking for the channel an earlier attempt made".into(),
                counts_as_attempt: true,
            });
        };
        match found {
            Ok(Some(id)) => Found::Ours(id),
            Ok(None) => Found::NotOurs,
            Err(SlackClientError::RateLimitError(r)) => Found::Later(Outcome::Retry {
                after_ms: r.retry_after.map(|d| d.as_millis() as i64).unwrap_or(1000).max(1),
                error: "rate limited (429)".into(),
                counts_as_attempt: false,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "could not look for the channel an earlier attempt made");
                Found::NotOurs
            }
        }
    }

    async fn search(&self, name: &str) -> Result<Option<String>, SlackClientError> {
        let session = self.state.slack.session();
        let me = session.auth_test().await?.user_id;
        let mut cursor = None;
        for _ in 0..MAX_PAGES {
            let req = SlackApiUsersConversationsRequest::new()
                .with_exclude_archived(true)
                .with_limit(200)
                .with_types(vec![SlackConversationType::Public, SlackConversationType::Private])
                .opt_cursor(cursor);
            let page = session.users_conversations(&req).await?;
            let ours = page
                .channels
                .iter()
                .find(|c| c.name.as_deref() == Some(name) && c.creator.as_ref() == Some(&me));
            if let Some(c) = ours {
                return Ok(Some(c.id.to_string()));
            }
            cursor = page
                .response_metadata
                .and_then(|m| m.next_cursor)
                .filter(|c| !c.0.is_empty());
            if cursor.is_none() {
                break;
            }
        }
        Ok(None)
    }
}
