//! Incident domain types: severity (with the runbooks' definitions and
//! response timelines), state, and the `#42` reference.

use std::fmt;

use crate::error::UserError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    P0,
    P1,
    P2,
    P3,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Severity::P0, Severity::P1, Severity::P2, Severity::P3];

    pub fn parse(s: &str) -> Result<Severity, UserError> {
        match s.to_ascii_lowercase().as_str() {
            "p0" | "sev0" => Ok(Severity::P0),
            "p1" | "sev1" => Ok(Severity::P1),
            "p2" | "sev2" => Ok(Severity::P2),
            "p3" | "sev3" => Ok(Severity::P3),
            _ => Err(UserError::new(format!(
                "`{}` is not a severity: use p0, p1, p2 or p3.",
                crate::slack::text::escape(&s.chars().take(20).collect::<String>())
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::P0 => "p0",
            Severity::P1 => "p1",
            Severity::P2 => "p2",
            Severity::P3 => "p3",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Severity::P0 => "P0 Critical",
            Severity::P1 => "P1 High",
            Severity::P2 => "P2 Medium",
            Severity::P3 => "P3 Low",
        }
    }

    /// What the level means, condensed from the runbooks' severity tables.
    pub fn definition(self) -> &'static str {
        match self {
            Severity::P0 => "Platform down, data loss or corruption, security breach, or sign-in broken for everyone.",
            Severity::P1 => {
                "Major functionality broken (for example authentication failing) or severe performance degradation."
            }
            Severity::P2 => "A feature degraded or slow; a workaround exists.",
            Severity::P3 => "Minor bug or cosmetic problem; no urgent user impact.",
        }
    }

    /// The runbooks' response timeline for the level.
    pub fn expectation(self) -> &'static str {
        match self {
            Severity::P0 => {
                "Respond now; stakeholders notified within 10 min; diagnostics under way within 15 min; status page every 15 min."
            }
            Severity::P1 => {
                "Diagnostics within 15 min; root cause or escalation within 30 min; fix or workaround within 1 h."
            }
            Severity::P2 => "Investigation within 1 h; resolution path within 4 h; fix within 24 h.",
            Severity::P3 => "Schedule a fix; no escalation.",
        }
    }

    pub fn emoji(self) -> &'static str {
        match self {
            Severity::P0 => ":red_circle:",
            Severity::P1 => ":large_orange_circle:",
            Severity::P2 => ":large_yellow_circle:",
            Severity::P3 => ":white_circle:",
        }
    }

    /// How often the status page should hear from us while it is open.
    pub fn status_update_minutes(self) -> u32 {
        match self {
            Severity::P0 | Severity::P1 => 15,
            Severity::P2 => 60,
            Severity::P3 => 240,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().to_uppercase())
    }
}

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

#[derive(Debug, Clone)]
pub struct Incident {
    pub id: i64,
    pub channel: String,
    pub title: String,
    pub severity: Severity,
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
}

#[derive(Debug, Clone)]
pub struct TimelineEvent {
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
    fn severities_parse_case_insensitively_and_reject_others() {
        assert_eq!(Severity::parse("P1").unwrap(), Severity::P1);
        assert_eq!(Severity::parse("sev0").unwrap(), Severity::P0);
        let e = Severity::parse("p9").unwrap_err();
        assert!(e.0.contains("`p9` is not a severity"), "{e}");
        assert!(
            Severity::parse("<!channel>")
                .unwrap_err()
                .0
                .contains("&lt;!channel&gt;")
        );
    }

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
