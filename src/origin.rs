//! Where a command came from (who, which channel, Slack or a terminal) and
//! what its caller sees. Shared by the dispatcher and every command's home.

use crate::slack::ids::{ChannelId, UserId};

/// Where a command came from.
#[derive(Debug, Clone)]
pub struct Origin {
    pub user: UserId,
    pub channel: ChannelId,
    /// Slack's `response_url`, when there is one (not for `exec`).
    pub response_url: Option<String>,
    pub via: Via,
}

/// Slack (answer fast, finish slow work in the background) or a terminal
/// (`runbook-bot exec`: wait and print the whole result), where the
/// operating-system user who ran it is recorded too: `--user` is only a
/// claim, the login is who typed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Slack,
    Terminal { os_user: String },
}

impl Via {
    /// For the audit log: `slack`, or `terminal (os user alice)`.
    pub fn describe(&self) -> String {
        match self {
            Via::Slack => "slack".into(),
            Via::Terminal { os_user } => format!("terminal (os user {os_user})"),
        }
    }
}

/// What the person who ran the command sees (ephemeral).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    /// The text carries a secret for its reader (a console sign-in link):
    /// if it has to wait in the outbox, it waits as a sensitive row, whose
    /// payload is dropped once delivered.
    pub sensitive: bool,
}

impl Reply {
    pub fn new(text: impl Into<String>) -> Self {
        Reply {
            text: text.into(),
            sensitive: false,
        }
    }

    pub fn secret(text: impl Into<String>) -> Self {
        Reply {
            text: text.into(),
            sensitive: true,
        }
    }
}
