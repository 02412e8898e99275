//! Error policy.
//!
//! * `UserError` — something the person did or asked for that cannot be done
//!   (bad arguments, wrong level, incident already resolved). Its text is
//!   written for Slack and safe to show: it never contains SQL, URLs or
//!   secrets. Shown as an ephemeral reply.
//! * Everything else is internal (`anyhow::Error`): logged once, where it is
//!   handled, with a short correlation id; the person sees only a generic
//!   line carrying that id so an operator can find the log.
//! * HTTP edge failures (signature, body size, malformed payload) are
//!   `EdgeError` and map to 401 / 413 / 408 / 400 with a plain reason.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

impl UserError {
    pub fn new(text: impl Into<String>) -> Self {
        UserError(text.into())
    }
}

/// What a command run can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
    /// Refused again within the window in which the person was already told
    /// why (`throttle`): nothing is recorded and nothing need be said.
    #[error("refused again within the refusal window")]
    Throttled,
}

impl From<sqlx::Error> for CommandError {
    fn from(e: sqlx::Error) -> Self {
        CommandError::Internal(e.into())
    }
}

impl CommandError {
    /// The text to show the person, logging internals with a correlation id.
    pub fn into_user_text(self, context: &str) -> String {
        match self {
            CommandError::User(u) => u.0,
            CommandError::Throttled => "Refused, as before; wait a minute before trying again.".into(),
            CommandError::Internal(e) => {
                let id = correlation_id();
                tracing::error!(correlation_id = %id, context, error = ?e, "internal error");
                format!(
                    ":warning: Something went wrong on our side (ref `{id}`). Nothing was changed by this reply; try again or run `runbook-bot exec` on the host."
                )
            }
        }
    }
}

pub fn correlation_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("request signature rejected")]
    Unauthorized,
    #[error("request body exceeds 1 MiB")]
    TooLarge,
    #[error("request body not received in time")]
    BodyTimeout,
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl IntoResponse for EdgeError {
    fn into_response(self) -> Response {
        let status = match &self {
            EdgeError::Unauthorized => StatusCode::UNAUTHORIZED,
            EdgeError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            EdgeError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            EdgeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            EdgeError::Internal(e) => {
                let id = correlation_id();
                tracing::error!(correlation_id = %id, error = ?e, "internal error at the HTTP edge");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("internal error (ref {id})\n"),
                )
                    .into_response();
            }
        };
        (status, format!("{self}\n")).into_response()
    }
}
