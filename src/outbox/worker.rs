//! Drains the outbox into Slack.
//!
//! A row is claimed with a lease (a conditional update), so several replicas
//! sharing a PostgreSQL store never send the same row at once. How a
//! delivery ends is decided in `delivery`; this loop records it, and a
//! permanent failure is logged, counted, put on the incident's timeline and
//! reported to the person whose command caused it.
//!
//! Slack has no idempotency key for `chat.postMessage`: when Slack accepted
//! a post but we never learnt it (a crash before the row is marked sent, or
//! a timeout or 5xx after Slack processed it), that one post is repeated on
//! retry. A 429, a refused connection or an `ok:false` never repeats one.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::delivery::{Delivery, Outcome};
use super::pacing::Pacer;
use super::rows::{self, OutboxRow};
use super::{Kind, Outbox, Outgoing, RoomSteps, text_content};
use crate::config::OutboxConfig;
use crate::metrics::Metrics;
use crate::slack::client::SlackApi;

const IDLE_POLL: Duration = Duration::from_millis(200);
/// Looking for due rows reads the head of every pending queue: thousands
/// during an alert storm, while commits wake the worker hundreds of times a
/// second. One look per gap at most bounds that work; a message waits at most
/// this much longer, next to Slack's pace of one post per second.
const MIN_GAP: Duration = Duration::from_millis(25);
/// After a look that found only posts waiting for their lane's pace, the next
/// look waits for the soonest token, up to this long: asking again on every
/// commit would re-read thousands of heads 40 times a second to send one
/// post a second (a third of a core during `/incident status` at 3,000/s).
/// A row for another lane waits at most this much longer.
const MAX_PACED_GAP: Duration = Duration::from_millis(250);

/// What one look did: delivered something, or else how soon the paced lane
/// it skipped gets a token (ms).
struct Look {
    progressed: bool,
    paced_ms: Option<i64>,
}

/// The handles the worker uses, and nothing else.
pub struct Worker {
    pub outbox: Outbox,
    pub slack: SlackApi,
    pub metrics: Arc<Metrics>,
    pub config: OutboxConfig,
    /// Runs the steps of incidents' dedicated channels.
    pub rooms: Option<Arc<dyn RoomSteps>>,
}

impl Worker {
    pub async fn run(self, cancel: CancellationToken) {
        let owner = uuid::Uuid::new_v4().to_string();
        let mut pacer = Pacer::new(self.config.per_channel_per_second, self.config.burst);
        let (mut looked, mut gap) = (tokio::time::Instant::now() - MIN_GAP, MIN_GAP);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(looked + gap) => {}
            }
            looked = tokio::time::Instant::now();
            gap = MIN_GAP;
            match self.drain(&owner, &mut pacer, &cancel).await {
                Ok(Look { progressed: true, .. }) => continue,
                Ok(Look { paced_ms, .. }) => gap = paced_gap(paced_ms),
                Err(e) => tracing::warn!(error = ?e, "outbox drain failed; retrying"),
            }
            pacer.prune(self.outbox.clock.now_ms());
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.outbox.wake.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    /// Deliver what is due; after progress, call again at once.
    async fn drain(&self, owner: &str, pacer: &mut Pacer, cancel: &CancellationToken) -> anyhow::Result<Look> {
        let store = &self.outbox.store;
        let rows = rows::due(store, self.outbox.clock.now_ms())
            .await
            .context("reading due outbox rows")?;
        let delivery = Delivery {
            store,
            slack: &self.slack,
            config: &self.config,
            rooms: self.rooms.as_deref(),
        };
        let (mut progressed, mut paced_ms) = (false, None::<i64>);
        for row in rows {
            if cancel.is_cancelled() {
                break;
            }
            // Room steps are Slack writes too (`conversations.create` is Tier 2).
            let paced = matches!(row.kind, Kind::Post | Kind::Room);
            if paced && let Err(wait) = pacer.try_take(&row.lane, self.outbox.clock.now_ms()) {
                paced_ms = Some(paced_ms.map_or(wait, |w| w.min(wait)));
                continue;
            }
            let claimed = rows::claim(store, owner, row.id, self.outbox.clock.now_ms())
                .await
                .with_context(|| format!("claiming outbox row {}", row.id))?;
            if !claimed {
                continue;
            }
            let outcome = delivery.deliver(&row).await;
            self.finish(owner, &row, outcome)
                .await
                .with_context(|| format!("recording the delivery of outbox row {}", row.id))?;
            progressed = true;
        }
        Ok(Look { progressed, paced_ms })
    }

