//! Which relations catalog SQL reads, taken from sqlparser's AST (never by
//! matching text): every table or view named in a `FROM` or `JOIN`, also
//! inside subqueries, `EXISTS`, `LATERAL` and CTE bodies; not the CTEs
//! themselves and not set-returning functions (`unnest($1)`).
//!
//! The bot asks each target whether row-level security hides rows of these
//! from its role (`targets::rls`): such a relation reads as fewer rows, or
//! none, without an error.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::ControlFlow;

use sqlparser::ast::{Ident, ObjectName, Query, TableFactor, Visit, Visitor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::schema::CommandFile;

/// A relation as a statement names it: unquoted names folded to lower case
/// as PostgreSQL folds them; an unqualified one resolves on the role's
/// search path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Relation {
    schema: Option<String>,
    name: String,
}

impl Relation {
    /// From names already folded as PostgreSQL would.
    pub fn new(schema: Option<&str>, name: &str) -> Relation {
        Relation {
            schema: schema.map(str::to_string),
            name: name.to_string(),
        }
    }

    /// The name as `to_regclass` reads it: every part quoted, so case and
    /// odd characters survive.
    pub fn regclass_text(&self) -> String {
        let name = quoted(&self.name);
        match &self.schema {
            Some(s) => format!("{}.{name}", quoted(s)),
            None => name,
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.schema {
            write!(f, "{}.", shown(s))?;
        }
        f.write_str(&shown(&self.name))
    }
}

fn quoted(part: &str) -> String {
    format!("\"{}\"", part.replace('"', "\"\""))
}

/// Quoted only where PostgreSQL would need it.
fn shown(part: &str) -> String {
    let plain = part.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain { part.to_string() } else { quoted(part) }
}

/// The relations `sql` reads.
pub fn relations(sql: &str) -> Result<BTreeSet<Relation>, String> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| e.to_string())?;
    let mut found = Collector::default();
    let _ = statements.visit(&mut found);
    Ok(found.relations)
}

#[derive(Default)]
struct Collector {
    /// The CTE names in scope, one entry per enclosing query.
    ctes: Vec<Vec<String>>,
    relations: BTreeSet<Relation>,
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let names = query
            .with
            .iter()
            .flat_map(|w| &w.cte_tables)
            .map(|cte| folded(&cte.alias.name))
            .collect();
        self.ctes.push(names);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.ctes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        // `args` is set for a function in FROM (`generate_series(1, 3)`).
        if let TableFactor::Table { name, args: None, .. } = factor
            && let Some(r) = relation(name)
        {
            let is_cte = r.schema.is_none() && self.ctes.iter().flatten().any(|c| *c == r.name);
            if !is_cte {
                self.relations.insert(r);
            }
        }
        ControlFlow::Continue(())
    }
}

/// `schema.name` or `name`; a database in front (`db.schema.name`) can
/// only be the current one, so it is dropped.
fn relation(name: &ObjectName) -> Option<Relation> {
    let parts: Vec<String> = name.0.iter().map(|p| p.as_ident().map(folded)).collect::<Option<_>>()?;
    match parts.as_slice() {
        [.., schema, table] => Some(Relation::new(Some(schema), table)),
        [table] => Some(Relation::new(None, table)),
        [] => None,
    }
}

