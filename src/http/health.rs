//! Liveness, readiness and Prometheus metrics. Readiness and the outbox
//! gauge come from the background check in `readiness` (no query per
//! request); `/metrics` wants the bearer token when `metrics.token` is set.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::bearer::token_ok;
use crate::readiness::Status;
use crate::state::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.readiness.status(state.config.http.readiness_check) {
        Status::Ready { .. } => (StatusCode::OK, "ready\n".to_string()),
        Status::NotReady(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.config.metrics.token
        && !token_ok(&headers, token)
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "metrics need a bearer token\n",
        )
            .into_response();
    }
    let pending = match state.readiness.status(state.config.http.readiness_check) {
        Status::Ready { pending } => pending,
        Status::NotReady(_) => -1,
    };
    let body = state.metrics.render(&[(
        "runbook_bot_outbox_pending",
        "Slack writes waiting to be delivered, as of the last readiness check (-1: state store unreachable).",
        pending,
    )]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
