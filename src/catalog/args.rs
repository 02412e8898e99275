//! Argument values: parsed into types at the edge so that SQL only ever sees
//! bound, typed parameters (a UUID binds as `uuid`, an int as `bigint`).

use std::collections::BTreeMap;

use uuid::Uuid;

use super::schema::{ArgDef, ArgType};
use crate::error::UserError;
use crate::slack::text::escape;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Uuid(Uuid),
    Text(String),
    List(Vec<String>),
    Int(i64),
    EmailOrUuid { email: Option<String>, uuid: Option<Uuid> },
}

/// A parameter ready to bind; `None` binds SQL NULL of that type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bound {
    Uuid(Option<Uuid>),
    Text(Option<String>),
    TextList(Vec<String>),
    Int(Option<i64>),
}

fn shown(s: &str) -> String {
    escape(&s.chars().take(60).collect::<String>())
}

pub fn parse_email(s: &str) -> Option<String> {
    let s = s.trim();
    let (local, domain) = s.rsplit_once('@')?;
    let ok_local = !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&*+-/=?^_{|}~.".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.');
    let labels: Vec<&str> = domain.split('.').collect();
    let ok_domain = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    (ok_local && ok_domain && s.len() <= 254).then(|| format!("{local}@{}", domain.to_ascii_lowercase()))
}

pub fn parse_value(def: &ArgDef, raw: &str) -> Result<Value, UserError> {
    let bad = |what: &str| UserError::new(format!("`{}` is not {what} (argument `{}`).", shown(raw), def.name));
    match def.ty {
        ArgType::Uuid => Uuid::parse_str(raw.trim()).map(Value::Uuid).map_err(|_| bad("a UUID")),
        ArgType::Email => parse_email(raw).map(Value::Text).ok_or_else(|| bad("an email address")),
        ArgType::EmailOrUuid => match Uuid::parse_str(raw.trim()) {
            Ok(u) => Ok(Value::EmailOrUuid {
                email: None,
                uuid: Some(u),
            }),
            Err(_) => parse_email(raw)
                .map(|e| Value::EmailOrUuid {
                    email: Some(e),
                    uuid: None,
                })
                .ok_or_else(|| bad("an email address or a UUID")),
        },
        ArgType::Identifier => {
            if is_identifier(raw) {
                Ok(Value::Text(raw.to_string()))
            } else {
                Err(bad("an identifier (letters, digits, `_`, `-`, `.`)"))
            }
        }
        ArgType::IdentifierList => {
            let items: Vec<String> = raw
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if items.is_empty() || items.len() > 50 || !items.iter().all(|i| is_identifier(i)) {
                return Err(bad("a comma-separated list of names"));
            }
            let mut unique = items;
            unique.sort();
            unique.dedup();
            Ok(Value::List(unique))
        }
        ArgType::Text => {
            let t = raw.trim();
            if t.is_empty() || t.chars().count() > 500 {
                Err(bad("a text of 1 to 500 characters"))
            } else {
                Ok(Value::Text(t.to_string()))
            }
        }
        ArgType::Int => {
            let n: i64 = raw.trim().parse().map_err(|_| bad("a whole number"))?;
            match (def.min, def.max) {
                (Some(lo), _) if n < lo => Err(bad(&format!("at least {lo}"))),
                (_, Some(hi)) if n > hi => Err(bad(&format!("at most {hi}"))),
                _ => Ok(Value::Int(n)),
            }
        }
        ArgType::Enum => {
            let v = raw.trim().to_ascii_lowercase();
            if def.values.contains(&v) {
                Ok(Value::Text(v))
            } else {
                Err(bad(&format!("one of {}", def.values.join(", "))))
            }
        }
    }
}

fn is_identifier(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= 63
        && raw
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// Match positional words to the declared arguments. A final `text`
/// argument takes the rest of the line.
pub fn bind_args(defs: &[ArgDef], words: &[String]) -> Result<BTreeMap<String, Value>, UserError> {
    let mut out = BTreeMap::new();
    for (i, def) in defs.iter().enumerate() {
        let rest;
        let word = if def.ty == ArgType::Text && i < words.len() {
            rest = words[i..].join(" ");
            Some(&rest)
        } else {
            words.get(i)
        };
        match (word, &def.default) {
            (Some(w), _) => {
                out.insert(def.name.clone(), parse_value(def, w)?);
                if def.ty == ArgType::Text {
                    return Ok(out);
                }
            }
            (None, Some(d)) => {
                out.insert(def.name.clone(), parse_value(def, d)?);
            }
            (None, None) if def.optional => {}
            (None, None) => return Err(UserError::new(format!("Missing argument `{}`.", def.name))),
        }
    }
    // Values first, so a malformed value is named before the words after it.
    if let Some(extra) = words.get(defs.len()) {
        return Err(UserError::new(format!("Unexpected argument `{}`.", shown(extra))));
    }
    Ok(out)
}

/// Where a statement's `$n` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A typed argument (`name`, or `name.email` / `name.uuid`).
    Arg(String),
    /// The approved keys of a plan step, bound as `text[]` (`plan.<id>`).
    PlanKeys(String),
    /// In an effect: the one approved key it runs for, as text (`key`).
    Key,
    /// In an effect: a column of that key's approved row, as text (`row.<col>`).
    RowColumn(String),
}

