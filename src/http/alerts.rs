//! `POST /alerts/{source}`: monitoring webhooks. The bearer token is checked
//! in constant time before anything else, then the source's own signature
//! when one is configured; the payload is normalized (a wrong shape is a 400
//! naming what is wrong) and persisted before the 2xx. No Slack call happens
//! on this path.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::alerts::{self, normalize};
use crate::error::EdgeError;
use crate::state::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/alerts/{source}", post(handle))
}

/// Constant-time token check. Hashing first makes the comparison
/// independent of the token's length too.
fn token_ok(headers: &HeaderMap, expected: &SecretString) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.expose_secret().as_bytes());
    !given.is_empty() && bool::from(a.ct_eq(&b))
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
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
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
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            EdgeError::TooLarge
        } else {
            EdgeError::BadRequest(e.body_text())
        }
    })?;
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
    fn tokens_and_signatures() {
        let secret = SecretString::from("t0ken".to_string());
        let mut h = HeaderMap::new();
        assert!(!token_ok(&h, &secret));
        h.insert(header::AUTHORIZATION, "Bearer t0ken".parse().unwrap());
        assert!(token_ok(&h, &secret));
        h.insert(header::AUTHORIZATION, "Bearer t0ke".parse().unwrap());
        assert!(!token_ok(&h, &secret));
        h.insert(header::AUTHORIZATION, "t0ken".parse().unwrap());
        assert!(!token_ok(&h, &secret));

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
