//! Incident domain types: state, the `#42` reference, the incident and its
//! timeline. `Severity` lives in `crate::severity` (config validates it too).

use std::fmt;

use crate::error::UserError;
pub use crate::severity::Severity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Declared,
    Acknowledged,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Declared => "declared",
            State::Acknowledged => "acknowledged",
            State::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "declared" => State::Declared,
            "acknowledged" => State::Acknowledged,
            "resolved" => State::Resolved,
            _ => return None,
        })
    }
}

impl TryFrom<String> for State {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        State::parse(&s).ok_or_else(|| format!("stored incident state `{s}`"))
    }
}

/// `#42` as typed in Slack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncidentRef(pub i64);

impl IncidentRef {
    /// `Ok(None)` when the token is not a reference at all.
    pub fn parse(token: &str) -> Result<Option<IncidentRef>, UserError> {
        let Some(digits) = token.strip_prefix('#') else {
            return Ok(None);
        };
        match digits.parse::<i64>() {
            Ok(n) if n > 0 && !digits.starts_with('+') => Ok(Some(IncidentRef(n))),
            _ => Err(UserError::new(format!(
                "`{}` is not an incident reference: write `#` and the incident number, like `#42`.",
                crate::slack::text::escape(&token.chars().take(20).collect::<String>())
            ))),
        }
    }
}

impl fmt::Display for IncidentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Incident {
    pub id: i64,
    pub channel: String,
    pub title: String,
    #[sqlx(try_from = "String")]
    pub severity: Severity,
    #[sqlx(try_from = "String")]
    pub state: State,
    pub status_text: Option<String>,
    pub commander: String,
    pub declared_by: String,
    pub declared_at: i64,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<i64>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<i64>,
    pub summary: Option<String>,
    /// `pending`, `made`, `failed` or `archived` for an incident with a
    /// dedicated channel; `None` for one that lives in its thread only.
    pub room_state: Option<String>,
    pub room_channel: Option<String>,
}

/// Where an incident's conversation happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Room {
    /// Its thread in the incident channel.
    Thread,
    /// A dedicated channel is being made; messages wait for it.
    Pending,
    Made(String),
    /// It could not be made; messages go to the thread.
    Failed,
    /// It was archived (after the resolve); messages go to the thread.
    Archived(String),
}

impl Incident {
    pub fn room(&self) -> Room {
        match (self.room_state.as_deref(), &self.room_channel) {
            (Some("archived"), Some(c)) => Room::Archived(c.clone()),
            (_, Some(c)) => Room::Made(c.clone()),
            (Some("pending"), None) => Room::Pending,
            (Some(_), None) => Room::Failed,
            (None, None) => Room::Thread,
        }
    }

    /// Whether messages meant for the room are routed through it (made,
    /// being made, or given up on and sent to the thread at delivery).
    pub fn has_room(&self) -> bool {
        self.room_state.is_some()
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TimelineEvent {
    #[sqlx(rename = "occurred_at")]
    pub at: i64,
    pub actor: String,
    pub kind: String,
    pub text: String,
}

/// "42 s", "12 m", "3 h 5 m", "2 d 4 h".
pub fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} m", s / 60),
        3600..=86_399 => match (s % 3600) / 60 {
            0 => format!("{} h", s / 3600),
            m => format!("{} h {m} m", s / 3600),
        },
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incident_refs() {
        assert_eq!(IncidentRef::parse("#42").unwrap(), Some(IncidentRef(42)));
        assert_eq!(IncidentRef::parse("42").unwrap(), None);
        assert!(IncidentRef::parse("#").is_err());
        assert!(IncidentRef::parse("#0").is_err());
        assert!(IncidentRef::parse("#-1").is_err());
        assert!(IncidentRef::parse("#+1").is_err());
        assert!(IncidentRef::parse("#1;DROP").is_err());
        assert!(IncidentRef::parse("#99999999999999999999").is_err());
    }

    #[test]
    fn durations_read_like_a_human_wrote_them() {
        assert_eq!(human_duration(42_000), "42 s");
        assert_eq!(human_duration(12 * 60_000), "12 m");
        assert_eq!(human_duration(3 * 3_600_000 + 5 * 60_000), "3 h 5 m");
        assert_eq!(human_duration(2 * 3_600_000), "2 h");
        assert_eq!(human_duration(50 * 3_600_000), "2 d 2 h");
        assert_eq!(human_duration(-5), "0 s");
    }
}
