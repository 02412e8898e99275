//! `[[auth_admin]]`: an action step that calls the Supabase Auth (GoTrue)
//! admin API of the target's project for each approved key of a plan step,
//! after the action's transaction (if any) has committed. Today it has one
//! call: a password-recovery link (`generate_link`, type `recovery`), handed
//! to the requester in a direct message.
//!
//! What the step does is fixed by the engine, not written in the file: the
//! call, the link type, the re-read of `auth.users` before each call (same
//! user, same email, not banned or deleted) and where the link goes. A file
//! only says which plan step's keys (auth user ids) it runs for, so no
//! catalog file can turn it into a sign-in link or send it elsewhere.

use serde::{Deserialize, Serialize};

use super::schema::CommandFile;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthAdminDef {
    /// Names the step in the result and on the approval card.
    pub title: String,
    /// The plan step whose approved keys are `auth.users` ids; its rows
    /// must show the user's `email` (the address the link is made for).
    pub plan: String,
    pub call: AuthCall,
    pub link_type: LinkType,
}

/// The admin endpoint a step calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthCall {
    /// `POST {supabase_url}/auth/v1/admin/generate_link`.
    GenerateLink,
}

/// The kind of link `generate_link` makes. Only a recovery link: a
/// `magiclink` or `invite` would sign its holder in (or create a user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkType {
    Recovery,
}

/// Problems with an action's `[[auth_admin]]` steps, as `(field, why)`.
pub fn problems(def: &CommandFile) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if def.auth_admin.len() > 1 {
        out.push((
            "auth_admin".to_string(),
            "one [[auth_admin]] step per action: each approval hands out one link".to_string(),
        ));
    }
    if !def.auth_admin.is_empty() && def.max_rows != Some(1) {
        out.push((
            "max_rows".to_string(),
            "must be 1: an [[auth_admin]] step hands a credential to one person, for one user".to_string(),
        ));
    }
    for (i, s) in def.auth_admin.iter().enumerate() {
        let at = |k: &str| format!("auth_admin[{i}].{k}");
        match def.plan.iter().find(|p| p.id == s.plan) {
            Some(p) if p.key.is_some() => {}
            Some(_) => out.push((at("plan"), format!("plan step `{}` has no `key`", s.plan))),
            None => out.push((at("plan"), format!("there is no plan step `{}`", s.plan))),
        }
        if s.title.trim().is_empty() {
            out.push((at("title"), "must not be empty".to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::catalog::parse;

    const RESET: &str = r#"
        kind = "action"
        schema = "supabase"
        command = "/user"
        name = "reset-password"
        summary = "Send a password-recovery link to the requester"
        usage = "/user reset-password <email|uuid>"
        level = "l2"
        max_rows = 1
        [[args]]
        name = "user"
        type = "email_or_uuid"
        [[plan]]
        id = "auth_user"
        title = "Auth user"
        key = "id"
        sql = "SELECT id, email FROM auth.users WHERE id = $1 OR email = $2"
        params = ["user.uuid", "user.email"]
        [[auth_admin]]
        title = "Password-recovery link"
        plan = "auth_user"
        call = "generate_link"
        link_type = "recovery"
    "#;

    fn errs(text: &str) -> Vec<String> {
        parse(Path::new("x.toml"), text)
            .unwrap_err()
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.why))
            .collect()
    }

    #[test]
    fn an_action_may_consist_of_a_plan_and_an_auth_admin_step() {
        let d = parse(Path::new("x.toml"), RESET).unwrap();
        assert_eq!(d.auth_admin[0].plan, "auth_user");
    }

    #[test]
    fn check_refuses_what_would_hand_out_more_or_other_links() {
        for (from, to, want) in [
            ("max_rows = 1", "max_rows = 5", "max_rows: must be 1"),
            (
                "plan = \"auth_user\"",
                "plan = \"nobody\"",
                "auth_admin[0].plan: there is no plan step `nobody`",
            ),
            (
                "key = \"id\"\n",
                "counts = false\n",
                "auth_admin[0].plan: plan step `auth_user` has no `key`",
            ),
            (
                "title = \"Password-recovery link\"",
                "title = \" \"",
                "auth_admin[0].title: must not be empty",
            ),
            (
                "link_type = \"recovery\"",
                "link_type = \"magiclink\"",
                "unknown variant `magiclink`",
            ),
            (
                "call = \"generate_link\"",
                "call = \"delete_user\"",
                "unknown variant `delete_user`",
            ),
        ] {
            assert!(RESET.contains(from), "{from}");
            let e = errs(&RESET.replace(from, to));
            assert!(e.iter().any(|p| p.contains(want)), "{want}: {e:?}");
        }
        let twice = format!(
            "{RESET}\n[[auth_admin]]\ntitle = \"again\"\nplan = \"auth_user\"\ncall = \"generate_link\"\nlink_type = \"recovery\"\n"
        );
        assert!(
            errs(&twice)
                .iter()
                .any(|p| p.starts_with("auth_admin: one [[auth_admin]] step"))
        );
    }

    #[test]
    fn only_a_sql_planned_action_takes_auth_admin_steps() {
        let diagnostic = RESET.replace("kind = \"action\"", "kind = \"diagnostic\"");
        assert!(
            errs(&diagnostic)
                .iter()
                .any(|p| p.starts_with("auth_admin: only an action"))
        );
        let hook = RESET.replace("max_rows = 1", "max_rows = 1\ndeploy_hook_arg = \"user\"");
        assert!(
            errs(&hook)
                .iter()
                .any(|p| p == "auth_admin: a deploy-hook action makes no other call"),
            "{:?}",
            errs(&hook)
        );
    }
}
