//! The one GoTrue admin call: `POST {supabase_url}/auth/v1/admin/generate_link`
//! with `{"type":"recovery","email":…}`, authenticated by the service role
//! key (`apikey` and `Authorization: Bearer`). The link is in the answer's
//! `action_link` (newer GoTrue) or `properties.action_link` (older), the
//! user it was made for in `id` (or `user.id`).
//!
//! Nothing is retried: a 429 is reported as such, so a person decides when
//! to ask again. The answer is read with a size bound and never logged or
//! shown: a successful one holds the link and a one-time code. Redirects
//! are not followed, because the `apikey` header would go with them.

use std::time::Duration;

use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::slack::text::visible;

/// How long the whole call may take, answer included.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// Bytes of an answer read: a generated link comes with the whole user
/// (metadata, identities), which stays far below this.
const BODY_LIMIT: usize = 64 * 1024;
/// Characters of an error message shown.
const SHOWN: usize = 200;

/// A link, and the id of the user GoTrue says it made it for. `Debug`
/// shows no link: `SecretString` redacts it.
#[derive(Debug)]
pub struct Generated {
    pub link: SecretString,
    pub user_id: Option<String>,
}

/// Why no link was generated, in words safe to show in Slack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("Supabase Auth does not know this user (404: {0})")]
    NotFound(String),
    #[error("Supabase Auth is rate limiting these requests (429); try again later")]
    RateLimited,
    #[error("Supabase Auth refused the service role key ({status}: {message}); check `service_role_key`")]
    Refused { status: u16, message: String },
    #[error("Supabase Auth failed ({status}: {message})")]
    Server { status: u16, message: String },
    #[error("Supabase Auth answered {status}: {message}")]
    Other { status: u16, message: String },
    #[error("Supabase Auth {0}")]
    Unreachable(String),
    #[error("Supabase Auth answered without a link")]
    NoLink,
}

/// A recovery link for `email`, from the admin API under `base`.
pub async fn recovery_link(
    base: &str,
    key: &SecretString,
    email: &str,
    timeout: Duration,
) -> Result<Generated, CallError> {
    let unusable_key =
        || CallError::Unreachable("was not called: the service role key is not a valid header value".into());
    let mut apikey = HeaderValue::from_str(key.expose_secret()).map_err(|_| unusable_key())?;
    apikey.set_sensitive(true);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("runbook-bot")
        .build()
        .map_err(|_| CallError::Unreachable("was not called: no HTTP client".into()))?;
    let resp = client
        .post(format!("{base}/auth/v1/admin/generate_link"))
        .timeout(timeout)
        .header("apikey", apikey)
        .bearer_auth(key.expose_secret())
        .json(&serde_json::json!({ "type": "recovery", "email": email }))
        .send()
        .await
        .map_err(|e| unreachable(&e, timeout))?;
    let status = resp.status();
    let body = crate::approval::deploy::read_bounded(resp, BODY_LIMIT).await;
    if status.is_success() {
        return link_in(&body).ok_or(CallError::NoLink);
    }
    Err(refusal(status.as_u16(), &body))
}