    async fn finish(&self, owner: &str, row: &OutboxRow, outcome: Outcome) -> anyhow::Result<()> {
        let store = &self.outbox.store;
        let now = self.outbox.clock.now_ms();
        let max = i64::from(self.config.max_attempts);
        let metric = |outcome: &'static str| self.metrics.outbox_delivery(outcome);
        match outcome {
            Outcome::Sent(ts) => {
                rows::mark_sent(store, owner, row, None, ts, now).await?;
                metric("sent");
                self.observe_sent(row, now);
            }
            Outcome::SentIn { channel, ts } => {
                rows::mark_sent(store, owner, row, Some(&channel), ts, now).await?;
                metric("sent");
                self.observe_sent(row, now);
            }
            Outcome::Handled(error) => {
                tracing::warn!(outbox.id = row.id, incident.id = ?row.incident_id, error = %error, "room step failed; degraded to the thread");
                let mut tx = store.begin().await?;
                rows::mark_failed(&mut tx, owner, row.id, &error, now).await?;
                tx.commit().await?;
                metric("degraded");
            }
            Outcome::Superseded => {
                rows::mark_superseded(store, owner, row.id, now).await?;
                metric("superseded");
            }
            Outcome::NotYet { after_ms } => {
                let (no_error, not_an_attempt) = (None, false);
                rows::retry_at(store, owner, row.id, now + after_ms, no_error, not_an_attempt).await?;
            }
            Outcome::Retry {
                after_ms,
                error,
                counts_as_attempt,
            } if !counts_as_attempt || row.attempts + 1 < max => {
                tracing::info!(outbox.id = row.id, lane = %row.lane, retry_in_ms = after_ms, error = %error, "slack write deferred");
                rows::retry_at(store, owner, row.id, now + after_ms, Some(&error), counts_as_attempt).await?;
                metric("retry");
            }
            Outcome::Retry { error, .. } => {
                let error = format!("{error} (after {} attempts)", row.attempts + 1);
                self.give_up(owner, row, error, now).await?
            }
            Outcome::Failed(error) => self.give_up(owner, row, error, now).await?,
        }
        Ok(())
    }

    /// How long a delivered row waited, and for an alert's first post (its
    /// own, or a grouped message listing it first) how long since its
    /// webhook arrived (on the app's clock, like the row's times).
    fn observe_sent(&self, row: &OutboxRow, now: i64) {
        let since = |t: i64| Duration::from_millis(u64::try_from(now - t).unwrap_or(0));
        let intake = row.intake_at.map(since);
        self.metrics
            .outbox_sent(row.kind.as_str(), row.priority > 0, since(row.created_at), intake);
    }

    /// A permanent failure: recorded on the row, logged, counted, added to
    /// the incident's timeline, and reported to whoever caused the message.
    async fn give_up(&self, owner: &str, row: &OutboxRow, error: String, now: i64) -> anyhow::Result<()> {
        tracing::error!(outbox.id = row.id, lane = %row.lane, kind = row.kind.as_str(), incident.id = ?row.incident_id, error = %error, "slack write failed for good");
        self.metrics.outbox_delivery("failed");
        let mut tx = self.outbox.store.begin().await?;
        rows::mark_failed(&mut tx, owner, row.id, &error, now).await?;
        if let Some(incident) = row.incident_id {
            // Timeline text is plain (escaped when shown), so no mrkdwn channel link.
            let place = row
                .channel
                .as_deref()
                .map(|c| format!("channel {c}"))
                .unwrap_or_default();
            let text = format!("A message to {place} was not delivered: {error}");
            crate::store::timeline::add_event(&mut tx, incident, now, "bot", "delivery_failed", &text).await?;
        }
        // A room step's owner tells people itself (`RoomSteps`); the generic
        // notice would name the incident channel as undeliverable.
        if let (Some(url), false) = (&row.notify_url, matches!(row.kind, Kind::Respond | Kind::Room)) {
            let text = failure_notice(row.channel.as_deref(), &error);
            super::enqueue(&mut tx, &[Outgoing::respond(url, text_content(text))], None, now).await?;
        }
        self.outbox.commit(tx).await?;
        Ok(())
    }
}

/// The gap before the next look after one that delivered nothing.
fn paced_gap(paced_ms: Option<i64>) -> Duration {
    match paced_ms {
        Some(ms) => Duration::from_millis(u64::try_from(ms).unwrap_or(0)).clamp(MIN_GAP, MAX_PACED_GAP),
        None => MIN_GAP,
    }
}

/// What the person whose command caused an undeliverable message is told.
fn failure_notice(channel: Option<&str>, error: &str) -> String {
    let destination = channel
        .map(|c| format!("<#{c}>"))
        .unwrap_or_else(|| "a response URL".into());
    let hint = match error {
        "channel_not_found" | "not_in_channel" => {
            " Invite the bot to the channel (`/invite @runbook-bot`) or fix `slack.incident_channel`."
        }
        _ => "",
    };
    format!(
        ":warning: A message to {destination} could not be delivered: `{}`.{hint}",
        crate::slack::text::escape_entities(&error.replace('`', "'"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_look_that_only_met_paced_lanes_waits_for_the_soonest_token_within_bounds() {
        assert_eq!(paced_gap(None), MIN_GAP);
        assert_eq!(paced_gap(Some(0)), MIN_GAP);
        assert_eq!(paced_gap(Some(120)), Duration::from_millis(120));
        assert_eq!(paced_gap(Some(1000)), MAX_PACED_GAP);
        assert_eq!(paced_gap(Some(-5)), MIN_GAP);
    }

    #[test]
    fn failure_notices_name_the_channel_and_escape_the_error() {
        let n = failure_notice(Some("C1"), "not_in_channel");
        assert!(n.contains("<#C1>") && n.contains("/invite @runbook-bot"), "{n}");
        let n = failure_notice(None, "<!channel> `x`");
        assert!(
            n.contains("a response URL") && !n.contains("<!channel>") && !n.contains("`x`"),
            "{n}"
        );
    }
}
