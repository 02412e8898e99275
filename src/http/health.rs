//! Liveness, readiness (the state store answers) and Prometheus metrics.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n"),
        Ok(Err(e)) => {
            tracing::warn!(error = ?e, "readiness: state store unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "state store unreachable\n")
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "state store timed out\n"),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let pending = state.outbox.pending_count().await.unwrap_or(-1);
    let body = state.metrics.render(&[(
        "runbook_bot_outbox_pending",
        "Slack writes waiting to be delivered (-1: state store unreachable).",
        pending,
    )]);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
