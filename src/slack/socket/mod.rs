//! Socket Mode: instead of Slack POSTing to a public URL, the bot asks
//! `apps.connections.open` (at `SLACK_API_URL`, with the app-level token)
//! for a WebSocket URL and receives slash commands, interactions and events
//! over it, acknowledging each envelope within 3 s. Several connections run
//! at once (Slack spreads envelopes over them and may redeliver an unacked
//! one on another); each reconnects on close, error or a `disconnect`
//! message after a bounded, jittered backoff, and all stop on shutdown.
//!
//! This module is transport only: what an envelope means is the `Handler`'s
//! business (`inbound::socket`, which shares the HTTP routes' code).
//!
//! Why not slack-morphism's `SlackClientSocketModeListener`: we use its Web
//! API client for `apps.connections.open` (so `SLACK_API_URL` applies) and
//! its models for the payloads, but its listener (2.31)
//! cannot do three things asked of this one. After a close or a
//! `disconnect` it reconnects at once (`restart_client` → `start(0)`), and
//! retries a failed open at a fixed `reconnect_timeout_in_seconds` without
//! jitter, so a server that keeps closing the socket is hammered and
//! replicas reconnect in step. Its readers and writers are detached
//! `tokio::spawn`s with no handle, so shutdown can neither wait for them nor
//! let envelopes in flight send their acks. And each connection awaits the
//! callback before reading its next frame. The WebSocket itself is
//! tokio-tungstenite, the version slack-morphism already builds.

mod backoff;
mod connection;
pub mod envelope;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::future::BoxFuture;
use slack_morphism::prelude::*;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use self::backoff::Backoff;
use self::connection::Ended;
pub use self::envelope::{Ack, Body, Envelope};
use crate::metrics::Metrics;
use crate::slack::client::SlackApi;

/// Answers one envelope; `None` leaves it unacknowledged, so Slack sends it
/// again (the HTTP routes' 500).
pub type Handler = Arc<dyn Fn(Envelope) -> BoxFuture<'static, Option<Ack>> + Send + Sync>;

const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A connection that lasted this long was healthy: the backoff starts over.
const HEALTHY: Duration = Duration::from_secs(30);
/// Like the HTTP routes' body limit; Slack's envelopes are a few KiB.
const MAX_MESSAGE: usize = 1024 * 1024;
/// For `apps.connections.open` and for the WebSocket handshake.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct SocketMode {
    /// A Web API client holding the app-level token.
    api: SlackApi,
    connections: u32,
    handler: Handler,
    metrics: Arc<Metrics>,
}

/// `runbook_bot_socket_total{event=…}`: connections, their ends, bad frames.
pub(crate) fn count(metrics: &Metrics, event: &'static str) {
    metrics.socket(event);
}

impl SocketMode {
    pub fn new(api: SlackApi, connections: u32, handler: Handler, metrics: Arc<Metrics>) -> Self {
        SocketMode {
            api,
            connections: connections.max(1),
            handler,
            metrics,
        }
    }

    /// Keep `connections` sessions up until `cancel`; returns once every
    /// one has closed its socket.
    pub async fn run(self, cancel: CancellationToken) {
        let slots = (0..self.connections).map(|slot| self.keep_connected(slot, &cancel));
        futures_util::future::join_all(slots).await;
    }

    async fn keep_connected(&self, slot: u32, cancel: &CancellationToken) {
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_CAP);
        loop {
            let started = Instant::now();
            let opened = tokio::select! {
                _ = cancel.cancelled() => return,
                opened = self.open() => opened,
            };
            let ended = match opened {
                Ok(ws) => {
                    count(&self.metrics, "connected");
                    tracing::info!(slot, "Socket Mode connected");
                    connection::run(ws, &self.handler, &self.metrics, cancel).await
                }
                Err(e) => Ended::Failed(format!("{e:#}")),
            };
            let event = match &ended {
                Ended::Shutdown => return,
                Ended::Disconnect(reason) => {
                    tracing::info!(slot, reason, "Slack asked to reconnect");
                    "disconnect_requested"
                }
                Ended::Closed => {
                    tracing::info!(slot, "Socket Mode connection closed by Slack");
                    "closed"
                }
                Ended::Failed(why) => {
                    tracing::warn!(slot, why, "Socket Mode connection failed");
                    "failed"
                }
            };
            count(&self.metrics, event);
            if started.elapsed() >= HEALTHY {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            tracing::debug!(slot, delay_ms = delay.as_millis() as u64, "reconnecting");
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Ask for a fresh URL (each is single-use) and connect to it. The URL
    /// carries a ticket, so it is never logged.
    async fn open(&self) -> anyhow::Result<connection::Ws> {
        let session = self.api.session();
        let request = SlackApiAppsConnectionOpenRequest::new();
        let opened = tokio::time::timeout(OPEN_TIMEOUT, session.apps_connections_open(&request))
            .await
            .context("apps.connections.open timed out")?
            .context("apps.connections.open failed")?;
        let url = opened.url.0.to_string();
        let limits = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let connect = tokio_tungstenite::connect_async_with_config(url, Some(limits), true);
        let (ws, _) = tokio::time::timeout(OPEN_TIMEOUT, connect)
            .await
            .context("the WebSocket handshake timed out")?
            .context("the WebSocket handshake failed")?;
        Ok(ws)
    }
}
