//! Every HTTP request: an id, a span that carries it (so every log line the
//! request causes names it), and its duration by matched route and status
//! class. The route is the router's template (`/alerts/{source}`), never the
//! raw path, so the label stays bounded.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::state::AppState;

pub async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let span = tracing::info_span!(
        "http",
        http.request_id = %request_id,
        http.method = %req.method(),
        http.route = %route,
    );
    let mut res = next.run(req).instrument(span).await;
    state
        .metrics
        .http_request(&route, res.status().as_u16(), started.elapsed());
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}
