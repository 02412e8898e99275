//! Slash-command text → typed invocation. Pure: no I/O, no state; every bad
//! argument becomes a `UserError` that names it and shows the usage.

use std::collections::BTreeMap;
use std::sync::Arc;

pub use crate::approval::followup::cmd::ScheduledCmd;
use crate::catalog::args::{Value, bind_args};
use crate::catalog::{Catalog, Entry};
use crate::error::UserError;
pub use crate::incident::cmd::IncidentCmd;
use crate::slack::text::{decode_command_text, escape};

#[derive(Debug, Clone)]
pub enum Invocation {
    Incident(IncidentCmd),
    /// `/incident help` (or no text).
    IncidentHelp,
    /// A command from the catalog, its arguments already typed (`words` as
    /// given, kept so an approved action can be re-parsed when applied).
    Catalog {
        entry: Arc<Entry>,
        values: BTreeMap<String, Value>,
        words: Vec<String>,
        target: Option<String>,
    },
    /// `/diagnose help` (or no text): the catalog's list.
    CatalogHelp {
        command: String,
    },
    /// `/scheduled list | cancel <id>`.
    Scheduled(ScheduledCmd),
    /// `/scheduled help` (or no text).
    ScheduledHelp,
}

impl PartialEq for Invocation {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Invocation::Incident(a), Invocation::Incident(b)) => a == b,
            (Invocation::IncidentHelp, Invocation::IncidentHelp) => true,
            (Invocation::Scheduled(a), Invocation::Scheduled(b)) => a == b,
            (Invocation::ScheduledHelp, Invocation::ScheduledHelp) => true,
            (
                Invocation::Catalog {
                    entry: a,
                    values: va,
                    target: ta,
                    ..
                },
                Invocation::Catalog {
                    entry: b,
                    values: vb,
                    target: tb,
                    ..
                },
            ) => Arc::ptr_eq(a, b) && va == vb && ta == tb,
            (Invocation::CatalogHelp { command: a }, Invocation::CatalogHelp { command: b }) => a == b,
            _ => false,
        }
    }
}

fn shown(s: &str) -> String {
    escape(&s.chars().take(30).collect::<String>())
}

/// Parse one slash command. `command` is Slack's `command` field
/// (`/incident`, or a catalog command such as `/diagnose`).
pub fn parse(command: &str, text: &str, catalog: &Catalog) -> Result<Invocation, UserError> {
    match command {
        "/incident" => Ok(match IncidentCmd::parse(text)? {
            Some(cmd) => Invocation::Incident(cmd),
            None => Invocation::IncidentHelp,
        }),
        "/scheduled" => Ok(match ScheduledCmd::parse(text)? {
            Some(cmd) => Invocation::Scheduled(cmd),
            None => Invocation::ScheduledHelp,
        }),
        c if catalog.has_command(c) => parse_catalog(c, text, catalog),
        other => Err(UserError::new(format!(
            "Unknown command `{}`. Try `/incident help` or `/diagnose help`.",
            shown(other)
        ))),
    }
}

/// The catalog's usage list for one slash command.
pub fn catalog_help(command: &str, catalog: &Catalog) -> String {
    let mut out = format!("*{command}* — runbook commands (add `--target NAME` to pick a database):");
    for e in catalog.entries(command) {
        out.push_str(&format!(
            "\n• `{}` — {} _(level {})_",
            e.def.usage, e.def.summary, e.def.level
        ));
    }
    out
}

fn parse_catalog(command: &str, text: &str, catalog: &Catalog) -> Result<Invocation, UserError> {
    let decoded = decode_command_text(text);
    let mut words: Vec<String> = decoded.split_whitespace().map(str::to_string).collect();
    let first = words.first().map(|w| w.to_ascii_lowercase()).unwrap_or_default();
    if first == "help" || (first.is_empty() && catalog.standalone(command).is_none()) {
        return Ok(Invocation::CatalogHelp {
            command: command.to_string(),
        });
    }
    let entry = match catalog.standalone(command) {
        Some(e) => e,
        None => {
            words.remove(0);
            catalog.get(command, &first).ok_or_else(|| {
                UserError::new(format!(
                    "Unknown check `{}`.\n{}",
                    shown(&first),
                    catalog_help(command, catalog)
                ))
            })?
        }
    };
    let mut target = None;
    let mut rest = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let value = if w == "--target" {
            Some(
                it.next()
                    .ok_or_else(|| UserError::new("`--target` needs a target name."))?,
            )
        } else {
            w.strip_prefix("--target=").map(str::to_string)
        };
        match value {
            Some(t) if is_target_name(&t) => target = Some(t),
            Some(t) => return Err(UserError::new(format!("`{}` is not a target name.", shown(&t)))),
            None => rest.push(w),
        }
    }
    let values = bind_args(&entry.def.args, &rest)
        .map_err(|e| UserError::new(format!("{}\n*Usage:* `{}`", e.0, entry.def.usage)))?;
    Ok(Invocation::Catalog {
        entry,
        values,
        words: rest,
        target,
    })
}

fn is_target_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse("/incident", text, &Catalog::default()).unwrap_err().0
    }

    #[test]
    fn incident_help_and_subcommands_route_to_the_incident_parser() {
        assert_eq!(
            parse("/incident", "", &Catalog::default()).unwrap(),
            Invocation::IncidentHelp
        );
        assert_eq!(
            parse("/incident", "help", &Catalog::default()).unwrap(),
            Invocation::IncidentHelp
        );
        assert!(matches!(
            parse("/incident", "ack", &Catalog::default()).unwrap(),
            Invocation::Incident(IncidentCmd::Ack(_))
        ));
    }

    #[test]
    fn unknown_commands_and_hostile_text_are_escaped() {
        let e = parse("/deploy", "now", &Catalog::default()).unwrap_err().0;
        assert!(e.contains("Unknown command `/deploy`"));
        let e = err("<!channel>");
        assert!(!e.contains("<!channel>"), "{e}");
        let e = err("sev '; DROP TABLE incidents; --");
        assert!(e.contains("is not a severity"));
    }
}
