//! `POST /slack/events`: the Events API. `url_verification` echoes the
//! challenge; `event_callback` is claimed by `event_id` first, so Slack's
//! retries (`X-Slack-Retry-Num`) are acknowledged without acting twice.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use slack_morphism::prelude::*;

use super::verified::VerifiedBody;
use crate::error::EdgeError;
use crate::outbox::{self, plain};
use crate::slack::ids::ChannelId;
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
            let now = state.clock.now_ms();
            let mut tx = state.store.begin().await.map_err(anyhow::Error::from)?;
            if !crate::store::events::claim(&mut tx, cb.event_id.as_ref(), now).await? {
                state.metrics.slack_request("events", "duplicate");
                tracing::info!(event_id = %cb.event_id, "duplicate event delivery ignored");
                return Ok(StatusCode::OK.into_response());
            }
            state.metrics.slack_request("events", "accepted");
            if let SlackEventCallbackBody::AppMention(m) = cb.event {
                on_mention(&mut tx, &m, now).await?;
            }
            state.outbox.commit(tx).await.map_err(anyhow::Error::from)?;
            Ok(StatusCode::OK.into_response())
        }
    }
}

/// Someone @-mentioned the bot: answer in the thread with where to start.
async fn on_mention(tx: &mut sqlx::AnyConnection, m: &SlackAppMentionEvent, now: i64) -> anyhow::Result<()> {
    let Ok(channel) = ChannelId::parse(m.channel.as_ref()) else {
        return Ok(());
    };
    let thread = m.origin.thread_ts.clone().unwrap_or_else(|| m.origin.ts.clone());
    let text = "I run incidents from slash commands: `/incident p1 <title>` declares one, `/incident list` shows what is open, `/incident help` lists the rest.".to_string();
    outbox::enqueue(tx, &[plain(&channel, Some(thread.to_string()), text)], None, now).await
}
