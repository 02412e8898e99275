//! Follow-ups: statements an applied action schedules for later, such as
//! the GDPR hard delete on day 30 (runbook 004). They run unattended, so
//! they run only what was approved: the request's stored snapshot and plan
//! keys, restricted and checked like any apply statement. `/scheduled`
//! lists them and lets a tech lead cancel one before it runs.

pub mod cmd;
pub mod store;
pub mod worker;

/// The follow-up an applied request schedules, if its action declares one.
pub async fn schedule_for(
    conn: &mut sqlx::AnyConnection,
    r: &crate::approval::store::Request,
    now: i64,
) -> anyhow::Result<Option<(i64, i64)>> {
    let Some(text) = r.snapshot.as_deref() else {
        return Ok(None);
    };
    // A snapshot that does not decode would silently drop a legally
    // required deletion: that is an error, not "no follow-up".
    let snapshot: crate::approval::snapshot::Snapshot = serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("request {}: its stored snapshot does not decode: {e}", r.id))?;
    let Some(f) = &snapshot.def.followup else {
        return Ok(None);
    };
    let due_at = now + i64::from(f.after_days) * 86_400_000;
    Ok(store::schedule(conn, r.id, &f.title, due_at, now)
        .await?
        .map(|id| (id, due_at)))
}
