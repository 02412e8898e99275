//! What catalog SQL may do, decided with a real SQL lexer and parser
//! (sqlparser's PostgreSQL dialect), not by matching strings: comments,
//! string literals and dollar-quoted bodies are tokens, so `SELECT 'COMMIT'`
//! is harmless and `COMMIT` is not.
//!
//! Two layers. The token layer refuses what must never run inside the apply
//! transaction (transaction control, statements PostgreSQL refuses in a
//! transaction block, `DO` blocks that could commit) and calls to functions
//! with side effects outside the transaction; it works even where the parser
//! has no grammar (`DO`, `REINDEX`). The AST layer then checks each
//! statement's shape: a read-only query, or a row-changing statement limited
//! to a plan's keys. A statement the parser cannot read is refused: an
//! unknown statement does not run against production.

use sqlparser::ast::{
    BinaryOperator, Expr, FromTable, SelectItem, Statement, TableFactor, TableObject, TableWithJoins, Value,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

/// Functions whose effect escapes the transaction or the session's
/// read-only promise: terminating or signalling backends, configuration,
/// other connections, files, advisory locks, statistics resets.
const SIDE_EFFECT_FUNCTIONS: &[&str] = &[
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_promote",
    "pg_stat_reset",
    "pg_stat_reset_shared",
    "pg_stat_reset_single_table_counters",
    "pg_stat_reset_single_function_counters",
    "pg_stat_reset_slru",
    "pg_stat_reset_replication_slot",
    "pg_stat_statements_reset",
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "pg_try_advisory_lock",
    "pg_advisory_unlock",
    "pg_advisory_unlock_all",
    "pg_notify",
    "set_config",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "dblink_send_query",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "pg_file_write",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "nextval",
    "setval",
];

/// Words that make a statement write (or lock) when they appear as keywords.
const WRITING_WORDS: &[Keyword] = &[
    Keyword::INSERT,
    Keyword::UPDATE,
    Keyword::DELETE,
    Keyword::MERGE,
    Keyword::TRUNCATE,
    Keyword::COPY,
    Keyword::CALL,
    Keyword::DO,
    Keyword::LOCK,
    Keyword::SHARE,
];

type Tokens = Vec<Token>;

/// The statements of `sql`, each as its tokens without whitespace and
/// comments, split on top-level `;`.
fn statements(sql: &str) -> Result<Vec<Tokens>, String> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| format!("cannot be read as SQL: {e}"))?;
    Ok(tokens
        .split(|t| matches!(t, Token::SemiColon))
        .map(|s| {
            s.iter()
                .filter(|t| !matches!(t, Token::Whitespace(_)))
                .cloned()
                .collect::<Tokens>()
        })
        .filter(|s| !s.is_empty())
        .collect())
}

fn words(tokens: &[Token]) -> Vec<String> {
    tokens
        .iter()
        .filter_map(|t| match t {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        })
        .collect()
}

/// Transaction control and statements PostgreSQL refuses (or that commit)
/// inside a transaction block.
fn transaction_control(tokens: &[Token]) -> Option<String> {
    let w = words(tokens);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    match w.as_slice() {
        [
            first @ ("BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT" | "RELEASE"),
            ..,
        ] => Some(first.to_string()),
        ["PREPARE", "TRANSACTION", ..] => Some("PREPARE TRANSACTION".into()),
        ["SET", "TRANSACTION", ..]
        | ["SET", "LOCAL" | "SESSION", "TRANSACTION", ..]
        | ["SET", "SESSION", "CHARACTERISTICS", ..] => Some("SET TRANSACTION".into()),
        ["VACUUM", ..] => Some("VACUUM".into()),
        [first, ..] if w.contains(&"CONCURRENTLY") => Some(format!("{first} … CONCURRENTLY")),
        ["CREATE" | "DROP", "DATABASE" | "TABLESPACE", ..] | ["ALTER", "SYSTEM", ..] => {
            Some(format!("{} {}", w[0], w[1]))
        }
        ["CALL", ..] => Some("CALL (a procedure may commit)".into()),
        ["DO", ..] => do_block(tokens),
        _ => None,
    }
}

