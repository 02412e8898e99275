//! `/rollback deploy <service>`: an HTTP call to the deploy provider's hook
//! configured for that service — an effect no rollback can undo. It runs
//! only when the configured hook is still the one approved (its URL's hash
//! and method are in the snapshot). Non-2xx is a failure carrying the
//! provider's own message, read with a size bound.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::executor::ApplyError;
use super::snapshot::{HookTarget, Snapshot};
use super::store::Request;
use crate::slack::text::visible;
use crate::state::AppState;

/// Bytes of the provider's answer kept for the result.
const BODY_LIMIT: usize = 4096;
const SHOWN: usize = 300;

pub async fn call(
    state: &AppState,
    r: &Request,
    target: &HookTarget,
    snapshot: &Snapshot,
) -> Result<String, ApplyError> {
    let service = &target.service;
    let hook = state
        .config
        .deploy_hooks
        .get(service)
        .filter(|h| snapshot.hook_matches(h))
        .ok_or_else(|| {
            ApplyError::Failed(format!(
                "the deploy hook for `{service}` changed since approval — request again; nothing was called"
            ))
        })?;
    let method = reqwest::Method::from_bytes(hook.method.as_bytes())
        .map_err(|_| ApplyError::Failed("bad hook method".into()))?;
    let mut req = state
        .http
        .request(method, &hook.url)
        .timeout(Duration::from_secs(30))
        .json(&serde_json::json!({
            "service": service,
            "action": "rollback",
            "request_id": r.id,
            "requested_by": r.requested_by,
            "approved_by": r.decided_by,
        }));
    if let Some(token) = &hook.token {
        req = req.bearer_auth(token.expose_secret());
    }
    let resp = req.send().await.map_err(|e| {
        let why = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "connection failed"
        } else {
            "request failed"
        };
        ApplyError::Failed(format!("deploy hook for `{service}` {why}"))
    })?;
    let status = resp.status();
    let body = read_bounded(resp, BODY_LIMIT).await;
    let body: String = visible(body.trim()).chars().take(SHOWN).collect();
    let said = |none: &str| {
        if body.is_empty() {
            none.to_string()
        } else {
            format!(": {body}")
        }
    };
    if status.is_success() {
        Ok(format!(
            "deploy hook for `{service}` answered {}{}",
            status.as_u16(),
            said("")
        ))
    } else {
        Err(ApplyError::Failed(format!(
            "deploy hook for `{service}` answered {}{}",
            status.as_u16(),
            said(": (no message)")
        )))
    }
}

/// At most `limit` bytes of the answer: a provider (or something posing as
/// one) cannot make the bot buffer a huge body.
pub(super) async fn read_bounded(mut resp: reqwest::Response, limit: usize) -> String {
    let mut buf = Vec::new();
    while buf.len() < limit {
        match resp.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk[..chunk.len().min(limit - buf.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}
