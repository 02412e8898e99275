//! `/rollback deploy <service>`: an HTTP call to the deploy provider's hook
//! configured for that service. Non-2xx is a failure carrying the provider's
//! own message.

use secrecy::ExposeSecret;

use super::executor::ApplyError;
use super::store::Request;
use crate::state::AppState;

pub async fn call(state: &AppState, r: &Request, service: &str) -> Result<String, ApplyError> {
    let hook = state
        .config
        .deploy_hooks
        .get(service)
        .ok_or_else(|| ApplyError::Failed(format!("no deploy hook is configured for service `{service}`")))?;
    let method = reqwest::Method::from_bytes(hook.method.as_bytes())
        .map_err(|_| ApplyError::Failed("bad hook method".into()))?;
    let mut req = state
        .http
        .request(method, &hook.url)
        .timeout(std::time::Duration::from_secs(30))
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
    let body: String = resp.text().await.unwrap_or_default().chars().take(300).collect();
    let body = body.trim();
    if status.is_success() {
        Ok(format!(
            "deploy hook for `{service}` answered {}{}",
            status.as_u16(),
            if body.is_empty() {
                String::new()
            } else {
                format!(": {body}")
            }
        ))
    } else {
        Err(ApplyError::Failed(format!(
            "deploy hook for `{service}` answered {}: {}",
            status.as_u16(),
            if body.is_empty() { "(no message)" } else { body }
        )))
    }
}
