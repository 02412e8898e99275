//! The runbook catalog: one TOML file per command under `commands/`, loaded
//! and validated at start (and by `runbook-bot check`). Adding a diagnostic
//! is adding a file.

pub mod args;
pub mod auth_admin;
pub mod relations;
pub mod schema;
pub mod sql_guard;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Problem;
use relations::{Reads, Relation};
use schema::{CommandFile, Kind};

#[derive(Debug)]
pub struct Entry {
    pub file: PathBuf,
    pub def: CommandFile,
    /// The relations its SQL reads, per step and per plan step.
    pub reads: Reads,
}

#[derive(Debug, Default)]
pub struct Catalog {
    by_command: BTreeMap<String, BTreeMap<String, Arc<Entry>>>,
    /// Every relation any entry reads.
    reads: BTreeSet<Relation>,
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
                    let reads = match Reads::of(&def) {
                        Ok(r) => r,
                        Err(why) => {
                            problems.push(problem(&file, "sql", format!("cannot tell what it reads: {why}")));
                            continue;
                        }
                    };
                    catalog.reads.extend(reads.all());
                    names.insert(def.name.clone(), Arc::new(Entry { file, def, reads }));
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

    /// Every relation the catalog's SQL reads.
    pub fn reads(&self) -> &BTreeSet<Relation> {
        &self.reads
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
    let problems = validate::validate(file, &def);
    if problems.is_empty() { Ok(def) } else { Err(problems) }
}

/// Where a migration's rollback script lives, for a loaded entry.
pub fn rollback_script(entry: &Entry, version: &str) -> Option<PathBuf> {
    let dir = entry.def.rollback_scripts.as_ref()?;
    let path = entry.file.parent()?.join(dir).join(format!("{version}.sql"));
    path.is_file().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        kind = "diagnostic"
        schema = "b2b"
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

    const ACTION: &str = r#"
        kind = "action"
        schema = "b2b"
        command = "/user"
        name = "grant-admin"
        summary = "Make a user an admin"
        usage = "/user grant-admin <user_uuid>"
        level = "l2"
        max_rows = 1
        [[args]]
        name = "user"
        type = "uuid"
        [[plan]]
        id = "user"
        title = "User who will become admin"
        key = "user_uuid"
        sql = "SELECT user_uuid, role FROM public.users WHERE user_uuid = $1 AND role <> 'admin'"
        params = ["user"]
        [[apply]]
        plan = "user"
        sql = "UPDATE public.users SET role = 'admin' WHERE user_uuid = ANY($1::uuid[]) AND role <> 'admin' RETURNING user_uuid"
        params = ["plan.user"]
        [[verify]]
        title = "the user is an admin"
        sql = "SELECT 1 FROM public.users WHERE user_uuid = $1 AND role = 'admin'"
        params = ["user"]
        expect = "rows"
    "#;

    #[test]
    fn a_keyed_action_parses() {
        let d = parse(Path::new("x.toml"), ACTION).unwrap();
        assert_eq!(d.plan[0].key.as_deref(), Some("user_uuid"));
    }

    #[test]
    fn check_refuses_statements_not_limited_to_the_plans_keys() {
        for (from, to, want) in [
            (
                "WHERE user_uuid = ANY($1::uuid[]) AND role <> 'admin' RETURNING user_uuid",
                "WHERE role <> 'admin' AND $1::uuid[] IS NOT NULL RETURNING user_uuid",
                "apply[0].sql: is not restricted to the approved keys",
            ),
            (
                "WHERE user_uuid = ANY($1::uuid[]) AND role <> 'admin' RETURNING user_uuid",
                "WHERE user_uuid = ANY($1::uuid[]) OR role <> 'admin' RETURNING user_uuid",
                "apply[0].sql: is not restricted to the approved keys",
            ),
            (
                "AND role <> 'admin' RETURNING user_uuid\"",
                "AND role <> 'admin'\"",
                "apply[0].sql: must end with `RETURNING user_uuid`",
            ),
            (
                "plan = \"user\"\n        sql = \"UPDATE",
                "sql = \"UPDATE",
                "apply[0].plan: name the plan step",
            ),
            (
                "key = \"user_uuid\"\n",
                "",
                "plan[0].key: rows the action changes need a `key`",
            ),
            (
                "SELECT user_uuid, role FROM",
                "WITH x AS (DELETE FROM public.sessions RETURNING 1) SELECT user_uuid, role FROM",
                "plan[0].sql: the statement uses DELETE",
            ),
            (
                "UPDATE public.users SET role = 'admin' WHERE user_uuid = ANY($1::uuid[]) AND role <> 'admin' RETURNING user_uuid",
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY($1::int[])",
                "declare it as an [[effects]] step",
            ),
        ] {
            assert!(ACTION.contains(from), "{from}");
            let e = errs(&ACTION.replace(from, to));
            assert!(
                e.iter().any(|p| p.starts_with(want) || p.contains(want)),
                "{want}: {e:?}"
            );
        }
    }

    #[test]
    fn the_escape_hatch_is_explicit() {
        let text = ACTION.replace(
            "plan = \"user\"\n        sql = \"UPDATE public.users SET role = 'admin' WHERE user_uuid = ANY($1::uuid[]) AND role <> 'admin' RETURNING user_uuid\"\n        params = [\"plan.user\"]",
            "unrestricted = \"sets the default for new rows\"\n        sql = \"ALTER TABLE public.users ALTER COLUMN role SET DEFAULT 'member'\"",
        );
        assert!(parse(Path::new("x.toml"), &text).is_ok(), "{:?}", errs(&text));
        let e = errs(&text.replace("sets the default for new rows", " "));
        assert!(
            e.iter().any(|p| p.starts_with("apply[0].unrestricted: say why")),
            "{e:?}"
        );
    }

    #[test]
    fn a_rollback_script_with_transaction_control_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let action = ACTION.replace(
            "max_rows = 1\n",
            "max_rows = 1\n        rollback_scripts = \"migrations\"\n        script_arg = \"user\"\n",
        );
        std::fs::write(dir.path().join("a.toml"), action).unwrap();
        std::fs::create_dir(dir.path().join("migrations")).unwrap();
        std::fs::write(
            dir.path().join("migrations/20250101000000.sql"),
            "DROP FUNCTION IF EXISTS public.f();\nCOMMIT;\nDROP TABLE public.users;\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("migrations/20250102000000.sql"),
            "DROP VIEW IF EXISTS public.v;\n",
        )
        .unwrap();
        let e = Catalog::load(dir.path()).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field, "rollback_scripts/20250101000000.sql");
        assert!(e[0].why.contains("statement 2 uses COMMIT"), "{}", e[0]);
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