/// A `DO` block is refused when its body could end the transaction: it
/// commits, rolls back, calls a procedure, or runs dynamic SQL (`EXECUTE`),
/// which nothing can inspect. Lexical, so it errs on the side of refusing.
fn do_block(tokens: &[Token]) -> Option<String> {
    let Some(body) = tokens.iter().find_map(|t| match t {
        Token::DollarQuotedString(s) => Some(s.value.clone()),
        Token::SingleQuotedString(s) => Some(s.clone()),
        _ => None,
    }) else {
        return Some("DO without a body".into());
    };
    let inner = match Tokenizer::new(&PostgreSqlDialect {}, &body).tokenize() {
        Ok(t) => t,
        Err(e) => return Some(format!("DO block that cannot be read ({e})")),
    };
    inner.iter().find_map(|t| match t {
        Token::Word(w)
            if matches!(
                w.keyword,
                Keyword::COMMIT | Keyword::ROLLBACK | Keyword::CALL | Keyword::EXECUTE
            ) =>
        {
            Some(format!("DO block containing {}", w.value.to_ascii_uppercase()))
        }
        _ => None,
    })
}

/// The first call of a function with effects outside the transaction.
fn side_effect_call(tokens: &[Token]) -> Option<String> {
    tokens.windows(2).find_map(|pair| match pair {
        [Token::Word(w), Token::LParen] if w.quote_style.is_none() => {
            let name = w.value.to_ascii_lowercase();
            SIDE_EFFECT_FUNCTIONS.contains(&name.as_str()).then_some(name)
        }
        _ => None,
    })
}

fn parse_one(tokens: Tokens) -> Result<Statement, String> {
    Parser::new(&PostgreSqlDialect {})
        .with_tokens(tokens)
        .parse_statement()
        .map_err(|e| format!("cannot be parsed ({e}); only statements the checker can read may run"))
}

fn one_statement(sql: &str) -> Result<Tokens, String> {
    let mut stmts = statements(sql)?;
    match stmts.len() {
        0 => Err("is empty".into()),
        1 => Ok(stmts.remove(0)),
        n => Err(format!("holds {n} statements; write one")),
    }
}

/// A read-only query: diagnostic steps, plan queries, verifications and
/// effect rechecks. One `SELECT`/`WITH` statement that writes nothing, locks
/// nothing and calls no function with side effects.
pub fn check_query(sql: &str) -> Result<(), String> {
    let tokens = one_statement(sql)?;
    if let Some(what) = transaction_control(&tokens) {
        return Err(format!("uses {what}, which is not allowed here"));
    }
    if let Some(f) = side_effect_call(&tokens) {
        return Err(format!("calls {f}(), which has effects outside the transaction"));
    }
    let writes = tokens.iter().find_map(|t| match t {
        Token::Word(w) if w.quote_style.is_none() && WRITING_WORDS.contains(&w.keyword) => Some(w.value.to_uppercase()),
        _ => None,
    });
    if let Some(w) = writes {
        return Err(format!("uses {w}; this must be a read-only query"));
    }
    match parse_one(tokens)? {
        Statement::Query(_) => Ok(()),
        other => Err(format!("is not a query ({})", statement_kind(&other))),
    }
}

/// The statement an irreversible effect runs: one query (it calls the
/// function that does the work), with no transaction control.
pub fn check_effect_run(sql: &str) -> Result<(), String> {
    let tokens = one_statement(sql)?;
    if let Some(what) = transaction_control(&tokens) {
        return Err(format!("uses {what}, which is not allowed here"));
    }
    match parse_one(tokens)? {
        Statement::Query(_) => Ok(()),
        other => Err(format!("is not a SELECT ({})", statement_kind(&other))),
    }
}

