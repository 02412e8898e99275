//! `[[auth_admin]]` steps: calls to the target's Supabase Auth (GoTrue)
//! admin API, one per approved key, that no rollback can undo. Today's one
//! call makes a password-recovery link and hands it to the requester only.
//!
//! They keep the engine's promises the way deploy hooks do. The request's
//! snapshot names the endpoint (scheme and host, and a hash of the whole
//! `supabase_url`, never the key), so the plan hash covers it and a config
//! that points elsewhere at apply time is refused. Before the request is
//! stored and again before each call, the engine itself reads the user from
//! `auth.users`: only the approved user, still there with the approved
//! email, neither banned nor deleted, gets a link. Nothing is retried.

mod apply;
mod deliver;
mod gotrue;
mod users;

pub use apply::run;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::executor::ApplyError;
use super::plan::{Plan, PlanTable};
use super::snapshot::Snapshot;
use crate::config::SupabaseAuth;
use crate::error::UserError;
use crate::slack::text::{origin_url, visible};
use crate::targets::Target;

/// The admin API an approved request calls, as approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthEndpoint {
    pub target: String,
    /// Scheme, host and port only.
    pub endpoint: String,
    pub url_sha256: String,
}

impl AuthEndpoint {
    fn of(target: &str, auth: &SupabaseAuth) -> AuthEndpoint {
        AuthEndpoint {
            target: target.to_string(),
            endpoint: origin_url(&auth.url),
            url_sha256: hex::encode(Sha256::digest(auth.url.as_bytes())),
        }
    }
}

/// The snapshot with the endpoint its `[[auth_admin]]` steps will call on
/// `target`; refused, naming the config keys, when the target has none.
pub fn attach(
    mut snapshot: Snapshot,
    target: &str,
    configured: &BTreeMap<String, SupabaseAuth>,
) -> Result<Snapshot, UserError> {
    if snapshot.def.auth_admin.is_empty() {
        return Ok(snapshot);
    }
    let auth = configured.get(target).ok_or_else(|| {
        UserError::new(format!(
            "`{} {}` calls the Supabase Auth admin API of target `{target}`, which is not configured: set \
             `targets.{target}.supabase_url` (https://<ref>.supabase.co) and `targets.{target}.service_role_key` \
             (the project's service role key) in the config.",
            snapshot.def.command, snapshot.def.name
        ))
    })?;
    snapshot.auth = Some(AuthEndpoint::of(target, auth));
    Ok(snapshot)
}

/// At apply time: the configured endpoint must be the approved one.
pub fn unchanged(approved: &Snapshot, now: &Snapshot) -> Result<(), ApplyError> {
    match (&approved.auth, &now.auth) {
        (Some(a), Some(n)) if a != n => Err(ApplyError::Failed(format!(
            "the Supabase Auth endpoint of target `{}` (`supabase_url`) changed since approval — request again; \
             no link was generated",
            a.target
        ))),
        _ => Ok(()),
    }
}

/// The approval card's lines for these steps.
pub fn warnings(snapshot: &Snapshot) -> Vec<String> {
    let endpoint = snapshot.auth.as_ref().map(|a| a.endpoint.as_str()).unwrap_or("?");
    snapshot
        .def
        .auth_admin
        .iter()
        .map(|s| {
            format!(
                "Cannot be undone by the bot: {} — sends a password-recovery link to the requester, privately \
                 (Supabase Auth at {endpoint}); the link works until it is used or expires",
                visible(&s.title)
            )
        })
        .collect()
}

/// Before a request is stored: every planned user must be able to get a
/// link (the plan must show their email; banned or deleted users have
/// nothing to reset).
pub async fn preflight(target: &Target, snapshot: &Snapshot, plan: &Plan) -> Result<(), UserError> {
    for step in &snapshot.def.auth_admin {
        let table = plan
            .table(&step.plan)
            .ok_or_else(|| UserError::new(format!("Refusing: the plan has no step `{}`.", step.plan)))?;
        for key in table.keys() {
            let email = email_of(table, &key).ok_or_else(|| {
                UserError::new(format!(
                    "Refusing: plan step `{}` must show the user's `email`; nothing was requested.",
                    step.plan
                ))
            })?;
            let unreachable = |e| UserError::new(format!("Target {} {e}; nothing was requested.", target.name));
            let mut conn = target.acquire().await.map_err(unreachable)?;
            if let Some(why) = users::ineligible(&mut conn, &key, &email).await.map_err(unreachable)? {
                return Err(UserError::new(format!(
                    "Refusing: {} ({}): {why}, and a recovery link would not let them sign in; nothing was requested.",
                    visible(&email),
                    visible(&key)
                )));
            }
        }
    }
    Ok(())
}

/// The approved row's email.
fn email_of(table: &PlanTable, key: &str) -> Option<String> {
    let i = table.columns.iter().position(|c| c == "email")?;
    table.row_of(key)?.get(i)?.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::for_tests("UPDATE t SET a = 1 WHERE name = ANY($1) RETURNING name");
        s.def.auth_admin = toml::from_str::<crate::catalog::schema::CommandFile>(
            "kind = \"action\"\nschema = \"supabase\"\ncommand = \"/user\"\nname = \"reset-password\"\nsummary = \"s\"\nusage = \"u\"\nlevel = \"l2\"\n\
             [[auth_admin]]\ntitle = \"Recovery link\"\nplan = \"t\"\ncall = \"generate_link\"\nlink_type = \"recovery\"\n",
        )
        .unwrap()
        .auth_admin;
        s
    }

    fn config(url: &str) -> BTreeMap<String, SupabaseAuth> {
        let auth = SupabaseAuth {
            url: url.into(),
            service_role_key: secrecy::SecretString::from("the-key".to_string()),
        };
        BTreeMap::from([("production".to_string(), auth)])
    }

    #[test]
    fn actions_without_auth_admin_steps_keep_their_snapshot_and_hash() {
        let plain = Snapshot::for_tests("UPDATE t SET a = 1 WHERE name = ANY($1) RETURNING name");
        let before = plain.canonical();
        let after = attach(plain, "production", &BTreeMap::new()).unwrap();
        assert_eq!(after.canonical(), before);
        assert!(!before.contains("auth"), "{before}");
    }

    #[test]
    fn the_snapshot_names_the_endpoint_never_the_key_and_an_edit_is_refused() {
        let e = attach(snapshot(), "production", &BTreeMap::new()).unwrap_err();
        assert!(
            e.0.contains("`targets.production.supabase_url`") && e.0.contains("`targets.production.service_role_key`"),
            "{e}"
        );
        let approved = attach(snapshot(), "production", &config("https://abcd.supabase.co")).unwrap();
        let json = approved.canonical();
        assert!(json.contains("\"endpoint\":\"https://abcd.supabase.co\""), "{json}");
        assert!(!json.contains("the-key"));
        let same = attach(snapshot(), "production", &config("https://abcd.supabase.co")).unwrap();
        assert_eq!(unchanged(&approved, &same), Ok(()));
        let moved = attach(snapshot(), "production", &config("https://abcd.supabase.co/other")).unwrap();
        let e = unchanged(&approved, &moved).unwrap_err();
        assert!(e.to_string().contains("changed since approval"), "{e}");
        let w = warnings(&approved);
        assert_eq!(
            w,
            [
                "Cannot be undone by the bot: Recovery link — sends a password-recovery link to the requester, privately \
              (Supabase Auth at https://abcd.supabase.co); the link works until it is used or expires"
            ]
        );
    }
}
