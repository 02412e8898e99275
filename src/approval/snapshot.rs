//! What an approver approves besides the rows: the action's whole definition
//! as it was when requested — plan, apply, effect and verify SQL, the
//! rollback script's text, the deploy hook's target. It is stored with the
//! request and covered by the plan hash; at apply time the catalog, the
//! script and the hook are read again, and any difference refuses the apply.
//! The apply then runs the stored definition, never a file re-read later.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::args::{self, Value};
use crate::catalog::schema::CommandFile;
use crate::catalog::{Entry, rollback_script};
use crate::config::DeployHook;
use crate::error::UserError;
use crate::slack::text::escape;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub def: CommandFile,
    pub script: Option<Script>,
    pub hook: Option<HookTarget>,
    /// The Supabase Auth admin API `[[auth_admin]]` steps call (see
    /// `auth_admin::attach`); absent from the JSON when there is none, so
    /// snapshots stored before it existed keep their hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<super::auth_admin::AuthEndpoint>,
}

/// A rollback script's full text, as it will run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    pub file: String,
    pub text: String,
}

impl Script {
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.text.as_bytes()))
    }
}

/// The deploy hook a rollback calls. The URL itself is not stored (paths
/// carry secrets at several providers): its hash is, with what may be shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookTarget {
    pub service: String,
    pub method: String,
    /// Scheme and host only.
    pub endpoint: String,
    pub url_sha256: String,
}

impl HookTarget {
    pub fn of(service: &str, hook: &DeployHook) -> HookTarget {
        HookTarget {
            service: service.to_string(),
            method: hook.method.clone(),
            endpoint: crate::slack::text::origin_url(&hook.url),
            url_sha256: hex::encode(Sha256::digest(hook.url.as_bytes())),
        }
    }
}

impl Snapshot {
    /// The action as the catalog and config define it now, for these arguments.
    pub fn of(
        entry: &Entry,
        values: &BTreeMap<String, Value>,
        hooks: &BTreeMap<String, DeployHook>,
    ) -> Result<Snapshot, UserError> {
        let def = &entry.def;
        let arg = |name: &Option<String>| {
            name.as_ref()
                .and_then(|a| values.get(a))
                .map(args::display)
                .unwrap_or_default()
        };
        let script = match &def.script_arg {
            None => None,
            Some(_) => Some(read_script(entry, &arg(&def.script_arg))?),
        };
        let hook = match &def.deploy_hook_arg {
            None => None,
            Some(_) => {
                let service = arg(&def.deploy_hook_arg);
                let h = hooks.get(&service).ok_or_else(|| no_hook(&service, hooks))?;
                Some(HookTarget::of(&service, h))
            }
        };
        Ok(Snapshot {
            def: def.clone(),
            script,
            hook,
            auth: None,
        })
    }

    /// One serialization, the same every time for the same snapshot.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether a deploy hook's configured URL is still the approved one.
    pub fn hook_matches(&self, hook: &DeployHook) -> bool {
        self.hook.as_ref().is_some_and(|h| {
            h.url_sha256 == hex::encode(Sha256::digest(hook.url.as_bytes())) && h.method == hook.method
        })
    }

    #[cfg(test)]
    pub fn for_tests(apply_sql: &str) -> Snapshot {
        let text = format!(
            "kind = \"action\"\nschema = \"postgres\"\ncommand = \"/x\"\nname = \"y\"\nsummary = \"s\"\nusage = \"u\"\nlevel = \"l2\"\nmax_rows = 5\n\
             [[plan]]\nid = \"t\"\ntitle = \"t\"\nkey = \"name\"\nsql = \"SELECT name FROM t\"\n\
             [[apply]]\nplan = \"t\"\nsql = \"{apply_sql}\"\nparams = [\"plan.t\"]\n\
             [[verify]]\ntitle = \"v\"\nsql = \"SELECT 1 WHERE false\"\nexpect = \"empty\"\n"
        );
        Snapshot {
            def: toml::from_str(&text).expect("test action parses"),
            script: None,
            hook: None,
            auth: None,
        }
    }
}

fn read_script(entry: &Entry, version: &str) -> Result<Script, UserError> {
    let path = rollback_script(entry, version).ok_or_else(|| {
        UserError::new(format!(
            "Refusing: the catalog has no rollback script for migration `{}` ({}/<version>.sql).",
            escape(version),
            entry.def.rollback_scripts.as_deref().unwrap_or("")
        ))
    })?;
    let text =
        std::fs::read_to_string(&path).map_err(|e| UserError::new(format!("Cannot read the rollback script: {e}")))?;
    // Checked at load too; checked again because the file may have changed since.
    if let Err(problems) = crate::catalog::sql_guard::check_script(&text) {
        return Err(UserError::new(format!(
            "Refusing: the rollback script {}",
            escape(&problems.join("; "))
        )));
    }
    Ok(Script {
        file: format!("{version}.sql"),
        text,
    })
}

fn no_hook(service: &str, hooks: &BTreeMap<String, DeployHook>) -> UserError {
    let known: Vec<&str> = hooks.keys().map(String::as_str).collect();
    UserError::new(format!(
        "No deploy hook is configured for `{}`. Services: {}.",
        escape(service),
        if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        }
    ))
}
