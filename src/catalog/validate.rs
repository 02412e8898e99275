//! Checks on one parsed catalog file, beyond what its types already say:
//! names, arguments, SQL placeholders against declared params, step judges,
//! and what an action must declare (plan, apply, verify, blast radius).
//! Every problem names its field, so `check` prints one line per problem.

use std::collections::BTreeSet;
use std::path::Path;

use super::args::{self, Context};
use super::schema::{ApplyDef, ArgDef, ArgType, Check, CommandFile, EffectDef, FollowupDef, Kind, StepDef};
use super::sql_guard::{self, ApplyShape};
use crate::config::Problem;

/// Where problems go: `(field, why)`.
type Push<'a> = &'a mut dyn FnMut(String, String);

pub fn validate(file: &Path, def: &CommandFile) -> Vec<Problem> {
    let mut p = Vec::new();
    let mut push = |field: String, why: String| {
        p.push(Problem {
            file: file.display().to_string(),
            field,
            why,
        })
    };
    names(def, &mut push);
    arguments(&def.args, &mut push);
    match def.kind {
        Kind::Diagnostic => diagnostic(def, &mut push),
        Kind::Action => action(file, def, &mut push),
    }
    for (i, s) in def.steps.iter().enumerate() {
        step(def, i, s, &mut push);
    }
    p
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn names(def: &CommandFile, push: Push<'_>) {
    if !def.command.starts_with('/') || !is_slug(&def.command[1..]) {
        push(
            "command".into(),
            format!("`{}` is not a slash command like `/diagnose`", def.command),
        );
    }
    if !is_slug(&def.name) {
        push(
            "name".into(),
            format!("`{}` must be lowercase letters, digits and dashes", def.name),
        );
    }
    if def.summary.trim().is_empty() {
        push("summary".into(), "must not be empty".into());
    }
}

fn arguments(args: &[ArgDef], push: Push<'_>) {
    let mut seen = BTreeSet::new();
    let mut optional_seen = false;
    for (i, a) in args.iter().enumerate() {
        let f = |k: &str| format!("args[{i}].{k}");
        if !is_slug(&a.name) || a.name.contains('-') {
            push(
                f("name"),
                format!("`{}` must be lowercase letters, digits and `_`", a.name),
            );
        }
        if !seen.insert(a.name.clone()) {
            push(f("name"), format!("argument `{}` is declared twice", a.name));
        }
        if args::RESERVED.contains(&a.name.as_str()) {
            push(
                f("name"),
                format!(
                    "`{}` is reserved for parameters (`plan.<id>`, `key`, `row.<col>`)",
                    a.name
                ),
            );
        }
        let optional = a.optional || a.default.is_some();
        if !optional && optional_seen {
            push(
                f("optional"),
                "a required argument cannot follow an optional one".into(),
            );
        }
        optional_seen |= optional;
        argument_values(a, &f, push);
    }
    if let Some(i) = args.iter().position(|a| a.ty == ArgType::Text)
        && i + 1 != args.len()
    {
        push(
            format!("args[{i}].type"),
            "a `text` argument takes the rest of the line, so it must be last".into(),
        );
    }
}

/// `values` only for enums, `min`/`max` only for ints, and a default that parses.
fn argument_values(a: &ArgDef, f: &dyn Fn(&str) -> String, push: Push<'_>) {
    match a.ty {
        ArgType::Enum if a.values.is_empty() => push(f("values"), "an enum needs `values`".into()),
        ArgType::Enum => {}
        _ if !a.values.is_empty() => push(f("values"), "only an enum takes `values`".into()),
        _ => {}
    }
    if (a.min.is_some() || a.max.is_some()) && a.ty != ArgType::Int {
        push(f("min"), "only an int takes `min`/`max`".into());
    }
    if let (Some(lo), Some(hi)) = (a.min, a.max)
        && lo > hi
    {
        push(f("min"), format!("min {lo} is above max {hi}"));
    }
    if let Some(d) = &a.default
        && let Err(e) = args::parse_value(a, d)
    {
        push(f("default"), e.0);
    }
}

fn diagnostic(def: &CommandFile, push: Push<'_>) {
    if def.steps.is_empty() {
        push("steps".into(), "at least one step is needed".into());
    }
    let action_only = [
        ("approval", def.approval.is_some()),
        ("plan", !def.plan.is_empty()),
        ("apply", !def.apply.is_empty()),
        ("effects", !def.effects.is_empty()),
        ("auth_admin", !def.auth_admin.is_empty()),
        ("verify", !def.verify.is_empty()),
        ("max_rows", def.max_rows.is_some()),
        ("rollback_scripts", def.rollback_scripts.is_some()),
        ("deploy_hook_arg", def.deploy_hook_arg.is_some()),
        ("followup", def.followup.is_some()),
    ];
    for (field, set) in action_only {
        if set {
            push(
                field.into(),
                "only an action takes this; a diagnostic has `steps`".into(),
            );
        }
    }
}

fn step(def: &CommandFile, i: usize, s: &StepDef, push: Push<'_>) {
    let f = |k: &str| format!("steps[{i}].{k}");
    match (s.check, &s.sql) {
        (Check::Sql, None) => push(f("sql"), "a sql step needs `sql`".into()),
        (Check::Sql, Some(sql)) => {
            let at = format!("steps[{i}]");
            check_sql(def, &at, sql, &s.params, Context::Arguments, push);
            read_only(&at, sql, push);
        }
        (_, Some(_)) => push(f("sql"), "only a sql step takes `sql`".into()),
        (_, None) => {}
    }
    for (key, arg) in [("when_arg", &s.when_arg), ("unless_arg", &s.unless_arg)] {
        if let Some(a) = arg {
            match def.args.iter().find(|d| &d.name == a) {
                None => push(f(key), format!("no argument `{a}`")),
                Some(d) if !d.optional => push(f(key), format!("argument `{a}` is required, so this is always known")),
                Some(_) => {}
            }
        }
    }
    if !(1..=600_000).contains(&s.timeout_ms) {
        push(f("timeout_ms"), "must be between 1 and 600000".into());
    }
    if s.attempts.is_some_and(|a| !(1..=5).contains(&a)) {
        push(f("attempts"), "must be between 1 and 5".into());
    }
    if !(1..=100).contains(&s.render.limit) {
        push(f("render.limit"), "must be between 1 and 100".into());
    }
    let j = &s.judge;
    let thresholds = [j.warning_above, j.critical_above, j.warning_below, j.critical_below];
    if thresholds.iter().any(Option::is_some) && j.column.is_none() {
        push(f("judge.column"), "thresholds need the `column` they apply to".into());
    }
    if j.column.is_some() && thresholds.iter().all(Option::is_none) {
        push(f("judge.column"), "a judged column needs a threshold".into());
    }
    if let Some(ext) = &s.requires_extension
        && !is_slug(ext)
    {
        push(f("requires_extension"), format!("`{ext}` is not an extension name"));
    }
}

fn check_sql(def: &CommandFile, at: &str, sql: &str, params: &[String], context: Context, push: Push<'_>) {
    if sql.trim_end().ends_with(';') {
        push(format!("{at}.sql"), "one statement, without a trailing `;`".into());
    }
    let used = placeholders(sql);
    let want: BTreeSet<usize> = (1..=params.len()).collect();
    if used != want {
        push(
            format!("{at}.sql"),
            format!(
                "placeholders {} do not match the {} declared params",
                show_set(&used),
                params.len()
            ),
        );
    }
    let keyed = keyed_plans(def);
    for (j, param) in params.iter().enumerate() {
        if let Err(why) = args::resolve_source(&def.args, &keyed, param, context) {
            push(format!("{at}.params[{j}]"), why);
        }
    }
}

/// Plan steps that name a key: the only ones whose rows an action may change.
fn keyed_plans(def: &CommandFile) -> Vec<&str> {
    def.plan
        .iter()
        .filter(|p| p.key.is_some())
        .map(|p| p.id.as_str())
        .collect()
}

/// Diagnostic steps, plans, verifications and rechecks only read.
fn read_only(at: &str, sql: &str, push: Push<'_>) {
    if let Err(why) = sql_guard::check_query(sql) {
        push(format!("{at}.sql"), format!("the statement {why}"));
    }
}

fn action(file: &Path, def: &CommandFile, push: Push<'_>) {
    if !def.steps.is_empty() {
        push(
            "steps".into(),
            "an action has `plan`, `apply` and `verify`, not `steps`".into(),
        );
    }
    approval(def, push);
    if def.deploy_hook_arg.is_some() {
        required_arg(def, "deploy_hook_arg", &def.deploy_hook_arg, push);
        if !def.plan.is_empty() || !def.apply.is_empty() || !def.verify.is_empty() {
            push(
                "deploy_hook_arg".into(),
                "a deploy-hook action runs no SQL (no plan/apply/verify)".into(),
            );
        }
        if !def.auth_admin.is_empty() {
            push("auth_admin".into(), "a deploy-hook action makes no other call".into());
        }
        return;
    }
    sql_action(def, push);
    rollback_scripts(file, def, push);
}

fn approval(def: &CommandFile, push: Push<'_>) {
    let a = def.approval.clone().unwrap_or_default();
    if !(1..=5).contains(&a.approvals) {
        push("approval.approvals".into(), "must be between 1 and 5".into());
    }
    if !(1..=1440).contains(&a.expires_minutes) {
        push("approval.expires_minutes".into(), "must be between 1 and 1440".into());
    }
}

/// `field` names a required argument (or is unset).
fn required_arg(def: &CommandFile, field: &str, name: &Option<String>, push: Push<'_>) {
    if let Some(n) = name
        && !def.args.iter().any(|d| &d.name == n && !d.optional)
    {
        push(field.into(), format!("`{n}` is not a required argument"));
    }
}

/// Plan, apply, effects and verify of an action that runs SQL.
fn sql_action(def: &CommandFile, push: Push<'_>) {
    if !(1..=300_000).contains(&def.apply_timeout_ms) {
        push("apply_timeout_ms".into(), "must be between 1 and 300000".into());
    }
    if def.plan.is_empty() {
        push("plan".into(), "an action must show its plan".into());
    }
    if def.apply.is_empty() && def.rollback_scripts.is_none() && def.effects.is_empty() && def.auth_admin.is_empty() {
        push("apply".into(), "an action needs statements to apply".into());
    }
    if def.verify.is_empty() && !def.apply.is_empty() {
        push("verify".into(), "an action must verify what it did".into());
    }
    match def.max_rows {
        None => push(
            "max_rows".into(),
            "an action must declare its maximum blast radius".into(),
        ),
        Some(n) if n < 1 => push("max_rows".into(), "must be at least 1".into()),
        Some(_) => {}
    }
    plans(def, push);
    for (i, a) in def.apply.iter().enumerate() {
        apply_statement(def, i, a, push);
    }
    for (i, e) in def.effects.iter().enumerate() {
        effect(def, i, e, push);
    }
    for (field, why) in super::auth_admin::problems(def) {
        push(field, why);
    }
    for (i, p) in def.verify.iter().enumerate() {
        let at = format!("verify[{i}]");
        check_sql(def, &at, &p.sql, &p.params, Context::Apply, push);
        read_only(&at, &p.sql, push);
    }
    if let Some(f) = &def.followup {
        followup(def, f, push);
    }
}

/// A follow-up runs unattended weeks later: the same rules as an apply
/// statement bound to a plan step, and a delay within reason.
fn followup(def: &CommandFile, f: &FollowupDef, push: Push<'_>) {
    if !(1..=365).contains(&f.after_days) {
        push("followup.after_days".into(), "must be between 1 and 365".into());
    }
    if f.title.trim().is_empty() {
        push("followup.title".into(), "must not be empty".into());
    }
    let as_apply = ApplyDef {
        sql: f.sql.clone(),
        params: f.params.clone(),
        plan: Some(f.plan.clone()),
        unrestricted: None,
    };
    let mut inner = |field: String, why: String| push(field.replacen("apply[0]", "followup", 1), why);
    apply_statement(def, 0, &as_apply, &mut inner);
}

fn plans(def: &CommandFile, push: Push<'_>) {
    let mut ids = BTreeSet::new();
    for (i, p) in def.plan.iter().enumerate() {
        let at = format!("plan[{i}]");
        if !is_slug(&p.id) {
            push(
                format!("{at}.id"),
                format!("`{}` must be lowercase letters, digits, `-` and `_`", p.id),
            );
        }
        if !ids.insert(p.id.as_str()) {
            push(format!("{at}.id"), format!("plan step `{}` is declared twice", p.id));
        }
        if p.counts && p.key.is_none() {
            push(
                format!("{at}.key"),
                "rows the action changes need a `key` column: only approved keys may be touched".into(),
            );
        }
        check_sql(def, &at, &p.sql, &p.params, Context::Arguments, push);
        read_only(&at, &p.sql, push);
    }
}

/// An apply statement changes only its plan step's approved keys (checked
/// here from its parsed shape, and again by the engine from what it
/// returns), or says why it cannot (`unrestricted`, shown on the card).
fn apply_statement(def: &CommandFile, i: usize, a: &ApplyDef, push: Push<'_>) {
    let at = format!("apply[{i}]");
    check_sql(def, &at, &a.sql, &a.params, Context::Apply, push);
    let shape = match sql_guard::apply_shape(&a.sql) {
        Ok(shape) => shape,
        Err(why) => return push(format!("{at}.sql"), format!("the statement {why}")),
    };
    match (&a.plan, &a.unrestricted) {
        (Some(_), Some(_)) => push(
            format!("{at}.unrestricted"),
            "a statement is either limited to a plan (`plan`) or `unrestricted`, not both".into(),
        ),
        (None, Some(why)) if why.trim().is_empty() => {
            push(format!("{at}.unrestricted"), "say why, for the approval card".into())
        }
        (None, Some(_)) => {}
        (None, None) => push(
            format!("{at}.plan"),
            "name the plan step whose keys this statement changes (or say why it is `unrestricted`)".into(),
        ),
        (Some(id), None) => match def.plan.iter().find(|p| &p.id == id) {
            Some(p) => match &p.key {
                Some(key) => keyed_shape(&at, a, id, key, &shape, push),
                None => push(format!("{at}.plan"), format!("plan step `{id}` has no `key`")),
            },
            None => push(format!("{at}.plan"), format!("there is no plan step `{id}`")),
        },
    }
}

/// The shape a keyed statement must have: restricted by `<key> = ANY($n)`
/// with `$n` bound to `plan.<id>` (UPDATE, DELETE) or using `plan.<id>`
/// (INSERT), and returning the key.
fn keyed_shape(at: &str, a: &ApplyDef, id: &str, key: &str, shape: &ApplyShape, push: Push<'_>) {
    let keys_param = format!("plan.{id}");
    let binds_keys = |n: &usize| a.params.get(n.wrapping_sub(1)) == Some(&keys_param);
    let (restricted, returning) = match shape {
        ApplyShape::Filtered { any_filters, returning } => (
            any_filters.iter().any(|(col, n)| col == key && binds_keys(n)),
            returning,
        ),
        ApplyShape::Insert {
            placeholders,
            returning,
        } => (placeholders.iter().any(binds_keys), returning),
        ApplyShape::Other(kind) => {
            return push(
                format!("{at}.sql"),
                format!(
                    "`{kind}` cannot be limited to plan keys; only UPDATE, DELETE and INSERT can (or say why it is `unrestricted`)"
                ),
            );
        }
    };
    if !restricted {
        push(
            format!("{at}.sql"),
            format!(
                "is not restricted to the approved keys: add `{key} = ANY(${{n}}::<type>[])` with `plan.{id}` in params"
            ),
        );
    }
    if !returning.iter().any(|r| r == key) {
        push(
            format!("{at}.sql"),
            format!("must end with `RETURNING {key}` so the engine can check every changed row was approved"),
        );
    }
}

fn effect(def: &CommandFile, i: usize, e: &EffectDef, push: Push<'_>) {
    let at = format!("effects[{i}]");
    match def.plan.iter().find(|p| p.id == e.plan) {
        Some(p) if p.key.is_some() => {}
        Some(_) => push(format!("{at}.plan"), format!("plan step `{}` has no `key`", e.plan)),
        None => push(format!("{at}.plan"), format!("there is no plan step `{}`", e.plan)),
    }
    if e.cannot_undo.trim().is_empty() {
        push(
            format!("{at}.cannot_undo"),
            "say what cannot be undone, for the approval card".into(),
        );
    }
    let recheck = format!("{at}.recheck");
    check_sql(def, &recheck, &e.recheck, &e.recheck_params, Context::Effect, push);
    read_only(&recheck, &e.recheck, push);
    let run = format!("{at}.run");
    check_sql(def, &run, &e.run, &e.run_params, Context::Effect, push);
    if let Err(why) = sql_guard::check_effect_run(&e.run) {
        push(format!("{run}.sql"), format!("the statement {why}"));
    }
}

fn rollback_scripts(file: &Path, def: &CommandFile, push: Push<'_>) {
    if def.rollback_scripts.is_some() != def.script_arg.is_some() {
        push(
            "rollback_scripts".into(),
            "`rollback_scripts` and `script_arg` go together".into(),
        );
    }
    required_arg(def, "script_arg", &def.script_arg, push);
    if let Some(dir) = &def.rollback_scripts {
        let path = file.parent().unwrap_or(Path::new(".")).join(dir);
        if !path.is_dir() {
            push(
                "rollback_scripts".into(),
                format!("folder {} does not exist", path.display()),
            );
            return;
        }
        scripts_in(&path, push);
    }
}

/// Every script in a rollback folder is checked at load, not when someone
/// asks for it in the middle of an incident.
fn scripts_in(dir: &Path, push: Push<'_>) {
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => return push("rollback_scripts".into(), format!("cannot read {}: {e}", dir.display())),
    };
    files.sort();
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "sql")) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                if let Err(problems) = sql_guard::check_script(&text) {
                    for why in problems {
                        push(format!("rollback_scripts/{name}"), why);
                    }
                }
            }
            Err(e) => push(format!("rollback_scripts/{name}"), format!("cannot read: {e}")),
        }
    }
}

/// The `$n` placeholders of a statement, skipping string literals, quoted
/// identifiers and comments.
pub fn placeholders(sql: &str) -> BTreeSet<usize> {
    let b = sql.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'$' => {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
                if end > start {
                    if let Ok(n) = sql[start..end].parse() {
                        out.insert(n);
                    }
                    i = end;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn show_set(s: &BTreeSet<usize>) -> String {
    if s.is_empty() {
        return "(none)".into();
    }
    s.iter().map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_ignore_literals_and_comments() {
        assert_eq!(
            placeholders("a = $1 AND b = '$2' AND c = $10 -- $3\n AND d = \"$4\""),
            [1, 10].into()
        );
    }
}
