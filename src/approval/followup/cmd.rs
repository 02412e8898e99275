//! `/scheduled`: what applied actions scheduled for later (the GDPR hard
//! delete on day 30), and a tech lead's way to stop one before it runs.

use super::store;
use crate::audit::{self, Event};
use crate::config::Level;
use crate::error::{CommandError, UserError};
use crate::incident::model::human_duration;
use crate::incident::render::utc;
use crate::origin::{Origin, Reply};
use crate::slack::text::escape;
use crate::state::AppState;

pub const USAGE: &str = "*Usage:* `/scheduled list` shows what applied actions scheduled for later, and \
what failed; `/scheduled cancel <id>` stops one before it runs, `/scheduled retry <id>` runs a failed \
one again (level l3).";

/// How many follow-ups `/scheduled list` shows before "and N more".
const LISTED: i64 = 30;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduledCmd {
    List,
    Cancel(i64),
    Retry(i64),
}

impl ScheduledCmd {
    /// `Ok(None)` is a request for help.
    pub fn parse(text: &str) -> Result<Option<ScheduledCmd>, UserError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            [] | ["help"] => Ok(None),
            ["list"] => Ok(Some(ScheduledCmd::List)),
            ["cancel", id] => Ok(Some(ScheduledCmd::Cancel(number(id)?))),
            ["retry", id] => Ok(Some(ScheduledCmd::Retry(number(id)?))),
            _ => Err(UserError::new(format!("Unknown or incomplete subcommand.\n{USAGE}"))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ScheduledCmd::List => "scheduled.list",
            ScheduledCmd::Cancel(_) => "scheduled.cancel",
            ScheduledCmd::Retry(_) => "scheduled.retry",
        }
    }

    /// Cancelling or re-running a legally required deletion is a tech
    /// lead's decision.
    pub fn level(&self) -> Level {
        match self {
            ScheduledCmd::List => Level::L2,
            ScheduledCmd::Cancel(_) | ScheduledCmd::Retry(_) => Level::L3,
        }
    }

    pub async fn run(self, state: &AppState, origin: &Origin) -> Result<Reply, CommandError> {
        match self {
            ScheduledCmd::List => list(state).await,
            ScheduledCmd::Cancel(id) => cancel(state, origin, id).await,
            ScheduledCmd::Retry(id) => retry(state, origin, id).await,
        }
    }
}

fn number(word: &str) -> Result<i64, UserError> {
    let id = word.trim_start_matches('#');
    match id.parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(UserError::new(format!(
            "`{}` is not a follow-up number.\n{USAGE}",
            escape(&id.chars().take(20).collect::<String>())
        ))),
    }
}

async fn list(state: &AppState) -> Result<Reply, CommandError> {
    let now = state.clock.now_ms();
    let mut conn = state.store.pool.acquire().await?;
    let (rows, total) = store::listed(&mut conn, LISTED).await?;
    if rows.is_empty() {
        return Ok(Reply::new("Nothing is scheduled."));
    }
    let mut out = String::from("*Scheduled follow-ups*");
    for f in &rows {
        let when = match f.state.as_str() {
            "running" => "running now".to_string(),
            "failed" => format!(
                "*failed*: {} — `/scheduled retry {}` runs it again",
                escape(f.result.as_deref().unwrap_or("")),
                f.id
            ),
            _ => format!("due {} (in {})", utc(f.due_at), human_duration(f.due_at - now)),
        };
        out.push_str(&format!(
            "\n• #{} {} — {when} · from approval #{}",
            f.id,
            escape(&f.title),
            f.request_id
        ));
    }
    if total > rows.len() as i64 {
        out.push_str(&format!("\n…and {} more", total - rows.len() as i64));
    }
    Ok(Reply::new(out))
}

/// The follow-up, or a refusal naming the id.
async fn existing(conn: &mut sqlx::AnyConnection, id: i64) -> Result<store::Followup, CommandError> {
    Ok(store::get(conn, id)
        .await?
        .ok_or_else(|| UserError::new(format!("There is no follow-up #{id}. See `/scheduled list`.")))?)
}

