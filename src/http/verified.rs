//! `VerifiedBody`: the raw body of a Slack request whose signature checked
//! out. Handlers take this instead of `Bytes`, so an unverified request
//! cannot reach parsing, the database or Slack: it gets 401 here.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
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
        let limits = (super::BODY_LIMIT, state.config.http.body_timeout);
        let body = super::body::read(req.into_body(), limits.0, limits.1)
            .await
            .inspect_err(|e| {
                let outcome = match e {
                    EdgeError::TooLarge => "too_large",
                    EdgeError::BodyTimeout => "body_timeout",
                    _ => return,
                };
                state.metrics.slack_request(route, outcome);
            })?;
        // Without a secret (Socket Mode only) nothing over HTTP can be Slack's.
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