fn folded(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// What one catalog entry reads, per diagnostic step and per plan step.
#[derive(Debug, Clone, Default)]
pub struct Reads {
    /// By index into the file's `steps`.
    pub steps: Vec<BTreeSet<Relation>>,
    /// By index into the file's `plan`.
    pub plan: Vec<BTreeSet<Relation>>,
    /// Verifications and effect rechecks.
    pub checks: BTreeSet<Relation>,
    /// What its keyed apply statements and follow-up write (and read).
    pub writes: BTreeSet<Relation>,
}

impl Reads {
    /// Every statement was parsed by validation already; one that cannot be
    /// read here is still a problem with the file, never "reads nothing"
    /// (which would switch off the row-level security survey for it).
    pub fn of(def: &CommandFile) -> Result<Reads, String> {
        let read = |sql: &str| relations(sql);
        let mut steps = Vec::new();
        for s in &def.steps {
            steps.push(match s.sql.as_deref() {
                Some(sql) => read(sql)?,
                None => BTreeSet::new(),
            });
        }
        let plan = def.plan.iter().map(|p| read(&p.sql)).collect::<Result<_, _>>()?;
        let mut checks = BTreeSet::new();
        for sql in def
            .verify
            .iter()
            .map(|v| &v.sql)
            .chain(def.effects.iter().map(|e| &e.recheck))
        {
            checks.extend(read(sql)?);
        }
        let mut writes = BTreeSet::new();
        let keyed = def.apply.iter().filter(|a| a.plan.is_some()).map(|a| &a.sql);
        for sql in keyed.chain(def.followup.iter().map(|f| &f.sql)) {
            writes.extend(read(sql)?);
        }
        Ok(Reads {
            steps,
            plan,
            checks,
            writes,
        })
    }

    pub fn step(&self, i: usize) -> &BTreeSet<Relation> {
        static NONE: BTreeSet<Relation> = BTreeSet::new();
        self.steps.get(i).unwrap_or(&NONE)
    }

    /// Everything the action's plan reads.
    pub fn plan_all(&self) -> BTreeSet<Relation> {
        self.plan.iter().flatten().cloned().collect()
    }

    pub fn all(&self) -> BTreeSet<Relation> {
        let mut all = self.plan_all();
        all.extend(self.steps.iter().flatten().cloned());
        all.extend(self.checks.iter().cloned());
        all.extend(self.writes.iter().cloned());
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> Vec<String> {
        relations(sql).unwrap().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn tables_in_joins_and_subqueries() {
        assert_eq!(
            names(
                "SELECT u.user_uuid FROM public.users u LEFT JOIN public.accounts a ON a.account_uuid = u.account_uuid
                 WHERE u.account_uuid IN (SELECT account_uuid FROM users WHERE user_email = $2)
                   AND EXISTS (SELECT 1 FROM auth.sessions s WHERE s.user_id = u.user_uuid)"
            ),
            ["users", "auth.sessions", "public.accounts", "public.users"]
        );
        assert_eq!(
            names("SELECT (SELECT count(*) FROM public.profiles) AS n FROM a CROSS JOIN LATERAL (SELECT * FROM b) x"),
            ["a", "b", "public.profiles"]
        );
    }

    #[test]
    fn ctes_and_functions_are_not_relations() {
        assert_eq!(
            names(
                "WITH q AS MATERIALIZED (SELECT * FROM auth.users) SELECT * FROM q, generate_series(1, 3) g, unnest($1::uuid[]) u"
            ),
            ["auth.users"]
        );
        // Qualified, `users` is the table, not the CTE of the same name.
        assert_eq!(
            names("WITH users AS (SELECT 1) SELECT * FROM users, public.users"),
            ["public.users"]
        );
        // A CTE is only in scope inside its own query.
        assert_eq!(
            names("SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t) x, t"),
            ["t"]
        );
        assert!(names("SELECT now(), current_setting('max_connections')").is_empty());
    }

    #[test]
    fn names_fold_like_postgresql() {
        assert_eq!(names("SELECT * FROM Public.Users"), ["public.users"]);
        let r = relations("SELECT * FROM \"Audit\".\"Log \"\"x\"\"\"").unwrap();
        let r = r.first().unwrap();
        assert_eq!(r.to_string(), "\"Audit\".\"Log \"\"x\"\"\"");
        assert_eq!(r.regclass_text(), "\"Audit\".\"Log \"\"x\"\"\"");
        assert_eq!(Relation::new(None, "users").regclass_text(), "\"users\"");
        assert_eq!(names("SELECT * FROM mydb.public.users"), ["public.users"]);
    }

    #[test]
    fn every_shipped_statement_yields_its_relations() {
        let catalog = crate::catalog::Catalog::load(std::path::Path::new("commands")).unwrap();
        for e in catalog.all() {
            let d = &e.def;
            let sqls = d.steps.iter().filter_map(|s| s.sql.as_deref());
            let sqls = sqls.chain(d.plan.iter().map(|p| p.sql.as_str()));
            let sqls = sqls.chain(d.verify.iter().map(|v| v.sql.as_str()));
            for sql in sqls.chain(d.effects.iter().map(|x| x.recheck.as_str())) {
                assert!(relations(sql).is_ok(), "{}: {sql}", e.file.display());
            }
        }
        assert!(catalog.reads().iter().any(|r| r.schema.as_deref() == Some("auth")));
    }

    #[test]
    fn reads_per_step_and_plan_step() {
        let def: CommandFile = toml::from_str(
            r#"
            kind = "action"
            schema = "supabase"
            command = "/user"
            name = "x"
            summary = "s"
            usage = "u"
            level = "l2"
            [[plan]]
            id = "u"
            title = "t"
            key = "id"
            sql = "SELECT id FROM auth.users WHERE id = $1"
            [[plan]]
            id = "s"
            title = "t"
            key = "id"
            sql = "SELECT id FROM auth.sessions"
            [[verify]]
            title = "v"
            sql = "SELECT 1 FROM public.profiles"
            expect = "rows"
            "#,
        )
        .unwrap();
        let reads = Reads::of(&def).unwrap();
        assert_eq!(reads.plan[1].iter().next().unwrap().to_string(), "auth.sessions");
        let plan: Vec<String> = reads.plan_all().iter().map(ToString::to_string).collect();
        assert_eq!(plan, ["auth.sessions", "auth.users"]);
        assert_eq!(reads.all().len(), 3);
        assert!(reads.step(0).is_empty());
    }
}
