//! Slack identifiers as newtypes, parsed at the edge so that nothing
//! downstream handles an unchecked string.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a Slack {kind} id ({hint})")]
pub struct IdError {
    pub value: String,
    pub kind: &'static str,
    pub hint: &'static str,
}

fn check(value: &str, prefixes: &[char], kind: &'static str, hint: &'static str) -> Result<String, IdError> {
    let ok = value.len() >= 3
        && value.len() <= 24
        && value.starts_with(prefixes)
        && value.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if ok {
        Ok(value.to_string())
    } else {
        Err(IdError {
            value: value.chars().take(40).collect(),
            kind,
            hint,
        })
    }
}

macro_rules! slack_id {
    ($name:ident, $prefixes:expr, $kind:literal, $hint:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, IdError> {
                check(value, $prefixes, $kind, $hint).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

slack_id!(UserId, &['U', 'W'], "user", "like U012AB3CD");
slack_id!(ChannelId, &['C', 'G', 'D'], "channel", "like C012AB3CD");
slack_id!(GroupId, &['S'], "user group", "like S012AB3CD");

impl UserId {
    /// `<@U123>` in mrkdwn: Slack renders it as the user's name.
    pub fn mention(&self) -> String {
        format!("<@{}>", self.0)
    }
}

impl ChannelId {
    /// Where a direct message to `user` goes: Slack's `chat.postMessage`
    /// accepts a user id as its channel and posts in the app's conversation
    /// with that user, so nothing has to open the conversation first.
    pub fn direct_to(user: &UserId) -> ChannelId {
        ChannelId(user.0.clone())
    }
}

impl GroupId {
    /// `<!subteam^S123>` pings every member of the user group.
    pub fn mention(&self) -> String {
        format!("<!subteam^{}>", self.0)
    }
}

/// Who a role entry in the config names: one user or a user group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleSubject {
    User(UserId),
    Group(GroupId),
}

impl RoleSubject {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if value.starts_with('S') {
            GroupId::parse(value).map(RoleSubject::Group)
        } else {
            UserId::parse(value).map(RoleSubject::User).map_err(|mut e| {
                e.kind = "user or user group";
                e.hint = "like U012AB3CD or S012AB3CD";
                e
            })
        }
    }
}

/// A user mention as Slack escapes it in slash-command text: `<@U123|name>`
/// or `<@U123>`. A bare `@name` cannot be resolved to an id and is refused.
pub fn parse_user_mention(token: &str) -> Result<UserId, IdError> {
    let bad = || IdError {
        value: token.chars().take(40).collect(),
        kind: "user mention",
        hint: "pick the person from Slack's @-autocomplete",
    };
    let inner = token
        .strip_prefix("<@")
        .and_then(|t| t.strip_suffix('>'))
        .ok_or_else(bad)?;
    let id = inner.split('|').next().unwrap_or_default();
    UserId::parse(id).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_slack_shapes_only() {
        assert!(UserId::parse("U012AB3CD").is_ok());
        assert!(UserId::parse("W012AB3CD").is_ok());
        assert!(UserId::parse("u012").is_err());
        assert!(UserId::parse("U01'; DROP").is_err());
        assert!(ChannelId::parse("C0INC").is_ok());
        assert!(ChannelId::parse("#general").is_err());
        assert!(GroupId::parse("S0LEADS").is_ok());
    }

    #[test]
    fn role_subject_distinguishes_groups() {
        assert_eq!(
            RoleSubject::parse("S01").unwrap(),
            RoleSubject::Group(GroupId("S01".into()))
        );
        assert_eq!(
            RoleSubject::parse("U01").unwrap(),
            RoleSubject::User(UserId("U01".into()))
        );
        assert!(
            RoleSubject::parse("bob")
                .unwrap_err()
                .to_string()
                .contains("user or user group")
        );
    }

    #[test]
    fn mentions_parse_with_and_without_names() {
        assert_eq!(parse_user_mention("<@U0BOB|bob>").unwrap().as_str(), "U0BOB");
        assert_eq!(parse_user_mention("<@U0BOB>").unwrap().as_str(), "U0BOB");
        assert!(parse_user_mention("@bob").is_err());
        assert!(parse_user_mention("<@bob>").is_err());
        assert!(parse_user_mention("<!channel>").is_err());
    }
}
