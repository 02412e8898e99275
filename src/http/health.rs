//! Liveness, readiness and Prometheus metrics. Readiness and the outbox
//! gauges come from the background check in `readiness` (no query per
//! request); `/metrics` wants the bearer token when `metrics.token` is set.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::bearer::token_ok;
use crate::metrics::Format;
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

/// OpenMetrics for Prometheus (it asks for it), the classic text format for
/// anything else. The outbox gauges are as of the last readiness check.
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
    let backlog = state.readiness.backlog(state.config.http.readiness_check);
    state.metrics.set_outbox_backlog(backlog);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    (
        [(header::CONTENT_TYPE, format.content_type())],
        state.metrics.render(format),
    )
        .into_response()
}
