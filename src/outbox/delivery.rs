//! Delivering one outbox row to Slack and sorting the answer into sent,
//! retry later (429 with its `Retry-After`, 5xx, connection errors,
//! `ratelimited`/`internal_error`, with exponential backoff), failed for good
//! (`channel_not_found`, `not_in_channel`, …), superseded or not yet.

use std::time::Duration;

use slack_morphism::errors::{SlackClientError, SlackClientSystemError};
use slack_morphism::prelude::*;

use super::rows::{self, KnownTs, OutboxRow};
use super::{Kind, RoomSteps};
use crate::config::OutboxConfig;
use crate::slack::client::SlackApi;
use crate::store::Store;

const SEND_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Slack took it; a post's `ts` when there is one.
    Sent(Option<String>),
    /// Slack took it in another channel than the row names (a message
    /// meant for an incident's room).
    SentIn {
        channel: String,
        ts: Option<String>,
    },
    /// Could not be done, and whoever did the step has already recorded
    /// and reported it (a room that could not be made): no generic notice.
    Handled(String),
    Retry {
        after_ms: i64,
        error: String,
        /// False for a 429: being rate limited is not the message's fault,
        /// so it does not use up an attempt.
        counts_as_attempt: bool,
    },
    Failed(String),
    /// A newer update of the same message is queued behind this one.
    Superseded,
    /// The message this row needs has no `ts` yet, or a room step stopped
    /// at its time budget; look again after this long (not an attempt).
    NotYet {
        after_ms: i64,
    },
}

/// What delivery needs: where dependent messages are looked up, the Slack
/// client and the retry settings.
pub struct Delivery<'a> {
    pub store: &'a Store,
    pub slack: &'a SlackApi,
    pub config: &'a OutboxConfig,
    pub rooms: Option<&'a dyn RoomSteps>,
}

/// Where a row goes: `channel` when it is not the row's own.
struct Destination {
    channel: Option<String>,
    ts: Option<String>,
}

impl Delivery<'_> {
    pub async fn deliver(&self, row: &OutboxRow) -> Outcome {
        if row.kind == Kind::Room {
            return match self.rooms {
                Some(rooms) => rooms.deliver(row).await,
                None => Outcome::Failed("no room steps in this process".into()),
            };
        }
        let content: SlackMessageContent = match serde_json::from_str(&row.payload) {
            Ok(c) => c,
            Err(e) => return Outcome::Failed(format!("stored payload does not decode: {e}")),
        };
        let dest = match self.destination(row).await {
            Ok(d) => d,
            Err(outcome) => return outcome,
        };
        if row.kind == Kind::Update {
            match rows::newer_update_exists(self.store, row).await {
                Ok(true) => return Outcome::Superseded,
                Ok(false) => {}
                Err(e) => return self.store_error(e),
            }
        }
        let channel = dest.channel.clone();
        match tokio::time::timeout(SEND_TIMEOUT, self.send(row, content, dest)).await {
            Err(_) => Outcome::Retry {
                after_ms: backoff_ms(self.config, row.attempts),
                error: "timed out".into(),
                counts_as_attempt: true,
            },
            Ok(Ok(ts)) => match channel {
                Some(channel) => Outcome::SentIn { channel, ts },
                None => Outcome::Sent(ts),
            },
            Ok(Err(e)) => classify(self.config, row.attempts, &e),
        }
    }

    /// A message meant for an incident's room goes there once it is made
    /// (top level), waits while it is being made, and otherwise goes to the
    /// incident's thread. Anything else goes where `thread_ts` says.
    async fn destination(&self, row: &OutboxRow) -> Result<Destination, Outcome> {
        let room_of = row.thread_key.as_deref().and_then(super::steps::room_of_key);
        let Some(incident) = room_of else {
            return self.thread_ts(row, row.thread_key.as_deref()).await;
        };
        match rows::room_of(self.store, incident).await {
            Ok(rows::RoomDest::Room(channel)) => Ok(Destination {
                channel: Some(channel),
                ts: None,
            }),
            Ok(rows::RoomDest::NotYet) => Err(Outcome::NotYet { after_ms: 500 }),
            Ok(rows::RoomDest::Thread) => {
                let key = super::incident_root_key(incident);
                self.thread_ts(row, Some(&key)).await
            }
            Err(e) => Err(self.store_error(e)),
        }
    }

    /// The thread to reply in, or the message to update, may be known only
    /// by key until its own post is delivered (same lane, so it goes first).
    /// An update goes to the channel its message was posted in, a reply to
    /// the channel of its thread's root (a message meant for a room that
    /// falls back to the thread in #incidents names the room as its channel).
    async fn thread_ts(&self, row: &OutboxRow, thread_key: Option<&str>) -> Result<Destination, Outcome> {
        let key = match row.kind {
            Kind::Update => row.message_key.as_deref(),
            _ => thread_key,
        };
        let Some(key) = key else {
            return Ok(Destination {
                channel: None,
                ts: row.thread_ts.clone(),
            });
        };
        match rows::known_ts(self.store, key).await {
            Ok(KnownTs::Known(channel, ts)) => Ok(Destination {
                channel: (row.channel.as_deref() != Some(channel.as_str())).then_some(channel),
                ts: Some(ts),
            }),
            Ok(KnownTs::Lost) => Err(Outcome::Failed(format!(
                "the message `{key}` it depends on was never delivered"
            ))),
            Ok(KnownTs::NotYet) => Err(Outcome::NotYet { after_ms: 500 }),
            Err(e) => Err(self.store_error(e)),
        }
    }

    fn store_error(&self, e: anyhow::Error) -> Outcome {
        Outcome::Retry {
            after_ms: 1000,
            error: format!("{e:#}"),
            counts_as_attempt: true,
        }
    }

    async fn send(
        &self,
        row: &OutboxRow,
        content: SlackMessageContent,
        dest: Destination,
    ) -> Result<Option<String>, SlackClientError> {
        let session = self.slack.session();
        let thread_ts = dest.ts;
        let channel = dest
            .channel
            .as_deref()
            .or(row.channel.as_deref())
            .map(|c| SlackChannelId::new(c.to_string()));
        match (row.kind, channel) {
            (Kind::Update, Some(channel)) => {
                let ts = SlackTs::new(thread_ts.unwrap_or_default());
                let req = SlackApiChatUpdateRequest::new(channel, content, ts);
                session.chat_update(&req).await.map(|r| Some(r.ts.to_string()))
            }
            (Kind::Respond, _) => {
                let url = url::Url::parse(row.response_url.as_deref().unwrap_or_default())
                    .map_err(|e| system_error(format!("bad response_url: {e}")))?;
                let req = SlackApiPostWebhookMessageRequest::new(content);
                self.slack
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
            (_, None) => Err(system_error("row has no channel".into())),
        }
    }
}

