//! Drains the outbox into Slack.
//!
//! A row is claimed with a lease (a conditional update), so several replicas
//! sharing a PostgreSQL store never send the same row at once. Outcomes:
//! sent; retry later (429 with its `Retry-After`, 5xx, connection errors,
//! `ratelimited`/`internal_error`, with exponential backoff); or failed for
//! good (`channel_not_found`, `not_in_channel`, …), which is logged, counted
//! and reported to the person whose command caused it.
//!
//! Slack has no idempotency key for `chat.postMessage`: when Slack accepted
//! a post but we never learnt it (a crash before the row is marked sent, or
//! a timeout or 5xx after Slack processed it), that one post is repeated on
//! retry. A 429, a refused connection or an `ok:false` never repeats one.

use std::sync::Arc;
use std::time::Duration;

use slack_morphism::errors::{SlackClientError, SlackClientSystemError};
use slack_morphism::prelude::*;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

use super::{Kind, Outgoing, pacing::Pacer};
use crate::app::AppState;
use crate::slack::ids::ChannelId;

const LEASE_MS: i64 = 30_000;
const IDLE_POLL: Duration = Duration::from_millis(200);
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

struct Row_ {
    id: i64,
    lane: String,
    kind: Kind,
    channel: Option<String>,
    incident_id: Option<i64>,
    thread_ts: Option<String>,
    thread_key: Option<String>,
    message_key: Option<String>,
    response_url: Option<String>,
    notify_url: Option<String>,
    payload: String,
    attempts: i64,
}

enum Outcome {
    Sent(Option<String>),
    Retry {
        after_ms: i64,
        error: String,
        counts: bool,
    },
    Failed(String),
    Superseded,
    /// The row cannot be sent yet (the message it needs has no ts yet).
    Wait(i64),
}

pub async fn run(state: Arc<AppState>, cancel: CancellationToken) {
    let owner = uuid::Uuid::new_v4().to_string();
    let mut pacer = Pacer::new(state.config.outbox.per_channel_per_second, state.config.outbox.burst);
    loop {
        match drain(&state, &owner, &mut pacer, &cancel).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = ?e, "outbox drain failed; retrying"),
        }
        pacer.prune(state.clock.now_ms());
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = state.outbox_wake.notified() => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
        }
    }
}

/// Deliver what is due. Returns true when it made progress (call again).
async fn drain(state: &AppState, owner: &str, pacer: &mut Pacer, cancel: &CancellationToken) -> anyhow::Result<bool> {
    let now = state.clock.now_ms();
    // Only the oldest pending row of each lane is eligible: that is what
    // keeps lanes in order.
    let rows = sqlx::query(
        "SELECT id, lane, kind, channel, incident_id, thread_ts, thread_key, message_key, response_url, notify_url, payload, attempts
         FROM outbox o
         WHERE status = 'pending' AND next_attempt_at <= $1
           AND (lease_until IS NULL OR lease_until < $1)
           AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.lane = o.lane AND p.status = 'pending' AND p.id < o.id)
         ORDER BY id LIMIT 64",
    )
    .bind(now)
    .fetch_all(&state.store.pool)
    .await?;
    let mut progressed = false;
    for r in rows {
        if cancel.is_cancelled() {
            break;
        }
        let row = Row_ {
            id: r.try_get("id")?,
            lane: r.try_get("lane")?,
            kind: Kind::parse(r.try_get::<String, _>("kind")?.as_str()).unwrap_or(Kind::Post),
            channel: r.try_get("channel")?,
            incident_id: r.try_get("incident_id")?,
            thread_ts: r.try_get("thread_ts")?,
            thread_key: r.try_get("thread_key")?,
            message_key: r.try_get("message_key")?,
            response_url: r.try_get("response_url")?,
            notify_url: r.try_get("notify_url")?,
            payload: r.try_get("payload")?,
            attempts: r.try_get("attempts")?,
        };
        if row.kind == Kind::Post && pacer.try_take(&row.lane, state.clock.now_ms()).is_err() {
            continue;
        }
        if !claim(state, owner, row.id).await? {
            continue;
        }
        let outcome = deliver(state, &row).await;
        finish(state, owner, &row, outcome).await?;
        progressed = true;
    }
    Ok(progressed)
}

