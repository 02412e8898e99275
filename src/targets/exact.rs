//! Rows at full precision, for plans and for what apply statements
//! return: PostgreSQL renders each row as JSON (`row_to_json`), which keeps
//! every digit of a float or numeric and every microsecond of a timestamp,
//! and column order is kept. Diagnostics use the typed, rounded display of
//! `values`; what an approval hashes and compares must not be rounded.

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;
use sqlx::PgConnection;

use super::{StepError, bind_all, classify};
use crate::catalog::args::Bound;

/// Column names, rows of exact text (`None` is SQL NULL) and the full count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExactTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    pub total: i64,
}

/// One JSON object with its keys in order.
struct OrderedRow(Vec<(String, Option<String>)>);

impl<'de> Deserialize<'de> for OrderedRow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = OrderedRow;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a row as a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedRow, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    out.push((k, cell(&v)));
                }
                Ok(OrderedRow(out))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// A JSON value as text: strings unquoted, numbers and objects verbatim.
fn cell(raw: &RawValue) -> Option<String> {
    let text = raw.get();
    match text {
        "null" => None,
        t if t.starts_with('"') => serde_json::from_str::<String>(t).ok(),
        t => Some(t.to_string()),
    }
}

/// Parse `row_to_json` text into columns and cells.
pub fn parse_row(json: &str) -> Result<(Vec<String>, Vec<Option<String>>), String> {
    let OrderedRow(fields) = serde_json::from_str(json).map_err(|e| format!("row does not decode: {e}"))?;
    Ok(fields.into_iter().unzip())
}

/// Run a query (a plan step) in the caller's transaction; at most `limit`
/// rows come back, exactly, plus the full count.
pub async fn query_exact(
    conn: &mut PgConnection,
    sql: &str,
    params: &[Bound],
    timeout_ms: u64,
    limit: u32,
) -> Result<ExactTable, StepError> {
    let wrapped = format!(
        "WITH q AS MATERIALIZED ({sql}\n) SELECT row_to_json(q)::text AS __rb_row, count(*) OVER () AS __rb_total FROM q LIMIT {limit}"
    );
    fetch_rows(conn, &wrapped, params, timeout_ms).await
}

/// Run a row-changing statement that ends in `RETURNING`; the rows it
/// changed come back exactly (all of them: the engine compares every one).
pub async fn execute_returning(
    conn: &mut PgConnection,
    sql: &str,
    params: &[Bound],
    timeout_ms: u64,
) -> Result<ExactTable, StepError> {
    let wrapped = format!(
        "WITH changed AS ({sql}\n) SELECT row_to_json(changed)::text AS __rb_row, count(*) OVER () AS __rb_total FROM changed"
    );
    fetch_rows(conn, &wrapped, params, timeout_ms).await
}

async fn fetch_rows(
    conn: &mut PgConnection,
    wrapped: &str,
    params: &[Bound],
    timeout_ms: u64,
) -> Result<ExactTable, StepError> {
    let rows: Vec<(String, i64)> = bind_all(sqlx::query_as(sqlx::AssertSqlSafe(wrapped.to_string())), params)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify(&e, timeout_ms))?;
    let mut table = ExactTable::default();
    for (json, total) in rows {
        let (columns, cells) = parse_row(&json).map_err(StepError::other)?;
        if table.columns.is_empty() {
            table.columns = columns;
        }
        table.total = total;
        table.rows.push(cells);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_order_precision_and_nulls() {
        let (cols, cells) = parse_row(
            r#"{"z":1.0000000000000002,"a":"2026-11-22T10:00:00.123456+00:00","n":null,"j":{"b":[1,2]},"t":"line\nnext"}"#,
        )
        .unwrap();
        assert_eq!(cols, ["z", "a", "n", "j", "t"]);
        assert_eq!(
            cells,
            [
                Some("1.0000000000000002".into()),
                Some("2026-11-22T10:00:00.123456+00:00".into()),
                None,
                Some(r#"{"b":[1,2]}"#.into()),
                Some("line\nnext".into())
            ]
        );
        assert!(parse_row("[1]").is_err());
    }
}
