//! One Socket Mode session on an open WebSocket: read frames, hand each
//! envelope to the handler in a task of its own (a slow command never
//! delays reading the next frame, nor another envelope's ack), write the
//! acks, and notice a peer that went silent. It returns why it ended;
//! `mod.rs` decides when to connect again. On the way out, envelopes still
//! being handled get up to `DRAIN` to have their acks sent on this socket.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::envelope::{self, Ack, Frame};
use super::{Handler, count};
use crate::metrics::Metrics;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// We ping this often; Slack answers with a pong (and pings us too).
const PING_EVERY: Duration = Duration::from_secs(10);
/// Nothing at all heard for this long: the connection is dead.
const SILENT_LIMIT: Duration = Duration::from_secs(35);
/// Envelopes handled at once per connection. Beyond it an envelope is left
/// unacknowledged, and Slack sends it again later: the Socket Mode form of
/// HTTP's 503, so a burst cannot pile up tasks waiting on the state store.
const MAX_IN_FLIGHT: usize = 64;

/// Slack's ack deadline: how long in-flight envelopes may still answer.
const DRAIN: Duration = Duration::from_secs(3);

#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The bot is stopping.
    Shutdown,
    /// Slack asked us to reconnect (`refresh_requested`, `link_disabled`…).
    Disconnect(String),
    /// The peer closed the socket.
    Closed,
    /// A read or write failed, or the peer went silent.
    Failed(String),
}

pub async fn run(ws: Ws, handler: &Handler, metrics: &Arc<Metrics>, cancel: &CancellationToken) -> Ended {
    let (mut sink, mut stream) = ws.split();
    let (acks, mut to_send) = mpsc::unbounded_channel::<String>();
    let inflight = TaskTracker::new();
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let mut heard = Instant::now();
    let ended = loop {
        tokio::select! {
            _ = cancel.cancelled() => break Ended::Shutdown,
            Some(ack) = to_send.recv() => {
                if let Err(e) = sink.send(Message::text(ack)).await {
                    break Ended::Failed(format!("writing an ack: {e}"));
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > SILENT_LIMIT {
                    break Ended::Failed(format!("nothing heard for {} s", SILENT_LIMIT.as_secs()));
                }
                if let Err(e) = sink.send(Message::Ping(Default::default())).await {
                    break Ended::Failed(format!("writing a ping: {e}"));
                }
            }
            message = stream.next() => {
                heard = Instant::now();
                match message {
                    None | Some(Ok(Message::Close(_))) => break Ended::Closed,
                    Some(Err(e)) => break Ended::Failed(format!("reading: {e}")),
                    Some(Ok(Message::Text(text))) => {
                        if let Some(end) = on_text(text.as_str(), handler, metrics, &acks, &inflight) {
                            break end;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        count(metrics, "invalid_frame");
                        tracing::warn!("Socket Mode sent a binary frame; ignored");
                    }
                    // Pings are answered by tungstenite; pongs only count as heard.
                    Some(Ok(_)) => {}
                }
            }
        }
    };
    drain(&mut sink, &mut to_send, &inflight).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    ended
}

/// Act on one text frame; `Some` ends the session.
fn on_text(
    text: &str,
    handler: &Handler,
    metrics: &Arc<Metrics>,
    acks: &mpsc::UnboundedSender<String>,
    inflight: &TaskTracker,
) -> Option<Ended> {
    match envelope::parse(text) {
        Frame::Hello => {
            tracing::debug!("Socket Mode connection ready");
            None
        }
        Frame::Disconnect { reason } if reason == "warning" => {
            tracing::info!(reason, "Slack will refresh this Socket Mode connection soon");
            None
        }
        Frame::Disconnect { reason } => Some(Ended::Disconnect(reason)),
        Frame::Envelope(env) if inflight.len() >= MAX_IN_FLIGHT => {
            count(metrics, "over_capacity");
            tracing::warn!(envelope_id = %env.id, "Socket Mode envelope left for Slack to resend: too many in flight");
            None
        }
        Frame::Envelope(env) => {
            let (handler, acks) = (handler.clone(), acks.clone());
            inflight.spawn(async move {
                let id = env.id.clone();
                if let Some(ack) = handler(env).await {
                    let _ = acks.send(envelope::ack_frame(&id, &ack));
                }
            });
            None
        }
        Frame::Unreadable { envelope_id, why } => {
            count(metrics, "invalid_frame");
            tracing::warn!(
                envelope_id = envelope_id.as_deref().unwrap_or("-"),
                why,
                "unreadable Socket Mode frame"
            );
            // Acknowledged so Slack does not send again what can never parse.
            if let Some(id) = envelope_id {
                let _ = acks.send(envelope::ack_frame(&id, &Ack::Bare));
            }
            None
        }
    }
}

/// Let envelopes still being handled finish and send their acks, for at
/// most `DRAIN`; later ones are lost with the socket (Slack redelivers them
/// on another connection, where the store's claim recognises them).
async fn drain<S>(sink: &mut S, to_send: &mut mpsc::UnboundedReceiver<String>, inflight: &TaskTracker)
where
    S: futures_util::Sink<Message> + Unpin,
{
    inflight.close();
    let send_all = async {
        loop {
            tokio::select! {
                Some(ack) = to_send.recv() => {
                    if sink.send(Message::text(ack)).await.is_err() {
                        return;
                    }
                }
                _ = inflight.wait() => break,
            }
        }
        while let Ok(ack) = to_send.try_recv() {
            if sink.send(Message::text(ack)).await.is_err() {
                return;
            }
        }
    };
    if tokio::time::timeout(DRAIN, send_all).await.is_err() {
        tracing::warn!("Socket Mode envelopes still in flight when the connection closed");
    }
}
