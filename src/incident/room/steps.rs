//! The room steps the outbox worker runs (`outbox::RoomSteps`): creating
//! the channel here, the rest in `upkeep`. Each step reads the incident as
//! it is when it runs, so a retry, a restart or another replica sees what an
//! earlier attempt stored: the channel id is written once, by a conditional
//! update, and a create step that finds it does nothing.
//!
//! Slack's answers are sorted by the outbox's own rules (`outbox::classify`):
//! a 429 waits its Retry-After without using an attempt, 5xx and
//! `ratelimited` back off. What cannot be fixed by waiting (`missing_scope`,
//! `restricted_action`, `not_allowed_token_type`, every name taken, or the
//! last attempt used up, a store error included) degrades the incident to
//! its thread: recorded on the timeline, the root updated, and the
//! declarer told once.
//!
//! The worker runs a step inline, inside its row's lease: a run starts no
//! Slack call past `STEP_BUDGET` and goes on in the next run from what it
//! recorded (the name tried last, the users left to invite).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::adopt::Found;
use super::{NAME_ATTEMPTS, Step, channel_name, nth_name};
use crate::incident::model::{Incident, Room};
use crate::incident::{render, store as db};
use crate::outbox::{self, OutboxRow, Outcome, Outgoing, RoomSteps, classify, text_content};
use crate::slack::ids::ChannelId;
use crate::slack::text::escape;
use crate::state::AppState;

/// One Slack call of a step (the adoption search counts as one).
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// A step run starts no Slack call after this long (but always makes one):
/// the worker runs steps inline, so a long one holds every other lane, and
/// must finish inside its row's lease. What is left goes on in the next
/// run, from the progress recorded (the name tried, the users left).
pub(super) const STEP_BUDGET: Duration = Duration::from_secs(10);
const _: () = assert!((STEP_BUDGET.as_millis() + CALL_TIMEOUT.as_millis()) < outbox::LEASE_MS as u128);

/// When a step run stops starting Slack calls.
#[derive(Clone, Copy)]
pub(super) struct Budget(tokio::time::Instant);

impl Budget {
    fn start() -> Budget {
        Budget(tokio::time::Instant::now() + STEP_BUDGET)
    }

    pub(super) fn spent(self) -> bool {
        tokio::time::Instant::now() >= self.0
    }
}

/// Run the step again at once: it stopped at its budget, not for Slack.
pub(super) const GO_ON: Outcome = Outcome::NotYet { after_ms: 0 };

