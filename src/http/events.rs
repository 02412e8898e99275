//! `POST /slack/events`: the Events API. `url_verification` echoes the
//! challenge; an `event_callback` takes the path shared with Socket Mode
//! (`inbound::events`), claimed by `event_id` so Slack's retries
//! (`X-Slack-Retry-Num`) are acknowledged without acting twice.
//! Mentions are answered a few times per user, then dropped for a while.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use slack_morphism::prelude::*;

use super::verified::VerifiedBody;
use crate::error::EdgeError;
use crate::inbound::{Transport, events};
use crate::state::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/slack/events", post(handle))
}

async fn handle(State(state): State<Arc<AppState>>, VerifiedBody(body): VerifiedBody) -> Result<Response, EdgeError> {
    let event: SlackPushEvent =
        serde_json::from_slice(&body).map_err(|e| EdgeError::BadRequest(format!("event: {e}")))?;
    match event {
        SlackPushEvent::UrlVerification(v) => Ok(Json(serde_json::json!({ "challenge": v.challenge })).into_response()),
        SlackPushEvent::AppRateLimited(_) => {
            tracing::warn!("Slack reports our app as rate limited for events");
            Ok(StatusCode::OK.into_response())
        }
        SlackPushEvent::EventCallback(cb) => {
            events::handle(&state, cb, &Transport::Http).await?;
            Ok(StatusCode::OK.into_response())
        }
    }
}
