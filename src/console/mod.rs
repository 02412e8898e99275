//! The incident console: a read-only browser view of incidents, their
//! timelines, the approvals audit, the catalog and MTTA/MTTR, for reviewing
//! an incident after it was fought in Slack. Mounted by `http::router` only
//! when `[console] enabled = true` and `public_url` is set.
//!
//! * Sign-in goes through Slack (`auth`): no new identity provider.
//! * Every request resolves its session, then the person's level with the
//!   same resolver commands use (`roles`), so a level taken away in config
//!   or a user group applies at the next click.
//! * Pages are rendered on the server with maud (escaped by default), charts
//!   are inline SVG, there is no JavaScript at all, so the
//!   Content-Security-Policy forbids every script.
//! * Every POST must be same-origin (`Origin`, `Sec-Fetch-Site`).
//! * The one write, posting the postmortem draft to the incident's thread,
//!   is a form with the session's CSRF token, and goes through the outbox.

pub mod auth;
mod error;
pub mod filters;
mod pages;
pub mod postmortem;
mod queries;
pub mod svg;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};

pub use error::ConsoleError;

use crate::config::Level;
use crate::state::AppState;
use auth::Session;

/// No script may run, nothing may be framed, forms post only here.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

const STYLESHEET: &str = include_str!("app.css");

pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/incidents") }))
        .route("/console/static/app.css", get(stylesheet))
        .route("/console/login", get(pages::login::show).post(pages::login::sign_in))
        .route("/console/logout", axum::routing::post(pages::login::sign_out))
        .route("/console/incidents", get(pages::incidents::list))
        .route("/console/incidents/{id}", get(pages::incident::show))
        .route(
            "/console/incidents/{id}/postmortem",
            get(pages::postmortem::download).post(pages::postmortem::post_to_thread),
        )
        .route("/console/approvals", get(pages::approvals::list))
        .route("/console/approvals/{id}", get(pages::approvals::show))
        .route("/console/catalog", get(pages::catalog::show))
        .route("/console/metrics", get(pages::metrics::show))
        // Any other /console path: the console's 404, with its headers.
        .route("/console/{*rest}", any(|| async { ConsoleError::NotFound }))
        .layer(axum::middleware::from_fn_with_state(state, same_origin))
        .layer(axum::middleware::map_response(secure_headers))
}

/// Every console POST (sign-in, sign-out, posting the postmortem) must come
/// from the console's own pages, so another site cannot post a form here
/// (login CSRF, or riding a session): an `Origin` must be the public URL's
/// origin, a `Sec-Fetch-Site` must be `same-origin` (or `none`, typed by
/// the person), and a POST with neither is refused; browsers send `Origin`
/// on every form POST.
async fn same_origin(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if req.method() == Method::POST && !same_origin_ok(req.headers(), state.config.console.public_url()) {
        tracing::info!(path = %req.uri().path(), "console POST refused: not from the console's own pages");
        return ConsoleError::Forbidden(
            "This form was not sent from the console's own pages; open the console and try again.".into(),
        )
        .into_response();
    }
    next.run(req).await
}

/// Whether a request's `Origin` and `Sec-Fetch-Site` say it came from the
/// console at `public_url`.
pub fn same_origin_ok(headers: &HeaderMap, public_url: Option<&str>) -> bool {
    let origin = headers.get(header::ORIGIN).map(|v| v.to_str().unwrap_or(""));
    let site = headers.get("sec-fetch-site").map(|v| v.to_str().unwrap_or(""));
    if origin.is_none() && site.is_none() {
        return false;
    }
    let ours = |o: &str| {
        let parsed = |u: &str| url::Url::parse(u).ok().map(|u| u.origin());
        matches!((parsed(o), public_url.and_then(parsed)), (Some(a), Some(b)) if a.is_tuple() && a == b)
    };
    origin.is_none_or(ours) && site.is_none_or(|s| matches!(s, "same-origin" | "none"))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// Every console response: the strict policy, no sniffing, a referrer only
/// to the console itself (a sign-in link must not leak onward; with
/// `no-referrer` browsers would send `Origin: null` on the console's own
/// forms, which `same_origin` refuses), never framed, pages never cached.
async fn secure_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// Who is looking: a live session and the level the person has now.
pub struct Viewer {
    pub session: Session,
    pub level: Level,
    /// Whether approval and audit detail and SQL may be shown.
    pub can_audit: bool,
}

impl Viewer {
    pub fn require(&self, level: Level, what: &str) -> Result<(), ConsoleError> {
        if self.level >= level {
            Ok(())
        } else {
            Err(ConsoleError::Forbidden(format!(
                "{what} needs level {level}; you have {}.",
                self.level
            )))
        }
    }

    pub fn require_audit(&self, state: &AppState) -> Result<(), ConsoleError> {
        self.require(state.config.console.audit_level, "The approvals audit")
    }
}

impl FromRequestParts<Arc<AppState>> for Viewer {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let cookie = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(auth::cookie_value)
            .ok_or(ConsoleError::SignIn)?;
        let session = auth::session(&state.store, cookie, state.clock.now_ms())
            .await?
            .ok_or(ConsoleError::SignIn)?;
        let level = state
            .roles
            .level_of(&state.config.roles, &state.slack, &session.user)
            .await
            .ok_or_else(|| ConsoleError::Forbidden("Your Slack user has no level in this bot any more.".into()))?;
        let can_audit = level >= state.config.console.audit_level;
        Ok(Viewer {
            session,
            level,
            can_audit,
        })
    }
}

/// An id from the path: a positive number, else there is nothing there.
pub fn path_id(raw: &str) -> Result<i64, ConsoleError> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or(ConsoleError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_the_consoles_own_origin_may_post() {
        let ours = Some("https://bot.example.com");
        let ok = |pairs: &[(&'static str, &str)]| same_origin_ok(&headers(pairs), ours);
        assert!(ok(&[("origin", "https://bot.example.com")]));
        assert!(ok(&[("origin", "https://bot.example.com:443")]));
        assert!(ok(&[
            ("origin", "https://bot.example.com"),
            ("sec-fetch-site", "same-origin")
        ]));
        assert!(ok(&[("sec-fetch-site", "same-origin")]));
        assert!(ok(&[("sec-fetch-site", "none")]));
        assert!(!ok(&[]), "neither header");
        assert!(!ok(&[("origin", "https://evil.example")]));
        assert!(!ok(&[("origin", "http://bot.example.com")]), "another scheme");
        assert!(!ok(&[("origin", "https://bot.example.com:8443")]), "another port");
        assert!(!ok(&[("origin", "null")]));
        assert!(!ok(&[
            ("origin", "https://bot.example.com"),
            ("sec-fetch-site", "cross-site")
        ]));
        assert!(!ok(&[("sec-fetch-site", "same-site")]));
        assert!(!same_origin_ok(
            &headers(&[("origin", "https://bot.example.com")]),
            None
        ));
    }
}
