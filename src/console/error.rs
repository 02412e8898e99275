//! What a console request can fail with, as a plain page with the right
//! status. The text shown is written for the browser and never carries SQL,
//! URLs or secrets; internal errors are logged with a correlation id and
//! shown generically (the crate's error policy, `crate::error`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::pages::layout;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No session, or not a live one.
    #[error("sign in")]
    SignIn,
    /// Signed in, but this needs more than the person's level.
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    /// A filter, page or form field that does not parse.
    #[error("bad input: {0}")]
    BadInput(String),
    /// A sign-in link that is not one of ours.
    #[error("unknown link")]
    LinkUnknown,
    /// A sign-in link that was used or has expired.
    #[error("link gone: {0}")]
    LinkGone(&'static str),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ConsoleError {
    fn from(e: sqlx::Error) -> Self {
        ConsoleError::Internal(e.into())
    }
}

const NEW_LINK: &str = "Run /incident console in Slack for a new sign-in link.";

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, text) = match self {
            ConsoleError::SignIn => (
                StatusCode::UNAUTHORIZED,
                "Sign in",
                format!("You are not signed in, or your session has ended. {NEW_LINK}"),
            ),
            ConsoleError::Forbidden(why) => (StatusCode::FORBIDDEN, "Not allowed", why),
            ConsoleError::NotFound => (StatusCode::NOT_FOUND, "Not found", "There is nothing here.".into()),
            ConsoleError::BadInput(why) => (StatusCode::BAD_REQUEST, "Bad request", why),
            ConsoleError::LinkUnknown => (
                StatusCode::FORBIDDEN,
                "Link refused",
                format!("This sign-in link is not valid. {NEW_LINK}"),
            ),
            ConsoleError::LinkGone(why) => (
                StatusCode::GONE,
                "Link refused",
                format!("This sign-in link {why}. {NEW_LINK}"),
            ),
            ConsoleError::Internal(e) => {
                let id = crate::error::correlation_id();
                tracing::error!(correlation_id = %id, error = ?e, "internal error in the console");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    format!("Something went wrong on our side (ref {id})."),
                )
            }
        };
        (status, layout::bare(title, &text)).into_response()
    }
}
