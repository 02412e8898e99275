//! A Slack user's level: from direct role entries and from user-group
//! membership, which only Slack knows (`usergroups.users.list`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use slack_morphism::prelude::*;

use crate::clock::Clock;
use crate::config::{Level, Roles};
use crate::slack::client::SlackApi;

/// How long a group's fetched membership is trusted.
const GROUP_TTL_MS: i64 = 300_000;

/// Resolves a user's level from direct role entries and from user-group
/// membership (fetched with `usergroups.users.list`, cached for 5 minutes).
/// A group never fetched grants nothing. When Slack cannot be asked, a
/// command may use the last known membership, but an approval decision may
/// not: membership older than the refresh interval then grants nothing, so
/// someone removed from the tech leads' group cannot approve during a Slack
/// outage.
pub struct RoleResolver {
    clock: Arc<dyn Clock>,
    /// Group id → (fetched at, ms; members).
    cache: Mutex<HashMap<String, (i64, Vec<String>)>>,
}

/// How old a group's membership may be for the decision at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Commands: the last known membership, if Slack cannot be asked.
    LastKnown,
    /// Approval decisions: membership within the refresh interval, or none.
    Fresh,
}

impl RoleResolver {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        RoleResolver {
            clock,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub async fn level_of(&self, roles: &Roles, slack: &SlackApi, user: &str) -> Option<Level> {
        self.level(roles, slack, user, Freshness::LastKnown).await
    }

    /// The level an approval decision may rely on (fails closed when stale).
    pub async fn approver_level_of(&self, roles: &Roles, slack: &SlackApi, user: &str) -> Option<Level> {
        self.level(roles, slack, user, Freshness::Fresh).await
    }

    /// A user group's members as last known (fetched when stale), for
    /// invitations: who to ask into a room is not a permission.
    pub async fn group_members(&self, slack: &SlackApi, group: &str) -> Vec<String> {
        self.members(slack, group, Freshness::LastKnown).await
    }

    async fn level(&self, roles: &Roles, slack: &SlackApi, user: &str, freshness: Freshness) -> Option<Level> {
        let mut best = roles.direct_level(user);
        for (group, level) in roles.groups() {
            if best.is_some_and(|b| b >= level) {
                continue;
            }
            if self.members(slack, group, freshness).await.iter().any(|m| m == user) {
                best = Some(level);
            }
        }
        best
    }

    async fn members(&self, slack: &SlackApi, group: &str, freshness: Freshness) -> Vec<String> {
        let cached = self.cache.lock().expect("role cache").get(group).cloned();
        if let Some((at, members)) = &cached
            && self.clock.now_ms() - at < GROUP_TTL_MS
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
                    .insert(group.to_string(), (self.clock.now_ms(), members.clone()));
                members
            }
            Err(e) if freshness == Freshness::Fresh => {
                tracing::warn!(group, error = %e, "cannot fetch user-group members; the group grants nothing for approvals");
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(group, error = %e, "cannot fetch user-group members; using last known");
                cached.map(|(_, m)| m).unwrap_or_default()
            }
        }
    }
}
