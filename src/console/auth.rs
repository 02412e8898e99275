//! Signing in through Slack: `/incident console` issues a one-time link
//! (32 random bytes, only their SHA-256 stored, valid for minutes), opening
//! it shows a sign-in button whose POST uses the link (one conditional
//! UPDATE) and opens a session, itself a random cookie stored only as its
//! SHA-256 with a per-session CSRF token. Level is never stored: every
//! request asks `roles` again, like a command does.

use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use crate::store::Store;

/// The session cookie; scoped to `/console`.
pub const COOKIE: &str = "rb_console";
/// Sessions a person may hold at once (browsers, devices); older ones end.
pub const SESSIONS_PER_USER: i64 = 5;

/// A fresh secret: 32 random bytes from the thread's CSPRNG, as hex.
pub fn secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// What is stored in place of a secret.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A link or cookie value must look like one of ours before it is hashed
/// and looked up: 64 lowercase hex digits.
pub fn well_formed(secret: &str) -> bool {
    secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Store a new sign-in link for `user`; returns its secret token. Any link
/// the person had not used yet stops working: one outstanding link each,
/// kept by a unique index on `user_id` and this one upsert (a delete, then
/// an insert, would let two concurrent requests on PostgreSQL both insert).
pub async fn issue_link(conn: &mut AnyConnection, user: &str, now: i64, ttl_ms: i64) -> anyhow::Result<String> {
    let token = secret();
    sqlx::query(
        "INSERT INTO console_links (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_id) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at,
           expires_at = excluded.expires_at, used_at = NULL",
    )
    .bind(hash(&token))
    .bind(user)
    .bind(now)
    .bind(now + ttl_ms)
    .execute(&mut *conn)
    .await?;
    Ok(token)
}

/// Why a link does not sign anyone in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefused {
    Unknown,
    Used,
    Expired,
}

/// Whether a link would sign in now, without using it (the page that
/// shows the sign-in button). Returns the user it is for.
pub async fn peek_link(store: &Store, token: &str, now: i64) -> anyhow::Result<Result<String, LinkRefused>> {
    if !well_formed(token) {
        return Ok(Err(LinkRefused::Unknown));
    }
    let row = sqlx::query("SELECT user_id, expires_at, used_at FROM console_links WHERE token_hash = $1")
        .bind(hash(token))
        .fetch_optional(&store.pool)
        .await?;
    let Some(row) = row else {
        return Ok(Err(LinkRefused::Unknown));
    };
    let used: Option<i64> = row.try_get("used_at")?;
    let expires: i64 = row.try_get("expires_at")?;
    Ok(match (used, expires > now) {
        (Some(_), _) => Err(LinkRefused::Used),
        (None, false) => Err(LinkRefused::Expired),
        (None, true) => Ok(row.try_get("user_id")?),
    })
}

/// A session just opened: the cookie's value and its CSRF token.
pub struct Opened {
    pub cookie: String,
    pub user: String,
}