async fn claim(state: &AppState, owner: &str, id: i64) -> anyhow::Result<bool> {
    let now = state.clock.now_ms();
    let done = sqlx::query(
        "UPDATE outbox SET lease_owner = $1, lease_until = $2
         WHERE id = $3 AND status = 'pending' AND (lease_until IS NULL OR lease_until < $4)",
    )
    .bind(owner)
    .bind(now + LEASE_MS)
    .bind(id)
    .bind(now)
    .execute(&state.store.pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn deliver(state: &AppState, row: &Row_) -> Outcome {
    let content: SlackMessageContent = match serde_json::from_str(&row.payload) {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("stored payload does not decode: {e}")),
    };
    // The thread to reply in, or the message to update, may be known only
    // by key until its own post is delivered (same lane, so it goes first).
    let key = match row.kind {
        Kind::Update => row.message_key.as_deref(),
        _ => row.thread_key.as_deref(),
    };
    let keyed_ts = match key {
        None => None,
        Some(k) => match known_ts(state, k).await {
            Ok(KnownTs::Known(ts)) => Some(ts),
            Ok(KnownTs::Lost) => {
                return Outcome::Failed(format!("the message `{k}` it depends on was never delivered"));
            }
            Ok(KnownTs::NotYet) => return Outcome::Wait(500),
            Err(e) => {
                return Outcome::Retry {
                    after_ms: 1000,
                    error: format!("{e:#}"),
                    counts: true,
                };
            }
        },
    };
    let thread_ts = keyed_ts.clone().or_else(|| row.thread_ts.clone());
    if row.kind == Kind::Update {
        match newer_update_exists(state, row).await {
            Ok(true) => return Outcome::Superseded,
            Ok(false) => {}
            Err(e) => {
                return Outcome::Retry {
                    after_ms: 1000,
                    error: format!("{e:#}"),
                    counts: true,
                };
            }
        }
    }
    let session = state.slack.session();
    let channel = row.channel.as_deref().map(|c| SlackChannelId::new(c.to_string()));
    let call = async {
        match (row.kind, channel) {
            (Kind::Update, Some(channel)) => {
                let ts = SlackTs::new(thread_ts.unwrap_or_default());
                let req = SlackApiChatUpdateRequest::new(channel, content, ts);
                session.chat_update(&req).await.map(|r| Some(r.ts.to_string()))
            }
            (Kind::Respond, _) => {
                let url = row.response_url.clone().unwrap_or_default();
                let url = match url::Url::parse(&url) {
                    Ok(u) => u,
                    Err(e) => {
                        return Err(SlackClientError::SystemError(
                            SlackClientSystemError::new().with_message(format!("bad response_url: {e}")),
                        ));
                    }
                };
                let req = SlackApiPostWebhookMessageRequest::new(content);
                state
                    .slack
                    .client
                    .respond_to_event(&SlackResponseUrl::new(url), &req)
                    .await
                    .map(|_| None)
            }
            (_, Some(channel)) => {
                let req =
                    SlackApiChatPostMessageRequest::new(channel, content).opt_thread_ts(thread_ts.map(SlackTs::new));
                session.chat_post_message(&req).await.map(|r| Some(r.ts.to_string()))
            }
            (_, None) => Err(SlackClientError::SystemError(
                SlackClientSystemError::new().with_message("row has no channel".into()),
            )),
        }
    };
    match tokio::time::timeout(SEND_TIMEOUT, call).await {
        Err(_) => Outcome::Retry {
            after_ms: backoff_ms(state, row.attempts),
            error: "timed out".into(),
            counts: true,
        },
        Ok(Ok(ts)) => Outcome::Sent(ts),
        Ok(Err(e)) => classify(state, row.attempts, &e),
    }
}

/// Sort a Slack client error into retry-later or give-up.
fn classify(state: &AppState, attempts: i64, e: &SlackClientError) -> Outcome {
    let backoff = backoff_ms(state, attempts);
    match e {
        SlackClientError::RateLimitError(r) => Outcome::Retry {
            after_ms: r.retry_after.map(|d| d.as_millis() as i64).unwrap_or(1000).max(1),
            error: "rate limited (429)".into(),
            counts: false,
        },
        SlackClientError::ApiError(api) => match api.code.as_str() {
            "ratelimited"
            | "rate_limited"
            | "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout" => Outcome::Retry {
                after_ms: backoff,
                error: api.code.clone(),
                counts: true,
            },
            other => Outcome::Failed(other.to_string()),
        },
        SlackClientError::HttpError(h) if h.status_code.is_server_error() => Outcome::Retry {
            after_ms: backoff,
            error: format!("HTTP {}", h.status_code.as_u16()),
            counts: true,
        },
        SlackClientError::HttpError(h) => Outcome::Failed(format!("HTTP {}", h.status_code.as_u16())),
        SlackClientError::ProtocolError(_) => Outcome::Failed("Slack answered with a body we could not read".into()),
        other => Outcome::Retry {
            after_ms: backoff,
            error: short(&other.to_string()),
            counts: true,
        },
    }
}

fn backoff_ms(state: &AppState, attempts: i64) -> i64 {
    let cfg = &state.config.outbox;
    let base = cfg.base_backoff.as_millis() as i64;
    let exp = base.saturating_mul(1_i64 << attempts.clamp(0, 16));
    let capped = exp.min(cfg.max_backoff.as_millis() as i64);
    // Jitter so replicas and lanes do not retry in lockstep.
    capped / 2 + rand::random_range(0..=capped / 2)
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

async fn finish(state: &AppState, owner: &str, row: &Row_, outcome: Outcome) -> anyhow::Result<()> {
    let now = state.clock.now_ms();
    let max = i64::from(state.config.outbox.max_attempts);
    let metric = |outcome: &str| {
        state
            .metrics
            .inc("runbook_bot_outbox_total", format!("outcome=\"{outcome}\""))
    };
    match outcome {
        Outcome::Sent(ts) => {
            let mut tx = state.store.begin().await?;
            sqlx::query(
                "UPDATE outbox SET status = 'sent', sent_ts = $1, finished_at = $2, attempts = attempts + 1,
                 lease_owner = NULL, lease_until = NULL WHERE id = $3 AND lease_owner = $4",
            )
            .bind(ts.clone())
            .bind(now)
            .bind(row.id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
            if let (Kind::Post, Some(key), Some(channel), Some(ts)) = (row.kind, &row.message_key, &row.channel, ts) {
                sqlx::query(
                    "INSERT INTO slack_messages (key, channel, ts) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
                )
                .bind(key)
                .bind(channel)
                .bind(ts)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            metric("sent");
        }
        Outcome::Superseded => {
            release(state, owner, row.id, "superseded", None, now, 0).await?;
            metric("superseded");
        }
        Outcome::Wait(ms) => {
            sqlx::query("UPDATE outbox SET next_attempt_at = $1, lease_owner = NULL, lease_until = NULL WHERE id = $2 AND lease_owner = $3")
                .bind(now + ms)
                .bind(row.id)
                .bind(owner)
                .execute(&state.store.pool)
                .await?;
        }
        Outcome::Retry {
            after_ms,
            error,
            counts,
        } if !counts || row.attempts + 1 < max => {
            tracing::info!(outbox.id = row.id, lane = %row.lane, retry_in_ms = after_ms, error = %error, "slack write deferred");
            sqlx::query(
                "UPDATE outbox SET attempts = attempts + $1, next_attempt_at = $2, last_error = $3,
                 lease_owner = NULL, lease_until = NULL WHERE id = $4 AND lease_owner = $5",
            )
            .bind(i64::from(counts))
            .bind(now + after_ms)
            .bind(error)
            .bind(row.id)
            .bind(owner)
            .execute(&state.store.pool)
            .await?;
            metric("retry");
        }
        Outcome::Retry { error, .. } => {
            give_up(
                state,
                owner,
                row,
                format!("{error} (after {} attempts)", row.attempts + 1),
                now,
            )
            .await?
        }
        Outcome::Failed(error) => give_up(state, owner, row, error, now).await?,
    }
    Ok(())
}

async fn release(
    state: &AppState,
    owner: &str,
    id: i64,
    status: &str,
    error: Option<&str>,
    now: i64,
    attempts: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE outbox SET status = $1, last_error = $2, finished_at = $3, attempts = attempts + $4,
         lease_owner = NULL, lease_until = NULL WHERE id = $5 AND lease_owner = $6",
    )
    .bind(status)
    .bind(error.map(str::to_string))
    .bind(now)
    .bind(attempts)
    .bind(id)
    .bind(owner)
    .execute(&state.store.pool)
    .await?;
    Ok(())
}

/// A permanent failure: recorded on the row, logged, counted, added to the
/// incident's timeline, and reported to whoever caused the message.
async fn give_up(state: &AppState, owner: &str, row: &Row_, error: String, now: i64) -> anyhow::Result<()> {
    tracing::error!(outbox.id = row.id, lane = %row.lane, kind = row.kind.as_str(), incident.id = ?row.incident_id, error = %error, "slack write failed for good");
    state
        .metrics
        .inc("runbook_bot_outbox_total", "outcome=\"failed\"".into());
    let mut tx = state.store.begin().await?;
    sqlx::query(
        "UPDATE outbox SET status = 'failed', last_error = $1, finished_at = $2, attempts = attempts + 1,
         lease_owner = NULL, lease_until = NULL WHERE id = $3 AND lease_owner = $4",
    )
    .bind(&error)
    .bind(now)
    .bind(row.id)
    .bind(owner)
    .execute(&mut *tx)
    .await?;
    let where_ = row
        .channel
        .as_deref()
        .map(|c| format!("<#{c}>"))
        .unwrap_or_else(|| "a response URL".into());
    if let Some(incident) = row.incident_id {
        // Timeline text is plain (escaped when shown), so no mrkdwn channel link.
        let place = row
            .channel
            .as_deref()
            .map(|c| format!("channel {c}"))
            .unwrap_or_default();
        let text = format!("A message to {place} was not delivered: {error}");
        crate::incident::store::add_event(&mut tx, incident, now, "bot", "delivery_failed", &text).await?;
    }
    if let (Some(url), false) = (&row.notify_url, row.kind == Kind::Respond) {
        let hint = match error.as_str() {
            "channel_not_found" | "not_in_channel" => {
                " Invite the bot to the channel (`/invite @runbook-bot`) or fix `slack.incident_channel`."
            }
            _ => "",
        };
        let text = format!(
            ":warning: A message to {where_} could not be delivered: `{}`.{hint}",
            crate::slack::text::escape_entities(&error.replace('`', "'"))
        );
        super::enqueue(&mut tx, &[Outgoing::respond(url, text_content(text))], None, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

enum KnownTs {
    Known(String),
    NotYet,
    Lost,
}

async fn known_ts(state: &AppState, key: &str) -> anyhow::Result<KnownTs> {
    let ts: Option<String> = sqlx::query_scalar("SELECT ts FROM slack_messages WHERE key = $1")
        .bind(key)
        .fetch_optional(&state.store.pool)
        .await?;
    if let Some(ts) = ts {
        return Ok(KnownTs::Known(ts));
    }
    let post: Option<String> =
        sqlx::query_scalar("SELECT status FROM outbox WHERE message_key = $1 AND kind = 'post' ORDER BY id LIMIT 1")
            .bind(key)
            .fetch_optional(&state.store.pool)
            .await?;
    Ok(match post.as_deref() {
        Some("pending") => KnownTs::NotYet,
        _ => KnownTs::Lost,
    })
}

async fn newer_update_exists(state: &AppState, row: &Row_) -> anyhow::Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE lane = $1 AND kind = 'update' AND message_key = $2 AND status = 'pending' AND id > $3",
    )
    .bind(&row.lane)
    .bind(row.message_key.clone())
    .bind(row.id)
    .fetch_one(&state.store.pool)
    .await?;
    Ok(n > 0)
}

pub fn text_content(text: String) -> SlackMessageContent {
    SlackMessageContent::new().with_text(text)
}

/// Convenience for callers that only have a channel and text.
pub fn plain(channel: &ChannelId, thread_ts: Option<String>, text: String) -> Outgoing {
    Outgoing::post(channel, thread_ts, text_content(text))
}
