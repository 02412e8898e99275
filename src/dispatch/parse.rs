//! Slash-command text → typed invocation. Pure: no I/O, no state; every bad
//! argument becomes a `UserError` that names it and shows the usage.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::catalog::args::{Value, bind_args};
use crate::catalog::{Catalog, Entry};
use crate::error::UserError;
use crate::incident::model::{IncidentRef, Severity};
use crate::slack::ids::{UserId, parse_user_mention};
use crate::slack::text::{decode_command_text, escape};

pub const TITLE_MAX: usize = 140;
pub const TEXT_MAX: usize = 2000;

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
}

impl PartialEq for Invocation {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Invocation::Incident(a), Invocation::Incident(b)) => a == b,
            (Invocation::IncidentHelp, Invocation::IncidentHelp) => true,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentCmd {
    Declare {
        severity: Severity,
        title: String,
    },
    Ack {
        target: Option<IncidentRef>,
    },
    Status {
        target: Option<IncidentRef>,
        text: String,
    },
    Sev {
        target: Option<IncidentRef>,
        severity: Severity,
    },
    Assign {
        target: Option<IncidentRef>,
        user: UserId,
    },
    Resolve {
        target: Option<IncidentRef>,
        summary: Option<String>,
    },
    List,
    Timeline {
        target: Option<IncidentRef>,
    },
}

impl IncidentCmd {
    pub fn name(&self) -> &'static str {
        match self {
            IncidentCmd::Declare { .. } => "incident.declare",
            IncidentCmd::Ack { .. } => "incident.ack",
            IncidentCmd::Status { .. } => "incident.status",
            IncidentCmd::Sev { .. } => "incident.sev",
            IncidentCmd::Assign { .. } => "incident.assign",
            IncidentCmd::Resolve { .. } => "incident.resolve",
            IncidentCmd::List => "incident.list",
            IncidentCmd::Timeline { .. } => "incident.timeline",
        }
    }
}

pub const INCIDENT_USAGE: &str = "*Usage:* `/incident p0|p1|p2|p3 <title>` declares an incident.\n\
In an incident's channel (or with `#id`):\n\
• `/incident ack [#id]` — acknowledge\n\
• `/incident status [#id] <text>` — post a status update\n\
• `/incident sev [#id] p0|p1|p2|p3` — change severity\n\
• `/incident assign [#id] @person` — hand over the commander role\n\
• `/incident resolve [#id] [summary]` — resolve, with timeline, postmortem and status-page drafts\n\
• `/incident list` — open incidents\n\
• `/incident timeline [#id]` — everything that happened";

fn usage_error(what: String) -> UserError {
    UserError::new(format!("{what}\n{INCIDENT_USAGE}"))
}

fn shown(s: &str) -> String {
    escape(&s.chars().take(30).collect::<String>())
}