/// Slack answers that mean "try again", not "no".
pub(super) const TRANSIENT: &[&str] = &[
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// Runs room steps with the app's handles (the store, Slack, the config,
/// the group lookup); composed in `app.rs`.
pub struct Steps {
    pub state: Arc<AppState>,
}

impl RoomSteps for Steps {
    fn deliver<'a>(&'a self, row: &'a OutboxRow) -> BoxFuture<'a, Outcome> {
        Box::pin(self.run(row))
    }
}

/// How a Slack call ended for a step that may be retried.
pub(super) enum Answer {
    Ok(serde_json::Value),
    /// Try the whole step again later (this outcome says when).
    Later(Outcome),
    /// Slack said no, for good: its error code.
    No(String),
}

impl Steps {
    async fn run(&self, row: &OutboxRow) -> Outcome {
        let step: Step = match serde_json::from_str(&row.payload) {
            Ok(s) => s,
            Err(e) => return Outcome::Failed(format!("stored room step does not decode: {e}")),
        };
        let Some(id) = row.incident_id else {
            return Outcome::Failed("room step without an incident".into());
        };
        let i = match self.incident(id).await {
            Ok(Some(i)) => i,
            Ok(None) => return Outcome::Failed(format!("incident {id} is gone")),
            Err(e) => return store_retry(e),
        };
        let budget = Budget::start();
        let done = match step {
            Step::Create => {
                let done = self.create(row, &i, budget).await.unwrap_or_else(store_retry);
                return self.settle_create(row, &i, done).await;
            }
            Step::Invite => {
                let users = self.invitees(&i).await;
                self.invite(row, &i, users, Vec::new(), budget).await
            }
            Step::Summon { subjects } => {
                let users = self.expand(&subjects).await;
                self.invite(row, &i, users, Vec::new(), budget).await
            }
            Step::Inviting { users, refused } => self.invite(row, &i, users, refused, budget).await,
            Step::Topic => self.topic(row, &i).await,
            Step::Bookmarks => self.bookmarks(row, &i).await,
            Step::Archive { channel } => self.archive(row, &i, channel).await,
        };
        done.unwrap_or_else(store_retry)
    }

    /// A create step must not end with the room still pending: everything
    /// meant for the room waits for it. On its last attempt, or a failure
    /// for good (a store error included), the incident goes on in its
    /// thread and the declarer is told. Should even that fail, `room_of`
    /// sends to the thread once no create step is left.
    async fn settle_create(&self, row: &OutboxRow, i: &Incident, done: Outcome) -> Outcome {
        let last = row.attempts + 1 >= i64::from(self.state.config.outbox.max_attempts);
        let why = match &done {
            Outcome::Retry {
                counts_as_attempt: true,
                error,
                ..
            } if last => format!("{error} (after {} attempts)", row.attempts + 1),
            Outcome::Failed(error) => error.clone(),
            _ => return done,
        };
        match self.degrade(row, i, &why).await {
            Ok(outcome) => {
                if let Err(e) = self.archive_unstored(i).await {
                    tracing::warn!(incident.id = i.id, error = ?e, "could not look for a channel made but not stored");
                }
                outcome
            }
            Err(e) => {
                tracing::warn!(incident.id = i.id, error = ?e, "could not degrade the room to the thread");
                done
            }
        }
    }

    async fn incident(&self, id: i64) -> anyhow::Result<Option<Incident>> {
        let mut conn = self.state.store.pool.acquire().await?;
        db::get(&mut conn, id).await
    }

    /// One Web API call, its answer sorted for a step of `row`.
    pub(super) async fn call(&self, row: &OutboxRow, method: &str, body: &(impl Serialize + Send + Sync)) -> Answer {
        match self.post(method, body).await {
            Ok(v) => Answer::Ok(v),
            Err(e) => self.sort(row, e),
        }
    }

    /// One Web API call as Slack answered it; `None` when it timed out.
    pub(super) async fn post(
        &self,
        method: &str,
        body: &(impl Serialize + Send + Sync),
    ) -> Result<serde_json::Value, Option<SlackClientError>> {
        let session = self.state.slack.session();
        let sent = tokio::time::timeout(
            CALL_TIMEOUT,
            session
                .http_session_api
                .http_post::<_, serde_json::Value>(method, body, None),
        )
        .await;
        match sent {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Some(e)),
            Err(_) => Err(None),
        }
    }

    /// A failed call's answer sorted for a step of `row`.
    pub(super) fn sort(&self, row: &OutboxRow, e: Option<SlackClientError>) -> Answer {
        let Some(e) = e else {
            return self.last_or(row, "timed out".into());
        };
        if let SlackClientError::ApiError(api) = &e
            && !TRANSIENT.contains(&api.code.as_str())
        {
            return Answer::No(api.code.clone());
        }
        match classify(&self.state.config.outbox, row.attempts, &e) {
            Outcome::Retry {
                counts_as_attempt: false,
                after_ms,
                error,
            } => Answer::Later(Outcome::Retry {
                after_ms,
                error,
                counts_as_attempt: false,
            }),
            Outcome::Retry { error, .. } => self.last_or(row, error),
            Outcome::Failed(error) => Answer::No(error),
            other => Answer::Later(other),
        }
    }

    /// Retry later unless this was the row's last attempt.
    fn last_or(&self, row: &OutboxRow, error: String) -> Answer {
        if row.attempts + 1 >= i64::from(self.state.config.outbox.max_attempts) {
            return Answer::No(format!("{error} (after {} attempts)", row.attempts + 1));
        }
        Answer::Later(Outcome::Retry {
            after_ms: outbox::backoff_ms(&self.state.config.outbox, row.attempts),
            error,
            counts_as_attempt: true,
        })
    }

    /// Create the channel unless an earlier attempt did; on `name_taken`
    /// adopt the channel an earlier attempt made under that name (`adopt`),
    /// else try the next suffix.
    /// A run resumes at the name the previous one tried last (those before
    /// it were taken).
    async fn create(&self, row: &OutboxRow, i: &Incident, budget: Budget) -> anyhow::Result<Outcome> {
        if i.room() != Room::Pending {
            return Ok(Outcome::Sent(None));
        }
        let config = &self.state.config.incidents;
        let base = channel_name(config, i.id, &i.title);
        let tried = self.tried_name(i).await?;
        let first = (1..=NAME_ATTEMPTS)
            .find(|n| tried.as_deref() == Some(nth_name(&base, *n).as_str()))
            .unwrap_or(1);
        for n in first..=NAME_ATTEMPTS {
            if n > first && budget.spent() {
                return Ok(GO_ON);
            }
            let name = nth_name(&base, n);
            self.record_name(i, &name).await?;
            let req = SlackApiConversationsCreateRequest::new(name.clone()).with_is_private(config.private);
            match self.call(row, "conversations.create", &req).await {
                Answer::Ok(v) => {
                    let Some(id) = v["channel"]["id"].as_str().filter(|s| ChannelId::parse(s).is_ok()) else {
                        return self.degrade(row, i, "Slack answered without a channel id").await;
                    };
                    return self.made(i, id, &name).await;
                }
                Answer::No(code) if code == "name_taken" && tried.as_deref() == Some(name.as_str()) => {
                    if budget.spent() {
                        return Ok(GO_ON);
                    }
                    match self.find_ours(&name).await {
                        Found::Ours(id) => return self.made(i, &id, &name).await,
                        Found::NotOurs => continue,
                        Found::Later(outcome) => return Ok(outcome),
                    }
                }
                Answer::No(code) if code == "name_taken" => continue,
                Answer::No(code) => return self.degrade(row, i, &code).await,
                Answer::Later(outcome) => return Ok(outcome),
            }
        }
        let why = format!("name_taken (`{base}` up to `{}`)", nth_name(&base, NAME_ATTEMPTS));
        self.degrade(row, i, &why).await
    }

    /// Store the room's id once, then queue what a new room needs. A
    /// replica that lost the race, or came after the room was given up
    /// (the declarer was told it failed), archives the channel it made;
    /// one that adopted the stored room leaves it be.
    async fn made(&self, i: &Incident, room: &str, name: &str) -> anyhow::Result<Outcome> {
        let now = self.state.clock.now_ms();
        let mut tx = self.state.store.begin_in_background().await?;
        let won = sqlx::query(
            "UPDATE incidents SET room_channel = $1, room_state = 'made'
             WHERE id = $2 AND room_channel IS NULL AND room_state = 'pending'",
        )
        .bind(room)
        .bind(i.id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let stored: Option<String> = sqlx::query_scalar("SELECT room_channel FROM incidents WHERE id = $1")
            .bind(i.id)
            .fetch_optional(&mut *tx)
            .await?
            .flatten();
        if !won && stored.as_deref() == Some(room) {
            return Ok(Outcome::Sent(None));
        }
        if !won {
            return self.stray(tx, i, room).await;
        }
        let i = db::get(&mut tx, i.id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("incident vanished"))?;
        for step in [Step::Invite, Step::Topic, Step::Bookmarks] {
            super::queue(&mut tx, &i, step, None, now).await?;
        }
        let channel = ChannelId::parse(&i.channel).map_err(|e| anyhow::anyhow!("stored channel: {e}"))?;
        let welcome = format!(
            ":rotating_light: This channel is for incident *#{}* ({}): {}. Commands here act on it without `#{}`; pin a message or react with :{}: to add it to the timeline.",
            i.id,
            i.severity,
            escape(&i.title),
            i.id,
            self.state.config.incidents.pin_emoji
        );
        let msgs = [
            Outgoing::to_room(i.id, &channel, render::reply(welcome)),
            Outgoing::update_root(i.id, &channel, render::root(&i, now)),
        ];
        outbox::enqueue(&mut tx, &msgs, None, now).await?;
        db::add_event(
            &mut tx,
            i.id,
            now,
            "bot",
            "room",
            &format!("Incident channel #{name} created"),
        )
        .await?;
        self.state.outbox.commit(tx).await?;
        tracing::info!(incident.id = i.id, room, "incident channel created");
        Ok(Outcome::Sent(None))
    }

    /// Another instance stored a room first, or the room was given up:
    /// the channel this attempt made is archived.
    async fn stray(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        i: &Incident,
        room: &str,
    ) -> anyhow::Result<Outcome> {
        let stray = Step::Archive {
            channel: Some(room.to_string()),
        };
        super::queue(&mut tx, i, stray, None, self.state.clock.now_ms()).await?;
        self.state.outbox.commit(tx).await?;
        tracing::warn!(
            incident.id = i.id,
            "the room was stored first or given up; archiving the channel this attempt made"
        );
        Ok(Outcome::Sent(None))
    }

    /// The room cannot be made: the incident stays in its thread. Recorded,
    /// the root updated and the declarer told, once (the state change is
    /// conditional).
    async fn degrade(&self, row: &OutboxRow, i: &Incident, code: &str) -> anyhow::Result<Outcome> {
        let now = self.state.clock.now_ms();
        let mut tx = self.state.store.begin_in_background().await?;
        let first = sqlx::query("UPDATE incidents SET room_state = 'failed' WHERE id = $1 AND room_state = 'pending'")
            .bind(i.id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !first {
            return Ok(Outcome::Handled(code.to_string()));
        }
        let i = db::get(&mut tx, i.id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("incident vanished"))?;
        let channel = ChannelId::parse(&i.channel).map_err(|e| anyhow::anyhow!("stored channel: {e}"))?;
        let text = degraded_notice(&i, code);
        let to_declarer = match (&row.notify_url, i.declared_by.as_str()) {
            (Some(url), _) => Outgoing::respond(url, text_content(text)),
            (None, "bot") => Outgoing::thread(i.id, &channel, render::reply(text)),
            (None, who) => Outgoing::thread(i.id, &channel, render::reply(format!("<@{who}> {text}"))),
        };
        let msgs = [
            to_declarer,
            Outgoing::update_root(i.id, &channel, render::root(&i, now)),
        ];
        outbox::enqueue(&mut tx, &msgs, None, now).await?;
        let event = format!("Could not create the incident channel ({code}); the incident stays in its thread");
        db::add_event(&mut tx, i.id, now, "bot", "room_failed", &event).await?;
        self.state.outbox.commit(tx).await?;
        Ok(Outcome::Handled(code.to_string()))
    }
}

pub(super) fn store_retry(e: anyhow::Error) -> Outcome {
    Outcome::Retry {
        after_ms: 1000,
        error: format!("{e:#}"),
        counts_as_attempt: true,
    }
}

/// What the declarer is told when the room cannot be made.
pub fn degraded_notice(i: &Incident, code: &str) -> String {
    let hint = match code.split(' ').next().unwrap_or_default() {
        "missing_scope" => {
            " The Slack app needs the `channels:manage` (public) or `groups:write` (private) scope: reinstall it with the manifest in `deploy/`."
        }
        "restricted_action" => " This workspace does not let apps create channels; ask an admin to allow it.",
        "not_allowed_token_type" => " `SLACK_BOT_TOKEN` must be the bot token (`xoxb-…`).",
        "name_taken" => " Every name tried is taken; archive or rename old incident channels.",
        _ => "",
    };
    format!(
        ":warning: I could not create a dedicated channel for incident #{} (`{}`). It continues in its thread in <#{}>.{hint}",
        i.id,
        crate::slack::text::escape_entities(&code.replace('`', "'")),
        i.channel
    )
}