/// A rollback script: any number of statements, none of which may end or
/// change the transaction, signal other sessions, or be unreadable.
pub fn check_script(sql: &str) -> Result<(), Vec<String>> {
    let stmts = statements(sql).map_err(|e| vec![e])?;
    let mut problems = Vec::new();
    for (i, tokens) in stmts.into_iter().enumerate() {
        let n = i + 1;
        if let Some(what) = transaction_control(&tokens) {
            problems.push(format!(
                "statement {n} uses {what}, which would end or change the apply transaction"
            ));
            continue;
        }
        if let Some(f) = side_effect_call(&tokens) {
            problems.push(format!(
                "statement {n} calls {f}(), which has effects outside the transaction"
            ));
            continue;
        }
        let is_do = matches!(tokens.first(), Some(Token::Word(w)) if w.keyword == Keyword::DO);
        if !is_do && let Err(e) = parse_one(tokens) {
            problems.push(format!("statement {n} {e}"));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// What an apply statement is, for the check that it stays inside its plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyShape {
    /// UPDATE or DELETE: the key columns it is restricted by with
    /// `<col> = ANY($n)` (and which `$n`), and the names it returns.
    Filtered {
        any_filters: Vec<(String, usize)>,
        returning: Vec<String>,
    },
    /// INSERT: the `$n` it uses and the names it returns.
    Insert {
        placeholders: Vec<usize>,
        returning: Vec<String>,
    },
    /// Anything else (DDL, SELECT, MERGE): needs the `unrestricted` reason.
    Other(String),
}

/// Parse one apply statement and describe its shape.
pub fn apply_shape(sql: &str) -> Result<ApplyShape, String> {
    let tokens = one_statement(sql)?;
    if let Some(what) = transaction_control(&tokens) {
        return Err(format!("uses {what}, which would end or change the apply transaction"));
    }
    if let Some(f) = side_effect_call(&tokens) {
        return Err(format!(
            "calls {f}(), which has effects outside the transaction; declare it as an [[effects]] step"
        ));
    }
    let placeholders = tokens
        .iter()
        .filter_map(|t| match t {
            Token::Placeholder(p) => p.strip_prefix('$').and_then(|n| n.parse().ok()),
            _ => None,
        })
        .collect();
    Ok(match parse_one(tokens)? {
        Statement::Update(u) => ApplyShape::Filtered {
            any_filters: u.selection.as_ref().map(any_filters).unwrap_or_default(),
            returning: returned_names(u.returning.as_deref()),
        },
        Statement::Delete(d) => ApplyShape::Filtered {
            any_filters: d.selection.as_ref().map(any_filters).unwrap_or_default(),
            returning: returned_names(d.returning.as_deref()),
        },
        Statement::Insert(i) => ApplyShape::Insert {
            placeholders,
            returning: returned_names(i.returning.as_deref()),
        },
        other => ApplyShape::Other(statement_kind(&other)),
    })
}

/// How a statement writes its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Insert,
    Update,
    Delete,
}

impl Write {
    pub fn as_str(self) -> &'static str {
        match self {
            Write::Insert => "INSERT",
            Write::Update => "UPDATE",
            Write::Delete => "DELETE",
        }
    }
}

/// The table an INSERT, UPDATE or DELETE writes, as the SQL names it
/// (`auth.users`), and how; `None` for any other statement.
pub fn written(sql: &str) -> Option<(Write, String)> {
    match parse_one(one_statement(sql).ok()?).ok()? {
        Statement::Insert(i) => match i.table {
            TableObject::TableName(name) => Some((Write::Insert, name.to_string())),
            _ => None,
        },
        Statement::Update(u) => Some((Write::Update, relation_name(&u.table)?)),
        Statement::Delete(d) => match d.from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => {
                Some((Write::Delete, relation_name(t.first()?)?))
            }
        },
        _ => None,
    }
}

/// The table an UPDATE or DELETE writes; `None` for any other statement.
pub fn written_table(sql: &str) -> Option<String> {
    match written(sql)? {
        (Write::Insert, _) => None,
        (_, table) => Some(table),
    }
}

fn relation_name(t: &TableWithJoins) -> Option<String> {
    match &t.relation {
        TableFactor::Table { name, .. } => Some(name.to_string()),
        _ => None,
    }
}

fn statement_kind(s: &Statement) -> String {
    s.to_string().split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// `<col> = ANY($n)` conditions joined by AND at the top of a WHERE clause.
/// Only those restrict every row the statement touches; one under an OR does not.
fn any_filters(e: &Expr) -> Vec<(String, usize)> {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            let mut v = any_filters(left);
            v.extend(any_filters(right));
            v
        }
        Expr::Nested(inner) => any_filters(inner),
        Expr::AnyOp {
            left,
            compare_op: BinaryOperator::Eq,
            right,
            ..
        } => match (column_name(left), placeholder(right)) {
            (Some(col), Some(n)) => vec![(col, n)],
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(i.value.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
        Expr::Nested(inner) => column_name(inner),
        _ => None,
    }
}

fn placeholder(e: &Expr) -> Option<usize> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => p.strip_prefix('$').and_then(|n| n.parse().ok()),
            _ => None,
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => placeholder(expr),
        _ => None,
    }
}

