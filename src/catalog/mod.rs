//! The runbook catalog: one TOML file per command under `commands/`, loaded
//! and validated at start (and by `runbook-bot check`). Adding a diagnostic
//! is adding a file.

pub mod args;
pub mod schema;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Problem;
use schema::{ArgDef, ArgType, Check, CommandFile, Kind};

#[derive(Debug)]
pub struct Entry {
    pub file: PathBuf,
    pub def: CommandFile,
}

#[derive(Debug, Default)]
pub struct Catalog {
    by_command: BTreeMap<String, BTreeMap<String, Arc<Entry>>>,
}

impl Catalog {
    /// Load every `*.toml` below `dir`. All problems are collected, one per
    /// file and field, so `check` can print them together.
    pub fn load(dir: &Path) -> Result<Catalog, Vec<Problem>> {
        let mut files = Vec::new();
        if let Err(e) = collect(dir, &mut files) {
            return Err(vec![problem(dir, "-", format!("cannot read the commands folder: {e}"))]);
        }
        files.sort();
        let mut problems = Vec::new();
        let mut catalog = Catalog::default();
        for file in files {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(problem(&file, "-", format!("cannot read: {e}")));
                    continue;
                }
            };
            match parse(&file, &text) {
                Ok(def) => {
                    let names = catalog.by_command.entry(def.command.clone()).or_default();
                    let standalone_clash =
                        names.values().any(|e| e.def.standalone) || (def.standalone && !names.is_empty());
                    if standalone_clash {
                        problems.push(problem(
                            &file,
                            "standalone",
                            format!(
                                "`{}` is standalone: it cannot share its slash command with other files",
                                def.command
                            ),
                        ));
                        continue;
                    }
                    if let Some(other) = names.get(&def.name) {
                        problems.push(problem(
                            &file,
                            "name",
                            format!(
                                "`{} {}` is already defined in {}",
                                def.command,
                                def.name,
                                other.file.display()
                            ),
                        ));
                        continue;
                    }
                    names.insert(def.name.clone(), Arc::new(Entry { file, def }));
                }
                Err(mut p) => problems.append(&mut p),
            }
        }
        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(problems)
        }
    }

    /// The entry a standalone slash command runs (`/restore-account …`).
    pub fn standalone(&self, command: &str) -> Option<Arc<Entry>> {
        self.by_command
            .get(command)?
            .values()
            .find(|e| e.def.standalone)
            .cloned()
    }

    pub fn get(&self, command: &str, name: &str) -> Option<Arc<Entry>> {
        self.by_command.get(command)?.get(name).cloned()
    }

    pub fn has_command(&self, command: &str) -> bool {
        self.by_command.contains_key(command)
    }

    pub fn entries(&self, command: &str) -> impl Iterator<Item = &Arc<Entry>> {
        self.by_command.get(command).into_iter().flat_map(|m| m.values())
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.by_command.values().flat_map(|m| m.values())
    }

    /// Alert routes may only run read-only diagnostics that exist.
    pub fn route_problems(&self, routes: &[crate::config::Route]) -> Vec<Problem> {
        let mut out = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            for (j, name) in r.diagnose.iter().enumerate() {
                let ok = self
                    .get("/diagnose", name)
                    .is_some_and(|e| e.def.kind == Kind::Diagnostic);
                if !ok {
                    out.push(Problem {
                        file: "config".into(),
                        field: format!("alerts.routes[{i}].diagnose[{j}]"),
                        why: format!(
                            "`{name}` is not a /diagnose check in the catalog (actions never run automatically)"
                        ),
                    });
                }
            }
        }
        out
    }

    /// Targets named by catalog files that the config does not define.
    pub fn unknown_targets(&self, known: &BTreeSet<String>) -> Vec<Problem> {
        self.all()
            .filter_map(|e| {
                let t = e.def.target.as_ref()?;
                (!known.contains(t)).then(|| problem(&e.file, "target", format!("no target `{t}` in the config")))
            })
            .collect()
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    Ok(())
}

fn problem(file: &Path, field: &str, why: impl Into<String>) -> Problem {
    Problem {
        file: file.display().to_string(),
        field: field.into(),
        why: why.into(),
    }
}