/// Use the link and open a session, in one transaction. The link is first
/// looked up on the read pool, so a token that is unknown, used or expired
/// never takes the writer (on SQLite one connection, shared with every
/// command): a flood of made-up tokens delays nobody. The link is then used
/// by one conditional UPDATE, so of two requests (or replicas) only one wins.
pub async fn sign_in(
    store: &Store,
    token: &str,
    now: i64,
    session_ms: i64,
) -> anyhow::Result<Result<Opened, LinkRefused>> {
    if let Err(why) = peek_link(store, token, now).await? {
        return Ok(Err(why));
    }
    let mut tx = store.begin_for_person().await?;
    let used = sqlx::query(
        "UPDATE console_links SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1
         RETURNING user_id",
    )
    .bind(now)
    .bind(hash(token))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = used else {
        drop(tx);
        // Say why (used, expired, unknown) from the row as it is now.
        return Ok(Err(peek_link(store, token, now)
            .await?
            .err()
            .unwrap_or(LinkRefused::Used)));
    };
    let user: String = row.try_get("user_id")?;
    let cookie = secret();
    let cookie_hash = hash(&cookie);
    sqlx::query(
        "INSERT INTO console_sessions (token_hash, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&cookie_hash)
    .bind(&user)
    .bind(secret())
    .bind(now)
    .bind(now + session_ms)
    .execute(&mut *tx)
    .await?;
    // Bound the sessions one person holds: the new one and the newest others
    // stay, the oldest beyond the limit end. The new one is named, not found
    // by time: sessions opened in the same millisecond tie on `created_at`.
    sqlx::query(
        "DELETE FROM console_sessions WHERE user_id = $1 AND token_hash <> $3 AND token_hash NOT IN
         (SELECT token_hash FROM console_sessions WHERE user_id = $1 AND token_hash <> $3
          ORDER BY created_at DESC, token_hash LIMIT $2)",
    )
    .bind(&user)
    .bind(SESSIONS_PER_USER - 1)
    .bind(&cookie_hash)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Ok(Opened { cookie, user }))
}

/// A live session: who, and the token its forms carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub csrf: String,
    token_hash: String,
}

pub async fn session(store: &Store, cookie: &str, now: i64) -> anyhow::Result<Option<Session>> {
    if !well_formed(cookie) {
        return Ok(None);
    }
    let token_hash = hash(cookie);
    let row = sqlx::query("SELECT user_id, csrf FROM console_sessions WHERE token_hash = $1 AND expires_at > $2")
        .bind(&token_hash)
        .bind(now)
        .fetch_optional(&store.pool)
        .await?;
    row.map(|r| {
        Ok(Session {
            user: r.try_get("user_id")?,
            csrf: r.try_get("csrf")?,
            token_hash,
        })
    })
    .transpose()
}

pub async fn sign_out(store: &Store, s: &Session) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
        .bind(&s.token_hash)
        .execute(&store.writer)
        .await?;
    Ok(())
}

/// Constant-time comparison of a form's CSRF token with the session's.
pub fn csrf_ok(s: &Session, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    !given.is_empty() && bool::from(hash(given).as_bytes().ct_eq(hash(&s.csrf).as_bytes()))
}

/// The `Set-Cookie` value that opens a session.
pub fn set_cookie(value: &str, max_age_secs: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}")
}

/// The `Set-Cookie` value that ends one.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

/// Our cookie's value from a `Cookie` header, if present.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_hex_and_stored_hashed() {
        let (a, b) = (secret(), secret());
        assert_ne!(a, b);
        assert!(well_formed(&a) && well_formed(&b));
        assert_ne!(hash(&a), a);
        assert_eq!(hash(&a), hash(&a));
        assert!(!well_formed(&a[..63]));
        assert!(!well_formed(&a.to_uppercase()));
        assert!(!well_formed(&format!("{}'", &a[..63])));
    }

    #[test]
    fn cookies_carry_every_attribute() {
        let c = set_cookie("abc", 43_200, true);
        assert_eq!(
            c,
            "rb_console=abc; Path=/console; HttpOnly; SameSite=Lax; Max-Age=43200; Secure"
        );
        assert!(!set_cookie("abc", 1, false).contains("Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }

    #[test]
    fn finds_our_cookie_among_others() {
        assert_eq!(cookie_value("a=1; rb_console=xyz; b=2"), Some("xyz"));
        assert_eq!(cookie_value("rb_console_old=1"), None);
        assert_eq!(cookie_value(""), None);
    }

    #[test]
    fn csrf_needs_the_exact_token() {
        let s = Session {
            user: "U1".into(),
            csrf: "tok".into(),
            token_hash: String::new(),
        };
        assert!(csrf_ok(&s, "tok"));
        assert!(!csrf_ok(&s, "tok2"));
        assert!(!csrf_ok(&s, ""));
    }
}