fn returned_names(items: Option<&[SelectItem]>) -> Vec<String> {
    items
        .unwrap_or_default()
        .iter()
        .filter_map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            SelectItem::UnnamedExpr(e) => column_name(e),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_table_an_update_or_delete_writes() {
        assert_eq!(
            written_table("DELETE FROM auth.users WHERE id = ANY($1::uuid[]) RETURNING id").as_deref(),
            Some("auth.users")
        );
        assert_eq!(
            written_table("UPDATE public.users u SET name = NULL WHERE u.id = ANY($1) RETURNING id").as_deref(),
            Some("public.users")
        );
        assert_eq!(written_table("SELECT 1"), None);
        assert_eq!(
            written("INSERT INTO public.profiles (id) SELECT unnest($1::uuid[]) RETURNING id"),
            Some((Write::Insert, "public.profiles".to_string()))
        );
        assert_eq!(written_table("DELETE FROM a; DELETE FROM b"), None);
    }

    use super::*;

    #[test]
    fn queries_must_read_only() {
        assert!(check_query("SELECT 'COMMIT' /* COMMIT */, now() FROM t WHERE a = $1").is_ok());
        assert!(check_query("WITH x AS MATERIALIZED (SELECT 1) SELECT * FROM x").is_ok());
        for (sql, why) in [
            ("SELECT 1; SELECT 2", "2 statements"),
            ("COMMIT", "uses COMMIT"),
            (
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
                "pg_terminate_backend",
            ),
            ("WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d", "uses DELETE"),
            ("SELECT * FROM t FOR UPDATE", "uses UPDATE"),
            ("UPDATE t SET a = 1", "uses UPDATE"),
            ("SELECT set_config('x', 'y', false)", "set_config"),
            ("EXPLAIN SELECT 1", "is not a query"),
        ] {
            let e = check_query(sql).unwrap_err();
            assert!(e.contains(why), "{sql}: {e}");
        }
    }

    #[test]
    fn scripts_refuse_transaction_control_in_every_form() {
        let ok = "-- a comment with COMMIT in it\n\
                  DROP FUNCTION IF EXISTS public.f(jsonb);\n\
                  CREATE OR REPLACE FUNCTION public.g() RETURNS int LANGUAGE sql AS $fn$ SELECT 1 $fn$;\n\
                  ALTER TABLE public.users DROP COLUMN IF EXISTS x;\n\
                  DO $$ BEGIN PERFORM 1; END $$;\n\
                  REVOKE ALL ON public.users FROM public;\n\
                  COMMENT ON TABLE public.users IS 'not COMMIT';";
        assert_eq!(check_script(ok), Ok(()));
        for bad in [
            "COMMIT",
            "commit work",
            "ROLLBACK",
            "BEGIN",
            "START TRANSACTION",
            "SAVEPOINT s",
            "RELEASE SAVEPOINT s",
            "PREPARE TRANSACTION 'x'",
            "COMMIT PREPARED 'x'",
            "ROLLBACK PREPARED 'x'",
            "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SET LOCAL TRANSACTION READ ONLY",
            "VACUUM ANALYZE public.users",
            "CREATE INDEX CONCURRENTLY i ON t (a)",
            "DROP INDEX CONCURRENTLY i",
            "REINDEX INDEX CONCURRENTLY i",
            "CALL p()",
            "DO $$ BEGIN COMMIT; END $$",
            "DO $x$ BEGIN EXECUTE 'COMM' || 'IT'; END $x$",
            "SELECT pg_terminate_backend(1)",
            "ALTER SYSTEM SET work_mem = '1GB'",
            "FROBNICATE the database",
        ] {
            let script = format!("SELECT 1;\n{bad};\nSELECT 2");
            let e = check_script(&script).unwrap_err();
            assert_eq!(e.len(), 1, "{bad}: {e:?}");
            assert!(e[0].starts_with("statement 2 "), "{bad}: {e:?}");
        }
    }

    #[test]
    fn apply_shapes_show_their_key_filters_and_returning() {
        assert_eq!(
            apply_shape("UPDATE public.users u SET deleted_at = NULL WHERE u.user_uuid = ANY($1::uuid[]) AND deleted_at IS NOT NULL RETURNING u.user_uuid").unwrap(),
            ApplyShape::Filtered {
                any_filters: vec![("user_uuid".into(), 1)],
                returning: vec!["user_uuid".into()]
            }
        );
        // Under an OR the filter restricts nothing.
        assert_eq!(
            apply_shape("DELETE FROM t WHERE id = ANY($1) OR true RETURNING id").unwrap(),
            ApplyShape::Filtered {
                any_filters: vec![],
                returning: vec!["id".into()]
            }
        );
        assert_eq!(
            apply_shape("INSERT INTO p (id) SELECT u FROM unnest($1::uuid[]) u RETURNING id AS id").unwrap(),
            ApplyShape::Insert {
                placeholders: vec![1],
                returning: vec!["id".into()]
            }
        );
        assert!(matches!(
            apply_shape("CREATE TABLE IF NOT EXISTS x (a int)").unwrap(),
            ApplyShape::Other(_)
        ));
        assert!(
            apply_shape("SELECT pg_terminate_backend(1)")
                .unwrap_err()
                .contains("[[effects]]")
        );
        assert!(apply_shape("COMMIT").is_err());
    }
}