/// Which sources a statement may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Diagnostic steps and plan queries: arguments only.
    Arguments,
    /// Apply statements and verifications: arguments and approved keys.
    Apply,
    /// Effect rechecks and runs: also the key and its approved row.
    Effect,
}

/// Names an argument may not take, because parameters use them.
pub const RESERVED: &[&str] = &["plan", "key", "row"];

/// Resolve one parameter name for a statement in `context`; `plan_ids` are
/// the action's plan steps that have a key.
pub fn resolve_source(defs: &[ArgDef], plan_ids: &[&str], param: &str, context: Context) -> Result<Source, String> {
    if let Some(id) = param.strip_prefix("plan.") {
        if context == Context::Arguments {
            return Err(format!("`{param}`: approved keys exist only once a plan is approved"));
        }
        if !plan_ids.contains(&id) {
            return Err(format!("`{param}`: there is no plan step `{id}` with a `key`"));
        }
        return Ok(Source::PlanKeys(id.to_string()));
    }
    if context == Context::Effect {
        if param == "key" {
            return Ok(Source::Key);
        }
        if let Some(col) = param.strip_prefix("row.") {
            return Ok(Source::RowColumn(col.to_string()));
        }
    }
    resolve_param(defs, param).map(|_| Source::Arg(param.to_string()))
}

/// Which declared argument a step parameter names, and how it binds.
/// `name` for plain arguments; `name.email` / `name.uuid` for `email_or_uuid`.
pub fn resolve_param<'a>(defs: &'a [ArgDef], param: &str) -> Result<(&'a ArgDef, Option<&'static str>), String> {
    let (name, part) = match param.split_once('.') {
        Some((n, "email")) => (n, Some("email")),
        Some((n, "uuid")) => (n, Some("uuid")),
        Some((_, other)) => return Err(format!("`.{other}` is not a part: use `.email` or `.uuid`")),
        None => (param, None),
    };
    let def = defs
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| format!("no argument `{name}`"))?;
    match (def.ty, part) {
        (ArgType::EmailOrUuid, None) => Err(format!(
            "`{name}` is email_or_uuid: bind `{name}.email` or `{name}.uuid`"
        )),
        (ArgType::EmailOrUuid, Some(_)) | (_, None) => Ok((def, part)),
        (_, Some(_)) => Err(format!("`{name}` has no parts")),
    }
}

/// The typed value of one step parameter (NULL when an optional argument was omitted).
pub fn bound(defs: &[ArgDef], values: &BTreeMap<String, Value>, param: &str) -> Bound {
    let Ok((def, part)) = resolve_param(defs, param) else {
        // Validated at load; unreachable for a loaded catalog.
        return Bound::Text(None);
    };
    let v = values.get(&def.name);
    match (def.ty, part) {
        (ArgType::Uuid, _) => Bound::Uuid(match v {
            Some(Value::Uuid(u)) => Some(*u),
            _ => None,
        }),
        (ArgType::Int, _) => Bound::Int(match v {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        }),
        (ArgType::IdentifierList, _) => Bound::TextList(match v {
            Some(Value::List(items)) => items.clone(),
            _ => Vec::new(),
        }),
        (ArgType::EmailOrUuid, Some("uuid")) => Bound::Uuid(match v {
            Some(Value::EmailOrUuid { uuid, .. }) => *uuid,
            _ => None,
        }),
        (ArgType::EmailOrUuid, _) => Bound::Text(match v {
            Some(Value::EmailOrUuid { email, .. }) => email.clone(),
            _ => None,
        }),
        _ => Bound::Text(match v {
            Some(Value::Text(t)) => Some(t.clone()),
            _ => None,
        }),
    }
}

