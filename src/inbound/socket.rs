//! Socket Mode envelopes into the same functions the HTTP routes call, and
//! their results into acks: what the HTTP route would answer 200 is acked
//! (a command's inline reply rides in the ack, as in the 200 body); a
//! malformed payload is acked too (the HTTP 400: sending it again cannot
//! help); an internal failure is not acked (the HTTP 500), so Slack may
//! deliver it again.

use std::sync::Arc;

use futures_util::FutureExt;
use tracing::Instrument;

use super::{Transport, commands, events, interactions};
use crate::error::EdgeError;
use crate::slack::socket::{Ack, Body, Envelope, Handler};
use crate::state::AppState;

pub fn handler(state: Arc<AppState>) -> Handler {
    Arc::new(move |envelope| on_envelope(state.clone(), envelope).boxed())
}

async fn on_envelope(state: Arc<AppState>, envelope: Envelope) -> Option<Ack> {
    let kind = envelope.body.kind();
    let span = tracing::info_span!("envelope", envelope.id = %envelope.id, envelope.kind = kind, retry = envelope.retry_attempt);
    match answer(&state, envelope).instrument(span).await {
        Ok(ack) => Some(ack),
        Err(EdgeError::Internal(e)) => {
            let id = crate::error::correlation_id();
            tracing::error!(correlation_id = %id, envelope.kind = kind, error = ?e, "internal error on a Socket Mode envelope; not acknowledged");
            None
        }
        Err(e) => {
            state.metrics.socket("invalid_frame");
            tracing::warn!(envelope.kind = kind, error = %e, "malformed Socket Mode envelope acknowledged and ignored");
            Some(Ack::Bare)
        }
    }
}

async fn answer(state: &Arc<AppState>, envelope: Envelope) -> Result<Ack, EdgeError> {
    let transport = Transport::Socket {
        envelope_id: envelope.id,
    };
    match envelope.body {
        Body::Command(c) => {
            let response_url = c.response_url.0.to_string();
            match commands::handle(state, *c, &transport).await? {
                Some(reply) if !envelope.accepts_response_payload => {
                    // Slack would drop a payload in this ack: reply the HTTP
                    // way, after the ack, which must not wait for the store.
                    let text = reply.response.content.text.unwrap_or_default();
                    let sensitive = reply.sensitive;
                    let state = state.clone();
                    state.tasks.clone().spawn(async move {
                        if let Err(e) = state.outbox.respond_with(&response_url, text, sensitive).await {
                            tracing::error!(error = ?e, "could not queue a Socket Mode command reply");
                        }
                    });
                    Ok(Ack::Bare)
                }
                Some(reply) => Ok(Ack::Command(Box::new(reply.response))),
                None => Ok(Ack::Bare),
            }
        }
        Body::Interaction(i) => interactions::handle(state, *i, &transport).await.map(|()| Ack::Bare),
        Body::Event(e) => events::handle(state, *e, &transport).await.map(|()| Ack::Bare),
    }
}
