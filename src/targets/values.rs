//! Turning PostgreSQL values of any common type into display text, so a
//! catalog file can select whatever columns it likes.

use sqlx::postgres::{PgRow, PgValueFormat, PgValueRef};
use sqlx::{Row, TypeInfo, ValueRef};

/// The first `n` columns of a row as strings (`NULL` for nulls).
pub fn row_to_strings(row: &PgRow, n: usize) -> Vec<String> {
    (0..n).map(|i| cell(row, i)).collect()
}

fn cell(row: &PgRow, i: usize) -> String {
    let raw: PgValueRef<'_> = match row.try_get_raw(i) {
        Ok(r) => r,
        Err(_) => return "?".into(),
    };
    if raw.is_null() {
        return "NULL".into();
    }
    let ty = raw.type_info().name().to_string();
    let text = match ty.as_str() {
        "BOOL" => row.try_get::<bool, _>(i).map(|b| b.to_string()),
        "INT2" => row.try_get::<i16, _>(i).map(|v| v.to_string()),
        "INT4" => row.try_get::<i32, _>(i).map(|v| v.to_string()),
        "INT8" => row.try_get::<i64, _>(i).map(|v| v.to_string()),
        "OID" => row.try_get::<sqlx::postgres::types::Oid, _>(i).map(|v| v.0.to_string()),
        "FLOAT4" => row.try_get::<f32, _>(i).map(|v| trim_float(f64::from(v))),
        "FLOAT8" => row.try_get::<f64, _>(i).map(trim_float),
        "UUID" => row.try_get::<uuid::Uuid, _>(i).map(|v| v.to_string()),
        // Decoded by hand: the driver panics on `infinity`, which real data
        // holds (banned_until = 'infinity').
        "TIMESTAMPTZ" => Ok(timestamp(&raw, " UTC")),
        "TIMESTAMP" => Ok(timestamp(&raw, "")),
        "DATE" => Ok(date(&raw)),
        "INTERVAL" => row
            .try_get::<sqlx::postgres::types::PgInterval, _>(i)
            .map(|v| interval(&v)),
        "JSON" | "JSONB" => row.try_get::<serde_json::Value, _>(i).map(|v| v.to_string()),
        "TEXT[]" | "NAME[]" | "VARCHAR[]" => row.try_get::<Vec<String>, _>(i).map(|v| v.join(", ")),
        // Text-like types share the text wire format; anything else (NUMERIC,
        // arrays of other types, custom types) asks the catalog author to cast.
        "TEXT" | "VARCHAR" | "NAME" | "BPCHAR" | "CHAR" | "CITEXT" | "UNKNOWN" => row.try_get_unchecked::<String, _>(i),
        _ => Err(sqlx::Error::Decode("unsupported type".into())),
    };
    text.unwrap_or_else(|_| format!("({} — cast it to text)", ty.to_lowercase()))
}

/// PostgreSQL's epoch for timestamps and dates.
fn pg_epoch() -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("valid date")
}

fn timestamp(raw: &PgValueRef<'_>, zone: &str) -> String {
    if raw.format() == PgValueFormat::Text {
        return raw.as_str().map(str::to_string).unwrap_or_else(|_| "?".into());
    }
    let Some(us) = raw
        .as_bytes()
        .ok()
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(i64::from_be_bytes)
    else {
        return "?".into();
    };
    match us {
        i64::MAX => "infinity".into(),
        i64::MIN => "-infinity".into(),
        _ => pg_epoch()
            .checked_add_signed(chrono::TimeDelta::microseconds(us))
            .map(|t| format!("{}{zone}", t.format("%Y-%m-%d %H:%M:%S")))
            .unwrap_or_else(|| "out of range".into()),
    }
}

fn date(raw: &PgValueRef<'_>) -> String {
    if raw.format() == PgValueFormat::Text {
        return raw.as_str().map(str::to_string).unwrap_or_else(|_| "?".into());
    }
    let Some(days) = raw
        .as_bytes()
        .ok()
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(i32::from_be_bytes)
    else {
        return "?".into();
    };
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        _ => pg_epoch()
            .date()
            .checked_add_signed(chrono::TimeDelta::days(i64::from(days)))
            .map(|d| d.to_string())
            .unwrap_or_else(|| "out of range".into()),
    }
}

fn trim_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn interval(v: &sqlx::postgres::types::PgInterval) -> String {
    let secs = v.microseconds as f64 / 1e6 + f64::from(v.days) * 86_400.0;
    let base = if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        format!("{:.1} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    };
    if v.months != 0 {
        format!("{} mon {base}", v.months)
    } else {
        base
    }
}
