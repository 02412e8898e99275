//! Who may run what. Levels follow the runbooks' escalation ladder: L1
//! support reads and declares, L2 on-call runs incidents and requests
//! actions, L3 tech leads approve them. Users with no role get nothing.
//! A user's level is resolved by `crate::roles`.

use super::parse::Invocation;
use crate::config::Level;
use crate::error::UserError;

/// The level an invocation needs. `None`: anyone may (help text).
pub fn required(inv: &Invocation) -> Option<Level> {
    match inv {
        Invocation::IncidentHelp | Invocation::CatalogHelp { .. } | Invocation::ScheduledHelp => None,
        Invocation::Scheduled(cmd) => Some(cmd.level()),
        Invocation::Catalog { entry, .. } => Some(entry.def.level),
        Invocation::Incident(cmd) => Some(cmd.level()),
    }
}

pub fn authorize(required: Option<Level>, actual: Option<Level>, what: &str) -> Result<(), UserError> {
    match (required, actual) {
        (None, _) => Ok(()),
        (Some(r), Some(a)) if a >= r => Ok(()),
        (Some(r), a) => Err(UserError::new(format!(
            ":no_entry: `{what}` needs level {r}; you have {}. Ask an on-call engineer or a tech lead.",
            a.map(|l| l.to_string()).unwrap_or_else(|| "no role".into())
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::cmd::{Declare, IncidentCmd, Resolve};
    use crate::severity::Severity;

    #[test]
    fn levels_gate_commands() {
        let declare = Invocation::Incident(IncidentCmd::Declare(Declare {
            severity: Severity::P1,
            title: "x".into(),
        }));
        let resolve = Invocation::Incident(IncidentCmd::Resolve(Resolve {
            target: None,
            summary: None,
        }));
        assert!(authorize(required(&declare), Some(Level::L1), "x").is_ok());
        assert!(authorize(required(&declare), None, "x").is_err());
        assert!(authorize(required(&resolve), Some(Level::L1), "x").is_err());
        assert!(authorize(required(&resolve), Some(Level::L2), "x").is_ok());
        assert!(authorize(required(&resolve), Some(Level::L3), "x").is_ok());
        assert!(authorize(required(&Invocation::IncidentHelp), None, "x").is_ok());
        let e = authorize(Some(Level::L2), Some(Level::L1), "/incident resolve").unwrap_err();
        assert!(e.0.contains("needs level l2; you have l1"), "{e}");
    }
}