/// A failed send: timed out, refused, or otherwise not reached.
fn unreachable(e: &reqwest::Error, timeout: Duration) -> CallError {
    let refused = std::iter::successors(std::error::Error::source(e), |s| s.source())
        .filter_map(|s| s.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
    CallError::Unreachable(if e.is_timeout() {
        format!("did not answer within {} s", timeout.as_secs_f32())
    } else if refused {
        "refused the connection".to_string()
    } else if e.is_connect() {
        "could not be reached (connection failed)".to_string()
    } else {
        "could not be called (request failed)".to_string()
    })
}

#[derive(Deserialize)]
struct Answer {
    id: Option<String>,
    action_link: Option<String>,
    properties: Option<Properties>,
    user: Option<User>,
}

#[derive(Deserialize)]
struct User {
    id: Option<String>,
}

#[derive(Deserialize)]
struct Properties {
    action_link: Option<String>,
}

/// The http(s) link in a successful answer, either shape, and its user.
fn link_in(body: &str) -> Option<Generated> {
    let a: Answer = serde_json::from_str(body).ok()?;
    let link = a.action_link.or_else(|| a.properties.and_then(|p| p.action_link))?;
    let u = url::Url::parse(&link).ok()?;
    matches!(u.scheme(), "http" | "https").then(|| Generated {
        link: SecretString::from(link),
        user_id: a.id.or_else(|| a.user.and_then(|u| u.id)),
    })
}

/// An error answer, with GoTrue's own message (`msg`, or the other names
/// its versions and gateways use).
fn refusal(status: u16, body: &str) -> CallError {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let said = json
        .as_ref()
        .and_then(|v| {
            ["msg", "message", "error_description", "error"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|m| m.as_str()))
        })
        .map(str::to_string)
        .unwrap_or_else(|| body.trim().to_string());
    let message = match visible(said.trim()).chars().take(SHOWN).collect::<String>() {
        m if m.is_empty() => "no message".to_string(),
        m => m,
    };
    match status {
        404 => CallError::NotFound(message),
        429 => CallError::RateLimited,
        401 | 403 => CallError::Refused { status, message },
        500..=599 => CallError::Server { status, message },
        300..=399 => CallError::Other {
            status,
            message: "a redirect, which is not followed: check `supabase_url`".into(),
        },
        _ => CallError::Other { status, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_is_found_in_either_shape_and_must_be_a_url() {
        let new = r#"{"id":"b0","action_link":"https://x.supabase.co/auth/v1/verify?token=t&type=recovery","email_otp":"123456"}"#;
        let old = r#"{"user":{"id":"b1"},"properties":{"action_link":"https://x.supabase.co/auth/v1/verify?token=u"}}"#;
        let (new, old) = (link_in(new).unwrap(), link_in(old).unwrap());
        assert!(new.link.expose_secret().ends_with("token=t&type=recovery"));
        assert!(old.link.expose_secret().ends_with("token=u"));
        assert_eq!(
            (new.user_id.as_deref(), old.user_id.as_deref()),
            (Some("b0"), Some("b1"))
        );
        assert_eq!(link_in(r#"{"action_link":"https://x.io/v"}"#).unwrap().user_id, None);
        for none in [
            r#"{"id":"b0"}"#,
            r#"{"action_link":"javascript:alert(1)"}"#,
            "<html>",
            "",
        ] {
            assert!(link_in(none).is_none(), "{none}");
        }
    }

    #[test]
    fn error_answers_carry_gotrues_message() {
        let nf = refusal(
            404,
            r#"{"code":404,"error_code":"user_not_found","msg":"User not found"}"#,
        );
        assert_eq!(
            nf.to_string(),
            "Supabase Auth does not know this user (404: User not found)"
        );
        assert_eq!(refusal(429, "{}"), CallError::RateLimited);
        let e = refusal(503, "upstream connect error\n<b>x</b>");
        assert_eq!(
            e.to_string(),
            "Supabase Auth failed (503: upstream connect error\\n<b>x</b>)"
        );
        let e = refusal(401, r#"{"message":"Invalid API key"}"#);
        assert!(
            e.to_string()
                .contains("refused the service role key (401: Invalid API key)")
        );
        assert!(refusal(302, "").to_string().contains("redirect, which is not followed"));
        assert!(refusal(422, "").to_string().ends_with("422: no message"));
        let long = refusal(500, &"x".repeat(10_000)).to_string();
        assert!(long.len() < 300, "{}", long.len());
    }

    #[tokio::test]
    async fn a_slow_or_absent_server_is_reported_without_waiting_longer() {
        crate::slack::client::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let slow = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "{}"
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        let key = SecretString::from("k".to_string());
        let e = recovery_link(&slow, &key, "a@b.io", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "Supabase Auth did not answer within 0.2 s");
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let e = recovery_link(&gone, &key, "a@b.io", TIMEOUT).await.unwrap_err();
        assert_eq!(e.to_string(), "Supabase Auth refused the connection");
    }
}
