//! `POST /slack/interactions`: verify → decode the `payload` field, then the
//! click path shared with Socket Mode (`inbound::interactions`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use slack_morphism::prelude::*;

use super::verified::VerifiedBody;
use crate::error::EdgeError;
use crate::inbound::{Transport, interactions};
use crate::state::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/slack/interactions", post(handle))
}

async fn handle(State(state): State<Arc<AppState>>, VerifiedBody(body): VerifiedBody) -> Result<Response, EdgeError> {
    let mut fields: HashMap<String, String> =
        serde_urlencoded::from_bytes(&body).map_err(|e| EdgeError::BadRequest(format!("form body: {e}")))?;
    let payload = fields
        .remove("payload")
        .ok_or_else(|| EdgeError::BadRequest("missing `payload` field".into()))?;
    let event: SlackInteractionEvent =
        serde_json::from_str(&payload).map_err(|e| EdgeError::BadRequest(format!("payload: {e}")))?;
    interactions::handle(&state, event, &Transport::Http).await?;
    Ok(StatusCode::OK.into_response())
}
