//! The engine's own reading of an auth user, whatever the catalog's plan
//! SQL says: before a request is stored and again just before each call, a
//! recovery link is only made for a user who exists, is neither banned nor
//! deleted, and still has the email the approver saw.

use sqlx::{Connection, PgConnection};

use crate::targets::{StepError, classify};

const TIMEOUT_MS: u64 = 5000;

/// Why a user may not get a recovery link now; `None` when they may.
pub async fn ineligible(conn: &mut PgConnection, id: &str, email: &str) -> Result<Option<&'static str>, StepError> {
    let Ok(id) = uuid::Uuid::parse_str(id) else {
        return Ok(Some("its key is not an auth user id"));
    };
    let mut tx = conn.begin_with("BEGIN READ ONLY").await.map_err(|e| classify(&e, 0))?;
    // A session holding auth.users in ACCESS EXCLUSIVE mode must not stall the apply.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET LOCAL statement_timeout = {TIMEOUT_MS}"
    )))
    .execute(&mut *tx)
    .await
    .map_err(|e| classify(&e, TIMEOUT_MS))?;
    let row: Option<(Option<String>, bool, bool)> = sqlx::query_as(
        "SELECT email::text, coalesce(banned_until > now(), false), deleted_at IS NOT NULL
         FROM auth.users WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| classify(&e, TIMEOUT_MS))?;
    let _ = tx.rollback().await;
    Ok(verdict(row, email))
}

fn verdict(row: Option<(Option<String>, bool, bool)>, email: &str) -> Option<&'static str> {
    match row {
        None => Some("the user no longer exists"),
        Some((_, _, true)) => Some("the user was deleted"),
        Some((_, true, _)) => Some("the user is banned"),
        Some((now, _, _)) if now.as_deref() != Some(email) => Some("the user's email changed since approval"),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_live_user_with_the_same_email_qualifies() {
        let row = |email: &str, banned, deleted| Some((Some(email.to_string()), banned, deleted));
        assert_eq!(verdict(row("a@x.io", false, false), "a@x.io"), None);
        assert_eq!(verdict(None, "a@x.io"), Some("the user no longer exists"));
        assert_eq!(
            verdict(row("a@x.io", true, true), "a@x.io"),
            Some("the user was deleted")
        );
        assert_eq!(
            verdict(row("a@x.io", true, false), "a@x.io"),
            Some("the user is banned")
        );
        assert_eq!(
            verdict(row("b@x.io", false, false), "a@x.io"),
            Some("the user's email changed since approval")
        );
        assert_eq!(
            verdict(Some((None, false, false)), "a@x.io"),
            Some("the user's email changed since approval")
        );
    }
}