fn system_error(message: String) -> SlackClientError {
    SlackClientError::SystemError(SlackClientSystemError::new().with_message(message))
}

/// Sort a Slack client error into retry-later or give-up.
pub fn classify(config: &OutboxConfig, attempts: i64, e: &SlackClientError) -> Outcome {
    let backoff = backoff_ms(config, attempts);
    let retry = |error: String| Outcome::Retry {
        after_ms: backoff,
        error,
        counts_as_attempt: true,
    };
    match e {
        SlackClientError::RateLimitError(r) => Outcome::Retry {
            after_ms: r.retry_after.map(|d| d.as_millis() as i64).unwrap_or(1000).max(1),
            error: "rate limited (429)".into(),
            counts_as_attempt: false,
        },
        SlackClientError::ApiError(api) => match api.code.as_str() {
            "ratelimited"
            | "rate_limited"
            | "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout" => retry(api.code.clone()),
            other => Outcome::Failed(other.to_string()),
        },
        SlackClientError::HttpError(h) if h.status_code.is_server_error() => {
            retry(format!("HTTP {}", h.status_code.as_u16()))
        }
        SlackClientError::HttpError(h) => Outcome::Failed(format!("HTTP {}", h.status_code.as_u16())),
        SlackClientError::ProtocolError(_) => Outcome::Failed("Slack answered with a body we could not read".into()),
        other => retry(other.to_string().chars().take(200).collect()),
    }
}

/// Exponential backoff from `base_backoff`, doubled per attempt, capped at
/// `max_backoff`, with jitter in its upper half so replicas and lanes do not
/// retry in lockstep.
pub fn backoff_ms(config: &OutboxConfig, attempts: i64) -> i64 {
    let base = config.base_backoff.as_millis() as i64;
    let exp = base.saturating_mul(1_i64 << attempts.clamp(0, 16));
    let capped = exp.min(config.max_backoff.as_millis() as i64);
    capped / 2 + rand::random_range(0..=capped / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slack_morphism::errors::{SlackClientApiError, SlackClientHttpError, SlackRateLimitError};

    fn config() -> OutboxConfig {
        OutboxConfig {
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            ..OutboxConfig::default()
        }
    }

    #[test]
    fn backoff_doubles_per_attempt_with_jitter_and_a_cap() {
        let c = config();
        for _ in 0..50 {
            let first = backoff_ms(&c, 0);
            assert!((250..=500).contains(&first), "{first}");
            let third = backoff_ms(&c, 2);
            assert!((1000..=2000).contains(&third), "{third}");
            let late = backoff_ms(&c, 40);
            assert!((30_000..=60_000).contains(&late), "{late}");
        }
    }

    #[test]
    fn rate_limits_wait_retry_after_and_do_not_count() {
        let e = SlackClientError::RateLimitError(SlackRateLimitError::new().with_retry_after(Duration::from_secs(2)));
        assert_eq!(
            classify(&config(), 3, &e),
            Outcome::Retry {
                after_ms: 2000,
                error: "rate limited (429)".into(),
                counts_as_attempt: false
            }
        );
    }

    #[test]
    fn transient_api_and_server_errors_retry_permanent_ones_fail() {
        let api = |code: &str| SlackClientError::ApiError(SlackClientApiError::new(code.to_string()));
        assert!(matches!(
            classify(&config(), 0, &api("ratelimited")),
            Outcome::Retry {
                counts_as_attempt: true,
                ..
            }
        ));
        assert!(matches!(
            classify(&config(), 0, &api("internal_error")),
            Outcome::Retry { .. }
        ));
        assert_eq!(
            classify(&config(), 0, &api("channel_not_found")),
            Outcome::Failed("channel_not_found".into())
        );
        let http = |code: u16| {
            SlackClientError::HttpError(SlackClientHttpError::new(
                axum::http::StatusCode::from_u16(code).unwrap(),
            ))
        };
        assert!(matches!(
            classify(&config(), 0, &http(503)),
            Outcome::Retry { ref error, .. } if error == "HTTP 503"
        ));
        assert_eq!(classify(&config(), 0, &http(404)), Outcome::Failed("HTTP 404".into()));
    }
}