async fn cancel(state: &AppState, origin: &Origin, id: i64) -> Result<Reply, CommandError> {
    let now = state.clock.now_ms();
    let mut tx = state.store.begin_for_person().await?;
    let f = existing(&mut tx, id).await?;
    if !store::cancel(&mut tx, id, origin.user.as_str(), now).await? {
        // Read again: a worker may have claimed it since.
        let now_state = existing(&mut tx, id).await?.state;
        let why = if now_state == "running" {
            "it is running now; too late to cancel".to_string()
        } else {
            format!("it is {now_state}; nothing to cancel")
        };
        return Err(UserError::new(format!("Follow-up #{id}: {why}.")).into());
    }
    let text = format!(
        ":no_entry_sign: <@{}> cancelled follow-up #{id} ({}) of approval #{}; it will not run.",
        origin.user,
        escape(&f.title),
        f.request_id
    );
    announce(state, origin, tx, &f, "followup_cancelled", text, now).await?;
    tracing::info!(followup.id = id, slack.user_id = %origin.user, "follow-up cancelled");
    Ok(Reply::new(format!("Cancelled follow-up #{id}; it will not run.")))
}

async fn retry(state: &AppState, origin: &Origin, id: i64) -> Result<Reply, CommandError> {
    let now = state.clock.now_ms();
    let mut tx = state.store.begin_for_person().await?;
    let f = existing(&mut tx, id).await?;
    if !store::retry(&mut tx, id, now).await? {
        return Err(UserError::new(format!(
            "Follow-up #{id} is {}; only a failed one is run again.",
            f.state
        ))
        .into());
    }
    let text = format!(
        ":repeat: <@{}> is running follow-up #{id} ({}) of approval #{} again.",
        origin.user,
        escape(&f.title),
        f.request_id
    );
    announce(state, origin, tx, &f, "followup_retried", text, now).await?;
    tracing::info!(followup.id = id, slack.user_id = %origin.user, "follow-up retried");
    Ok(Reply::new(format!("Follow-up #{id} will run again within a minute.")))
}

/// Audit a person's decision on a follow-up, tell its request's thread,
/// and commit the transaction that made it.
async fn announce(
    state: &AppState,
    origin: &Origin,
    mut tx: crate::store::group::PersonTx,
    f: &store::Followup,
    kind: &str,
    text: String,
    now: i64,
) -> Result<(), CommandError> {
    let r = crate::approval::store::get(&mut tx, f.request_id).await?;
    let detail = format!("{kind} #{} {} of approval #{}", f.id, f.title, f.request_id);
    let incident = r.as_ref().and_then(|r| r.incident_id);
    let event = Event::new(origin, kind, &detail).about(Some(f.request_id), incident);
    audit::record(&mut tx, event, now).await?;
    if let Some(r) = &r {
        crate::approval::notify::reply(&mut tx, state, r, text).await?;
    }
    state.outbox.commit_person(tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_list_cancel_and_refuses_the_rest() {
        assert_eq!(ScheduledCmd::parse("").unwrap(), None);
        assert_eq!(ScheduledCmd::parse("list").unwrap(), Some(ScheduledCmd::List));
        assert_eq!(ScheduledCmd::parse("cancel #3").unwrap(), Some(ScheduledCmd::Cancel(3)));
        assert_eq!(ScheduledCmd::parse("cancel 3").unwrap(), Some(ScheduledCmd::Cancel(3)));
        assert!(
            ScheduledCmd::parse("cancel x")
                .unwrap_err()
                .0
                .contains("not a follow-up number")
        );
        assert!(ScheduledCmd::parse("cancel").is_err());
        assert!(ScheduledCmd::parse("drop 3").is_err());
        assert_eq!(ScheduledCmd::Cancel(1).level(), Level::L3);
    }
}
