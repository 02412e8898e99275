//! Incident severity: the runbooks' P0–P3 levels, their definitions and
//! response timelines. A low module so that config can validate the
//! severities alert routes declare without importing the incident feature.

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

impl TryFrom<String> for Severity {
    type Error = UserError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Severity::parse(&s)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().to_uppercase())
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
}
