//! Named leases in the state store, so one instance at a time does a job
//! (processing the alert inbox in order, polling health) while the others
//! stand by and take over when the holder stops renewing.

use super::Store;

/// Take or renew `name` for `ttl_ms`; true when this owner holds it now.
pub async fn acquire(store: &Store, name: &str, owner: &str, now: i64, ttl_ms: i64) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
         WHERE leases.expires_at < $4 OR leases.owner = excluded.owner",
    )
    .bind(name)
    .bind(owner)
    .bind(now + ttl_ms)
    .bind(now)
    .execute(&store.writer)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Give a lease up on shutdown so another instance need not wait it out.
/// Extend `owner`'s unexpired lease inside `conn`'s transaction; false when
/// it expired or another owner took it. On PostgreSQL the row stays locked
/// until the transaction ends, so a replica taking over waits for it.
pub async fn renew_in(
    conn: &mut sqlx::AnyConnection,
    name: &str,
    owner: &str,
    now: i64,
    ttl_ms: i64,
) -> anyhow::Result<bool> {
    let done = sqlx::query("UPDATE leases SET expires_at = $1 WHERE name = $2 AND owner = $3 AND expires_at >= $4")
        .bind(now + ttl_ms)
        .bind(name)
        .bind(owner)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn release(store: &Store, name: &str, owner: &str) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM leases WHERE name = $1 AND owner = $2")
        .bind(name)
        .bind(owner)
        .execute(&store.writer)
        .await?;
    Ok(())
}