/// How a value reads back to a person.
pub fn display(v: &Value) -> String {
    match v {
        Value::Uuid(u) => u.to_string(),
        Value::Text(t) => t.clone(),
        Value::List(items) => items.join(","),
        Value::Int(n) => n.to_string(),
        Value::EmailOrUuid { email: Some(e), .. } => e.clone(),
        Value::EmailOrUuid { uuid: Some(u), .. } => u.to_string(),
        Value::EmailOrUuid { .. } => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(ty: ArgType) -> ArgDef {
        ArgDef {
            name: "a".into(),
            ty,
            help: None,
            optional: false,
            default: None,
            values: vec![],
            min: Some(1),
            max: Some(90),
        }
    }

    #[test]
    fn emails() {
        assert_eq!(parse_email("Ops@Example.COM").as_deref(), Some("Ops@example.com"));
        assert_eq!(parse_email("a+tag@x.io").as_deref(), Some("a+tag@x.io"));
        for bad in [
            "",
            "a",
            "a@b",
            "a@@b.c",
            "a b@c.d",
            "'; DROP TABLE users; --@x.io",
            "<!channel>@x.io",
            "a@-x.io",
            ".a@x.io",
        ] {
            assert!(parse_email(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn typed_values_and_their_errors() {
        let u = "0b9e3c8e-6f0a-4d7e-9a51-3f2f1c0e8d11";
        assert!(matches!(parse_value(&def(ArgType::Uuid), u), Ok(Value::Uuid(_))));
        let e = parse_value(&def(ArgType::Uuid), "1' OR '1'='1").unwrap_err();
        assert!(e.0.contains("is not a UUID (argument `a`)"), "{e}");
        assert_eq!(parse_value(&def(ArgType::Int), "30").unwrap(), Value::Int(30));
        assert!(
            parse_value(&def(ArgType::Int), "91")
                .unwrap_err()
                .0
                .contains("at most 90")
        );
        assert!(parse_value(&def(ArgType::Int), "1e3").is_err());
        assert!(parse_value(&def(ArgType::Identifier), "new-tenant-flow").is_ok());
        assert!(parse_value(&def(ArgType::Identifier), "x;drop").is_err());
        assert!(parse_value(&def(ArgType::Identifier), "20250129172156").is_ok());
        assert_eq!(
            parse_value(&def(ArgType::IdentifierList), "b,a, b").unwrap(),
            Value::List(vec!["a".into(), "b".into()])
        );
        assert!(parse_value(&def(ArgType::IdentifierList), "a,'b'").is_err());
        assert!(parse_value(&def(ArgType::IdentifierList), ",").is_err());
        assert!(parse_value(&def(ArgType::Text), &"x".repeat(501)).is_err());
        let mut e = def(ArgType::Enum);
        e.values = vec!["all".into(), "users".into()];
        assert_eq!(parse_value(&e, "USERS").unwrap(), Value::Text("users".into()));
        assert!(parse_value(&e, "other").unwrap_err().0.contains("one of all, users"));
        assert!(matches!(
            parse_value(&def(ArgType::EmailOrUuid), u),
            Ok(Value::EmailOrUuid {
                uuid: Some(_),
                email: None
            })
        ));
        assert!(
            parse_value(&def(ArgType::EmailOrUuid), "neither")
                .unwrap_err()
                .0
                .contains("email address or a UUID")
        );
    }

    #[test]
    fn positional_binding_with_defaults_and_optionals() {
        let mut a = def(ArgType::Email);
        a.name = "email".into();
        let mut b = def(ArgType::Int);
        b.name = "days".into();
        b.default = Some("7".into());
        let defs = vec![a, b];
        let v = bind_args(&defs, &["x@y.io".into()]).unwrap();
        assert_eq!(v["days"], Value::Int(7));
        assert!(
            bind_args(&defs, &[])
                .unwrap_err()
                .0
                .contains("Missing argument `email`")
        );
        assert!(
            bind_args(&defs, &["x@y.io".into(), "3".into(), "extra".into()])
                .unwrap_err()
                .0
                .contains("Unexpected")
        );
        assert_eq!(bound(&defs, &v, "days"), Bound::Int(Some(7)));
        assert_eq!(bound(&defs, &v, "email"), Bound::Text(Some("x@y.io".into())));
    }

    #[test]
    fn a_final_text_argument_takes_the_rest_of_the_line() {
        let mut a = def(ArgType::Uuid);
        a.name = "user".into();
        let mut b = def(ArgType::Text);
        b.name = "reason".into();
        let defs = vec![a, b];
        let words: Vec<String> = "0b9e3c8e-6f0a-4d7e-9a51-3f2f1c0e8d11 spam and abuse"
            .split(' ')
            .map(String::from)
            .collect();
        let v = bind_args(&defs, &words).unwrap();
        assert_eq!(v["reason"], Value::Text("spam and abuse".into()));
        assert!(
            bind_args(&defs, &words[..1])
                .unwrap_err()
                .0
                .contains("Missing argument `reason`")
        );
    }
}
