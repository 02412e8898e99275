//! A Slack user's level: from direct role entries and from user-group
//! membership, which only Slack knows (`usergroups.users.list`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use slack_morphism::prelude::*;

use crate::config::{Level, Roles};
use crate::slack::client::SlackApi;

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
