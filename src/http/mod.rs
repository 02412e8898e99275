//! The HTTP edge: one router per area, merged here. Slack routes verify the
//! signature before anything else looks at the request; `serve` runs the
//! server with the limits of `[http]`.

mod alerts;
mod bearer;
mod body;
mod events;
mod health;
mod idle;
mod interactions;
mod observe;
pub mod serve;
mod slack_commands;
mod verified;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;

use crate::state::AppState;

/// Slack's and our own ceiling for a request body.
pub const BODY_LIMIT: usize = 1024 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    let mut routes = Router::new();
    // The console exists only when turned on with a public URL; else /console/* is 404.
    if state.config.console.public_url().is_some() {
        routes = routes.merge(crate::console::router(state.clone()));
    }
    routes
        .merge(slack_commands::router())
        .merge(interactions::router())
        .merge(events::router())
        .merge(health::router())
        .merge(alerts::router())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe::observe))
        .with_state(state)
}