/// Parse and validate one file.
pub fn parse(file: &Path, text: &str) -> Result<CommandFile, Vec<Problem>> {
    let def: CommandFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let field = line.map(|l| format!("line {l}")).unwrap_or_else(|| "-".into());
        vec![problem(file, &field, e.message().replace('\n', " "))]
    })?;
    let problems = validate(file, &def);
    if problems.is_empty() { Ok(def) } else { Err(problems) }
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn validate(file: &Path, def: &CommandFile) -> Vec<Problem> {
    let mut p = Vec::new();
    let mut push = |field: String, why: String| p.push(problem(file, &field, why));
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

    let mut seen = BTreeSet::new();
    let mut optional_seen = false;
    for (i, a) in def.args.iter().enumerate() {
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
        let optional = a.optional || a.default.is_some();
        if !optional && optional_seen {
            push(
                f("optional"),
                "a required argument cannot follow an optional one".into(),
            );
        }
        optional_seen |= optional;
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

    if let Some(i) = def.args.iter().position(|a| a.ty == ArgType::Text)
        && i + 1 != def.args.len()
    {
        push(
            format!("args[{i}].type"),
            "a `text` argument takes the rest of the line, so it must be last".into(),
        );
    }
    match def.kind {
        Kind::Diagnostic => {
            if def.steps.is_empty() {
                push("steps".into(), "at least one step is needed".into());
            }
            let action_only = [
                ("approval", def.approval.is_some()),
                ("plan", !def.plan.is_empty()),
                ("apply", !def.apply.is_empty()),
                ("verify", !def.verify.is_empty()),
                ("max_rows", def.max_rows.is_some()),
                ("rollback_scripts", def.rollback_scripts.is_some()),
                ("deploy_hook_arg", def.deploy_hook_arg.is_some()),
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
        Kind::Action => validate_action(file, def, &mut push),
    }
    for (i, s) in def.steps.iter().enumerate() {
        let f = |k: &str| format!("steps[{i}].{k}");
        match (s.check, &s.sql) {
            (Check::Sql, None) => push(f("sql"), "a sql step needs `sql`".into()),
            (Check::Sql, Some(sql)) => check_sql(&def.args, &format!("steps[{i}]"), sql, &s.params, &mut push),
            (_, Some(_)) => push(f("sql"), "only a sql step takes `sql`".into()),
            (_, None) => {}
        }
        for (key, arg) in [("when_arg", &s.when_arg), ("unless_arg", &s.unless_arg)] {
            if let Some(a) = arg {
                match def.args.iter().find(|d| &d.name == a) {
                    None => push(f(key), format!("no argument `{a}`")),
                    Some(d) if !d.optional => {
                        push(f(key), format!("argument `{a}` is required, so this is always known"))
                    }
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
    p
}

fn check_sql(args: &[ArgDef], at: &str, sql: &str, params: &[String], push: &mut impl FnMut(String, String)) {
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
    for (j, param) in params.iter().enumerate() {
        if let Err(why) = args::resolve_param(args, param) {
            push(format!("{at}.params[{j}]"), why);
        }
    }
}

fn validate_action(file: &Path, def: &CommandFile, push: &mut impl FnMut(String, String)) {
    if !def.steps.is_empty() {
        push(
            "steps".into(),
            "an action has `plan`, `apply` and `verify`, not `steps`".into(),
        );
    }
    let a = def.approval.clone().unwrap_or_default();
    if !(1..=5).contains(&a.approvals) {
        push("approval.approvals".into(), "must be between 1 and 5".into());
    }
    if !(1..=1440).contains(&a.expires_minutes) {
        push("approval.expires_minutes".into(), "must be between 1 and 1440".into());
    }
    let arg_named = |field: &str, name: &Option<String>, push: &mut dyn FnMut(String, String)| {
        if let Some(n) = name
            && !def.args.iter().any(|d| &d.name == n && !d.optional)
        {
            push(field.into(), format!("`{n}` is not a required argument"));
        }
    };
    if def.deploy_hook_arg.is_some() {
        arg_named("deploy_hook_arg", &def.deploy_hook_arg, push);
        if !def.plan.is_empty() || !def.apply.is_empty() || !def.verify.is_empty() {
            push(
                "deploy_hook_arg".into(),
                "a deploy-hook action runs no SQL (no plan/apply/verify)".into(),
            );
        }
        return;
    }
    if !(1..=300_000).contains(&def.apply_timeout_ms) {
        push("apply_timeout_ms".into(), "must be between 1 and 300000".into());
    }
    if def.plan.is_empty() {
        push("plan".into(), "an action must show its plan".into());
    }
    if def.apply.is_empty() && def.rollback_scripts.is_none() {
        push("apply".into(), "an action needs statements to apply".into());
    }
    if def.verify.is_empty() {
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
    for (i, p) in def.plan.iter().enumerate() {
        check_sql(&def.args, &format!("plan[{i}]"), &p.sql, &p.params, push);
    }
    for (i, p) in def.apply.iter().enumerate() {
        check_sql(&def.args, &format!("apply[{i}]"), &p.sql, &p.params, push);
        if let Some(n) = p.expect_rows_from_plan
            && n >= def.plan.len()
        {
            push(
                format!("apply[{i}].expect_rows_from_plan"),
                format!("there is no plan[{n}]"),
            );
        }
    }
    for (i, p) in def.verify.iter().enumerate() {
        check_sql(&def.args, &format!("verify[{i}]"), &p.sql, &p.params, push);
    }
    if def.rollback_scripts.is_some() != def.script_arg.is_some() {
        push(
            "rollback_scripts".into(),
            "`rollback_scripts` and `script_arg` go together".into(),
        );
    }
    arg_named("script_arg", &def.script_arg, push);
    if let Some(dir) = &def.rollback_scripts {
        let path = file.parent().unwrap_or(Path::new(".")).join(dir);
        if !path.is_dir() {
            push(
                "rollback_scripts".into(),
                format!("folder {} does not exist", path.display()),
            );
        }
    }
}

/// Where a migration's rollback script lives, for a loaded entry.
pub fn rollback_script(entry: &Entry, version: &str) -> Option<PathBuf> {
    let dir = entry.def.rollback_scripts.as_ref()?;
    let path = entry.file.parent()?.join(dir).join(format!("{version}.sql"));
    path.is_file().then_some(path)
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

    const GOOD: &str = r#"
        kind = "diagnostic"
        command = "/diagnose"
        name = "email"
        summary = "Who has this email"
        usage = "/diagnose email <email>"
        level = "l1"
        [[args]]
        name = "email"
        type = "email"
        [[steps]]
        title = "Users with the email"
        sql = "SELECT user_uuid FROM users WHERE user_email = $1 AND note <> '$2' -- $3"
        params = ["email"]
    "#;

    fn errs(text: &str) -> Vec<String> {
        parse(Path::new("x.toml"), text)
            .unwrap_err()
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.why))
            .collect()
    }

    #[test]
    fn a_good_file_parses() {
        let d = parse(Path::new("x.toml"), GOOD).unwrap();
        assert_eq!(d.name, "email");
        assert_eq!(d.steps[0].timeout_ms, 5000);
    }

    #[test]
    fn placeholders_ignore_literals_and_comments() {
        assert_eq!(
            placeholders("a = $1 AND b = '$2' AND c = $10 -- $3\n AND d = \"$4\""),
            [1, 10].into()
        );
    }

    #[test]
    fn unknown_fields_and_bad_types_name_the_line() {
        let e = errs(&GOOD.replace("params =", "parms ="));
        assert!(e[0].contains("unknown field `parms`"), "{e:?}");
        assert!(e[0].starts_with("line "), "{e:?}");
        let e = errs(&GOOD.replace("type = \"email\"", "type = \"mail\""));
        assert!(e[0].contains("unknown variant `mail`"), "{e:?}");
    }

    #[test]
    fn placeholder_mismatch_is_reported() {
        let e = errs(&GOOD.replace("params = [\"email\"]", "params = []"));
        assert_eq!(
            e,
            vec!["steps[0].sql: placeholders $1 do not match the 0 declared params"]
        );
        let e = errs(&GOOD.replace("params = [\"email\"]", "params = [\"email\", \"nope\"]"));
        assert!(
            e.iter().any(|s| s.contains("placeholders $1 do not match the 2")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|s| s.starts_with("steps[0].params[1]: no argument `nope`")),
            "{e:?}"
        );
    }

    #[test]
    fn argument_rules() {
        let text = GOOD.replace(
            "[[steps]]",
            "[[args]]\nname = \"email\"\ntype = \"enum\"\n[[args]]\nname = \"n\"\ntype = \"int\"\nmin = 5\nmax = 1\ndefault = \"x\"\n[[steps]]",
        );
        let e = errs(&text);
        assert!(
            e.contains(&"args[1].name: argument `email` is declared twice".to_string()),
            "{e:?}"
        );
        assert!(
            e.contains(&"args[1].values: an enum needs `values`".to_string()),
            "{e:?}"
        );
        assert!(e.contains(&"args[2].min: min 5 is above max 1".to_string()), "{e:?}");
        assert!(e.iter().any(|s| s.starts_with("args[2].default:")), "{e:?}");
    }

    #[test]
    fn judge_and_step_rules() {
        let text = GOOD.replace(
            "params = [\"email\"]",
            "params = [\"email\"]\ntimeout_ms = 0\n[steps.judge]\nwarning_above = 3",
        );
        let e = errs(&text);
        assert!(
            e.contains(&"steps[0].timeout_ms: must be between 1 and 600000".to_string()),
            "{e:?}"
        );
        assert!(
            e.contains(&"steps[0].judge.column: thresholds need the `column` they apply to".to_string()),
            "{e:?}"
        );
    }

    #[test]
    fn duplicates_across_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), GOOD).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.toml"), GOOD).unwrap();
        let e = Catalog::load(dir.path()).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(e[0].why.contains("already defined"), "{}", e[0]);
        assert!(e[0].file.ends_with("b.toml"));
    }
}
