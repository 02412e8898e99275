//! `POST /alerts/{source}`: monitoring webhooks. The bearer token is checked
//! in constant time before anything else, from the headers alone: a client
//! without it is refused before the bot waits for, or buffers, any body.
//! Then the source's own signature when one is configured; the payload is normalized (a wrong shape is a 400
//! naming what is wrong) and persisted before the 2xx. No Slack call happens
//! on this path.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::bearer::token_ok;
use crate::alerts::{self, normalize};
use crate::error::EdgeError;
use crate::state::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/alerts/{source}", post(handle))
}

/// Grafana's `X-Grafana-Alerting-Signature` and Sentry's
/// `Sentry-Hook-Signature`: hex HMAC-SHA256 of the body.
fn signature_ok(headers: &HeaderMap, name: &str, secret: &SecretString, body: &[u8]) -> bool {
    let Some(sig) = headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| hex::decode(s.trim()).ok())
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()).expect("any key length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

async fn handle(
    State(state): State<Arc<AppState>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, EdgeError> {
    let cfg = &state.config.alerts;
    // The path segment is untrusted: only known names become a label.
    let label = normalize::Source::parse(&source)
        .map(|s| s.as_str())
        .unwrap_or("unknown");
    let count = |outcome: &'static str| state.metrics.alert_received(label, outcome);
    // No token configured: alert intake is closed, not open.
    if !cfg.token.as_ref().is_some_and(|t| token_ok(&headers, t)) {
        count("unauthorized");
        return Err(EdgeError::Unauthorized);
    }
    let body = super::body::read(body, super::BODY_LIMIT, state.config.http.body_timeout).await?;
    let Some(src) = normalize::Source::parse(&source) else {
        count("unknown_source");
        return Ok((
            StatusCode::NOT_FOUND,
            "unknown source: use alertmanager, grafana, sentry or generic\n",
        )
            .into_response());
    };
    let signature = match src {
        normalize::Source::Grafana => cfg.grafana_secret.as_ref().map(|s| ("x-grafana-alerting-signature", s)),
        normalize::Source::Sentry => cfg.sentry_secret.as_ref().map(|s| ("sentry-hook-signature", s)),
        _ => None,
    };
    if let Some((name, secret)) = signature
        && !signature_ok(&headers, name, secret, &body)
    {
        count("bad_signature");
        return Err(EdgeError::Unauthorized);
    }
    let resource = headers.get("sentry-hook-resource").and_then(|v| v.to_str().ok());
    let parsed = normalize::parse(src, &body, resource).map_err(|e| {
        count("malformed");
        EdgeError::BadRequest(e.0)
    })?;
    if parsed.is_empty() {
        count("ignored");
        return Ok(Json(serde_json::json!({ "accepted": 0 })).into_response());
    }
    alerts::accept(&state, src, &parsed).await?;
    count("accepted");
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "accepted": parsed.len() })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let body = b"{\"a\":1}";
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s").unwrap();
        mac.update(body);
        let sig = hex::encode(mac.finalize().into_bytes());
        let mut h = HeaderMap::new();
        h.insert("sentry-hook-signature", sig.parse().unwrap());
        let s = SecretString::from("s".to_string());
        assert!(signature_ok(&h, "sentry-hook-signature", &s, body));
        assert!(!signature_ok(&h, "sentry-hook-signature", &s, b"{\"a\":2}"));
        assert!(!signature_ok(&HeaderMap::new(), "sentry-hook-signature", &s, body));
    }
}
