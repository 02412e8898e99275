//! `VerifiedBody`: the raw body of a Slack request whose signature checked
//! out. Handlers take this instead of `Bytes`, so an unverified request
//! cannot reach parsing, the database or Slack: it gets 401 here.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use secrecy::ExposeSecret;

use crate::error::EdgeError;
use crate::slack::verify;
use crate::state::AppState;

pub struct VerifiedBody(pub Bytes);

impl FromRequest<Arc<AppState>> for VerifiedBody {
    type Rejection = EdgeError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let route = route_label(req.uri().path());
        let (ts, sig) = {
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            (header("x-slack-request-timestamp"), header("x-slack-signature"))
        };
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                state.metrics.slack_request(route, "too_large");
                EdgeError::TooLarge
            } else {
                EdgeError::BadRequest(e.body_text())
            }
        })?;
        // serve refuses to start without a secret; exec never builds a router.
        let Some(secret) = &state.config.slack.signing_secret else {
            return Err(EdgeError::Unauthorized);
        };
        let now = state.clock.now_secs();
        match verify::verify(
            secret.expose_secret().as_bytes(),
            ts.as_deref(),
            sig.as_deref(),
            &body,
            now,
        ) {
            Ok(()) => Ok(VerifiedBody(body)),
            Err(e) => {
                tracing::warn!(route, reason = e.label(), "rejected Slack request");
                state.metrics.slack_request(route, e.label());
                Err(EdgeError::Unauthorized)
            }
        }
    }
}

/// The metrics label of a Slack route: one of ours, never the raw path.
fn route_label(path: &str) -> &'static str {
    match path {
        "/slack/commands" => "commands",
        "/slack/interactions" => "interactions",
        "/slack/events" => "events",
        _ => "other",
    }
}