/// Parse one slash command. `command` is Slack's `command` field
/// (`/incident`, or a catalog command such as `/diagnose`).
pub fn parse(command: &str, text: &str, catalog: &Catalog) -> Result<Invocation, UserError> {
    match command {
        "/incident" => parse_incident(text),
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

fn parse_incident(text: &str) -> Result<Invocation, UserError> {
    let text = text.trim();
    let (verb, rest) = split_first(text);
    let verb_lc = verb.to_ascii_lowercase();
    if verb.is_empty() || verb_lc == "help" {
        return Ok(Invocation::IncidentHelp);
    }
    if let Ok(severity) = Severity::parse(&verb_lc) {
        let title = decode_command_text(rest).trim().to_string();
        if title.is_empty() {
            return Err(usage_error(format!(
                "`/incident {verb_lc}` needs a title, like `/incident {verb_lc} Login failing`."
            )));
        }
        if title.chars().count() > TITLE_MAX {
            return Err(usage_error(format!(
                "The title is {} characters; keep it under {TITLE_MAX}.",
                title.chars().count()
            )));
        }
        return Ok(Invocation::Incident(IncidentCmd::Declare { severity, title }));
    }
    let (target, rest) = take_ref(rest)?;
    let cmd = match verb_lc.as_str() {
        "ack" | "acknowledge" => {
            no_more(&verb_lc, rest)?;
            IncidentCmd::Ack { target }
        }
        "status" | "update" => {
            let text = decode_command_text(rest).trim().to_string();
            if text.is_empty() {
                return Err(usage_error("`/incident status` needs the update text.".into()));
            }
            if text.chars().count() > TEXT_MAX {
                return Err(usage_error(format!(
                    "The update is too long; keep it under {TEXT_MAX} characters."
                )));
            }
            IncidentCmd::Status { target, text }
        }
        "sev" | "severity" => {
            let (s, more) = split_first(rest);
            if s.is_empty() {
                return Err(usage_error(
                    "`/incident sev` needs a severity: p0, p1, p2 or p3.".into(),
                ));
            }
            let severity = Severity::parse(s).map_err(|e| usage_error(e.0))?;
            no_more(&verb_lc, more)?;
            IncidentCmd::Sev { target, severity }
        }
        "assign" => {
            let (m, more) = split_first(rest);
            if m.is_empty() {
                return Err(usage_error(
                    "`/incident assign` needs a person: `/incident assign @name`.".into(),
                ));
            }
            let user = parse_user_mention(m).map_err(|_| {
                usage_error(format!(
                    "`{}` is not a Slack user: pick the person from the @-autocomplete.",
                    shown(m)
                ))
            })?;
            no_more(&verb_lc, more)?;
            IncidentCmd::Assign { target, user }
        }
        "resolve" => {
            let s = decode_command_text(rest).trim().to_string();
            if s.chars().count() > TEXT_MAX {
                return Err(usage_error(format!(
                    "The summary is too long; keep it under {TEXT_MAX} characters."
                )));
            }
            IncidentCmd::Resolve {
                target,
                summary: (!s.is_empty()).then_some(s),
            }
        }
        "list" => {
            if target.is_some() {
                return Err(usage_error("`/incident list` takes no incident reference.".into()));
            }
            no_more(&verb_lc, rest)?;
            IncidentCmd::List
        }
        "timeline" => {
            no_more(&verb_lc, rest)?;
            IncidentCmd::Timeline { target }
        }
        _ => return Err(usage_error(format!("Unknown subcommand `{}`.", shown(verb)))),
    };
    Ok(Invocation::Incident(cmd))
}

fn split_first(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

fn take_ref(s: &str) -> Result<(Option<IncidentRef>, &str), UserError> {
    let (first, rest) = split_first(s);
    match IncidentRef::parse(first).map_err(|e| usage_error(e.0))? {
        Some(r) => Ok((Some(r), rest)),
        None => Ok((None, s.trim())),
    }
}

fn no_more(verb: &str, rest: &str) -> Result<(), UserError> {
    if rest.trim().is_empty() {
        Ok(())
    } else {
        Err(usage_error(format!(
            "`/incident {verb}` does not take `{}`.",
            shown(rest.trim())
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(text: &str) -> IncidentCmd {
        match parse("/incident", text, &Catalog::default()).unwrap() {
            Invocation::Incident(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn err(text: &str) -> String {
        parse("/incident", text, &Catalog::default()).unwrap_err().0
    }

    #[test]
    fn declares_with_severity_and_title() {
        assert_eq!(
            inc("p1 Login failing"),
            IncidentCmd::Declare {
                severity: Severity::P1,
                title: "Login failing".into()
            }
        );
        assert_eq!(
            inc("  P0   DB &lt;down&gt;  "),
            IncidentCmd::Declare {
                severity: Severity::P0,
                title: "DB <down>".into()
            }
        );
    }

    #[test]
    fn subcommands_with_and_without_refs() {
        assert_eq!(inc("ack"), IncidentCmd::Ack { target: None });
        assert_eq!(
            inc("ack #12"),
            IncidentCmd::Ack {
                target: Some(IncidentRef(12))
            }
        );
        assert_eq!(
            inc("status #3 rolling back the deploy"),
            IncidentCmd::Status {
                target: Some(IncidentRef(3)),
                text: "rolling back the deploy".into()
            }
        );
        assert_eq!(
            inc("sev p0"),
            IncidentCmd::Sev {
                target: None,
                severity: Severity::P0
            }
        );
        assert_eq!(
            inc("assign <@U0BOB|bob>"),
            IncidentCmd::Assign {
                target: None,
                user: UserId::parse("U0BOB").unwrap()
            }
        );
        assert_eq!(
            inc("resolve"),
            IncidentCmd::Resolve {
                target: None,
                summary: None
            }
        );
        assert_eq!(
            inc("resolve #4 bad index"),
            IncidentCmd::Resolve {
                target: Some(IncidentRef(4)),
                summary: Some("bad index".into())
            }
        );
        assert_eq!(inc("list"), IncidentCmd::List);
        assert_eq!(
            inc("timeline #9"),
            IncidentCmd::Timeline {
                target: Some(IncidentRef(9))
            }
        );
        assert_eq!(
            parse("/incident", "", &Catalog::default()).unwrap(),
            Invocation::IncidentHelp
        );
        assert_eq!(
            parse("/incident", "help", &Catalog::default()).unwrap(),
            Invocation::IncidentHelp
        );
    }

    #[test]
    fn bad_arguments_are_named_with_usage() {
        assert!(err("p1").contains("needs a title"));
        assert!(err("p1   ").contains("needs a title"));
        assert!(err(&format!("p1 {}", "x".repeat(200))).contains("keep it under"));
        assert!(err("sev p7").contains("`p7` is not a severity"));
        assert!(err("sev").contains("needs a severity"));
        assert!(err("sev p1 extra").contains("does not take `extra`"));
        assert!(err("assign bob").contains("`bob` is not a Slack user"));
        assert!(err("assign").contains("needs a person"));
        assert!(err("ack #abc").contains("`#abc` is not an incident reference"));
        assert!(err("ack now").contains("does not take `now`"));
        assert!(err("status").contains("needs the update text"));
        assert!(err("frobnicate").contains("Unknown subcommand `frobnicate`"));
        assert!(err("list #3").contains("takes no incident reference"));
        assert!(err("frobnicate").contains("*Usage:*"));
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
