//! Slack's requests once they are known to come from Slack, whatever
//! carried them: an HTTP route whose signature checked out (`http/`), or a
//! Socket Mode envelope on a WebSocket the bot opened with its app token
//! (`slack::socket`, wired to these functions by `socket.rs`). One function
//! per kind of request, so both transports decode, deduplicate, dispatch
//! (and so audit) and reply the same way, within the same budget.

pub mod commands;
pub mod events;
pub mod interactions;
pub mod socket;

use std::time::Duration;

use crate::state::AppState;
use crate::store::events::claim_now;

/// Answer inline if the work finishes this fast; Slack gives up at 3 s.
pub const INLINE_BUDGET: Duration = Duration::from_millis(2000);

/// How a request arrived, which decides what may arrive twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Slack never resends a slash command or a click over HTTP; events it
    /// retries are recognised by `event_id`.
    Http,
    /// Slack resends an envelope whose ack it did not get, possibly over
    /// another connection or to another replica.
    Socket { envelope_id: String },
}

impl Transport {
    /// The ids to claim before acting on a command or click: the envelope
    /// and the payload's own `trigger_id` (unique per invocation).
    pub fn redelivery_keys(&self, trigger_id: &str) -> Vec<String> {
        match self {
            Transport::Http => Vec::new(),
            Transport::Socket { envelope_id } => {
                vec![format!("envelope:{envelope_id}"), format!("trigger:{trigger_id}")]
            }
        }
    }

    /// Extra ids to claim with an event's own `event_id`.
    pub fn envelope_key(&self) -> Option<String> {
        match self {
            Transport::Http => None,
            Transport::Socket { envelope_id } => Some(format!("envelope:{envelope_id}")),
        }
    }
}

/// Claim a command's or click's delivery ids and count it on `route`; false
/// for a redelivery. Committed before the work starts, which runs its own
/// transactions (see `store::events::claim_now`).
async fn claimed(state: &AppState, route: &'static str, keys: &[String]) -> anyhow::Result<bool> {
    let first = claim_now(&state.store, keys, state.clock.now_ms()).await?;
    let outcome = if first { "accepted" } else { "duplicate" };
    state.metrics.slack_request(route, outcome);
    if !first {
        tracing::info!(route, "duplicate Slack delivery ignored");
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_socket_deliveries_claim_envelope_and_trigger_ids() {
        assert!(Transport::Http.redelivery_keys("1.2.x").is_empty());
        assert_eq!(Transport::Http.envelope_key(), None);
        let socket = Transport::Socket {
            envelope_id: "e-1".into(),
        };
        assert_eq!(socket.redelivery_keys("1.2.x"), ["envelope:e-1", "trigger:1.2.x"]);
        assert_eq!(socket.envelope_key().as_deref(), Some("envelope:e-1"));
    }
}
