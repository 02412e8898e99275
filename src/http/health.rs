//! Liveness, readiness (the state store answers) and Prometheus metrics.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Format;
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

/// OpenMetrics for Prometheus (it asks for it), the classic text format for
/// anything else. The outbox gauges are read from the state store now.
async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> impl IntoResponse {
    let backlog = match tokio::time::timeout(std::time::Duration::from_secs(2), state.outbox.backlog()).await {
        Ok(Ok(b)) => Some(b),
        Ok(Err(e)) => {
            tracing::warn!(error = ?e, "metrics: outbox backlog unreadable");
            None
        }
        Err(_) => None,
    };
    state.metrics.set_outbox_backlog(backlog);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    (
        [(header::CONTENT_TYPE, format.content_type())],
        state.metrics.render(format),
    )
}
