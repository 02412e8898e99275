//! Who may run what. Levels follow the runbooks' escalation ladder: L1
//! support reads and declares, L2 on-call runs incidents, L3 tech leads
//! approve risky actions (later issues). Users with no role get nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use slack_morphism::prelude::*;

use super::parse::{IncidentCmd, Invocation};
use crate::config::{Level, Roles};
use crate::error::UserError;
use crate::slack::client::SlackApi;

/// The level an invocation needs. `None`: anyone may (help text).
pub fn required(inv: &Invocation) -> Option<Level> {
    match inv {
        Invocation::IncidentHelp | Invocation::CatalogHelp { .. } => None,
        Invocation::Catalog { entry, .. } => Some(entry.def.level),
        Invocation::Incident(cmd) => Some(match cmd {
            IncidentCmd::List | IncidentCmd::Timeline { .. } | IncidentCmd::Declare { .. } => Level::L1,
            IncidentCmd::Ack { .. }
            | IncidentCmd::Status { .. }
            | IncidentCmd::Sev { .. }
            | IncidentCmd::Assign { .. }
            | IncidentCmd::Resolve { .. } => Level::L2,
        }),
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

const GROUP_TTL: Duration = Duration::from_secs(300);

/// Resolves a user's level from direct role entries and from user-group
/// membership (fetched with `usergroups.users.list`, cached for 5 minutes).
/// When Slack cannot be asked, the last known membership is used, and a group
/// never fetched grants nothing: roles fail closed.
#[derive(Default)]
pub struct RoleResolver {
    cache: Mutex<HashMap<String, (std::time::Instant, Vec<String>)>>,
}

impl RoleResolver {
    pub async fn level_of(&self, roles: &Roles, slack: &SlackApi, user: &str) -> Option<Level> {
        let mut best = roles.direct_level(user);
        for (group, level) in roles.groups() {
            if best.is_some_and(|b| b >= level) {
                continue;
            }
            if self.members(slack, group).await.iter().any(|m| m == user) {
                best = Some(level);
            }
        }
        best
    }

    async fn members(&self, slack: &SlackApi, group: &str) -> Vec<String> {
        let cached = self.cache.lock().expect("role cache").get(group).cloned();
        if let Some((at, members)) = &cached
            && at.elapsed() < GROUP_TTL
        {
            return members.clone();
        }
        let req = SlackApiUserGroupsUsersListRequest::new(SlackUserGroupId::new(group.to_string()));
        match slack.session().usergroups_users_list(&req).await {
            Ok(resp) => {
                let members: Vec<String> = resp.users.into_iter().map(|u| u.to_string()).collect();
                self.cache
                    .lock()
                    .expect("role cache")
                    .insert(group.to_string(), (std::time::Instant::now(), members.clone()));
                members
            }
            Err(e) => {
                tracing::warn!(group, error = %e, "cannot fetch user-group members; using last known");
                cached.map(|(_, m)| m).unwrap_or_default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::model::Severity;

    #[test]
    fn levels_gate_commands() {
        let declare = Invocation::Incident(IncidentCmd::Declare {
            severity: Severity::P1,
            title: "x".into(),
        });
        let resolve = Invocation::Incident(IncidentCmd::Resolve {
            target: None,
            summary: None,
        });
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
