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

pub const USAGE: &str = "*Usage:* `/scheduled list` shows what applied actions scheduled for later; \
`/scheduled cancel <id>` stops one before it runs (level l3).";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduledCmd {
    List,
    Cancel(i64),
}

impl ScheduledCmd {
    /// `Ok(None)` is a request for help.
    pub fn parse(text: &str) -> Result<Option<ScheduledCmd>, UserError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            [] | ["help"] => Ok(None),
            ["list"] => Ok(Some(ScheduledCmd::List)),
            ["cancel", id] => {
                let id = id.trim_start_matches('#');
                match id.parse::<i64>() {
                    Ok(n) if n > 0 => Ok(Some(ScheduledCmd::Cancel(n))),
                    _ => Err(UserError::new(format!(
                        "`{}` is not a follow-up number.\n{USAGE}",
                        escape(&id.chars().take(20).collect::<String>())
                    ))),
                }
            }
            _ => Err(UserError::new(format!("Unknown or incomplete subcommand.\n{USAGE}"))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ScheduledCmd::List => "scheduled.list",
            ScheduledCmd::Cancel(_) => "scheduled.cancel",
        }
    }

    /// Cancelling a legally required deletion is a tech lead's decision.
    pub fn level(&self) -> Level {
        match self {
            ScheduledCmd::List => Level::L2,
            ScheduledCmd::Cancel(_) => Level::L3,
        }
    }

    pub async fn run(self, state: &AppState, origin: &Origin) -> Result<Reply, CommandError> {
        match self {
            ScheduledCmd::List => list(state).await,
            ScheduledCmd::Cancel(id) => cancel(state, origin, id).await,
        }
    }
}

async fn list(state: &AppState) -> Result<Reply, CommandError> {
    let now = state.clock.now_ms();
    let mut conn = state.store.pool.acquire().await?;
    let rows = store::scheduled(&mut conn, 50).await?;
    if rows.is_empty() {
        return Ok(Reply::new("Nothing is scheduled."));
    }
    let mut out = String::from("*Scheduled follow-ups*");
    for f in rows {
        let when = if f.state == "running" {
            "running now".to_string()
        } else {
            format!("due {} (in {})", utc(f.due_at), human_duration(f.due_at - now))
        };
        out.push_str(&format!(
            "\n• #{} {} — {when} · from approval #{}",
            f.id,
            escape(&f.title),
            f.request_id
        ));
    }
    Ok(Reply::new(out))
}

async fn cancel(state: &AppState, origin: &Origin, id: i64) -> Result<Reply, CommandError> {
    let now = state.clock.now_ms();
    let mut tx = state.store.begin().await?;
    let f = store::get(&mut tx, id)
        .await?
        .ok_or_else(|| UserError::new(format!("There is no follow-up #{id}. See `/scheduled list`.")))?;
    if !store::cancel(&mut tx, id, origin.user.as_str(), now).await? {
        return Err(UserError::new(format!("Follow-up #{id} is {}; nothing to cancel.", f.state)).into());
    }
    let r = crate::approval::store::get(&mut tx, f.request_id).await?;
    let detail = format!("cancelled follow-up #{id} {} of approval #{}", f.title, f.request_id);
    let incident = r.as_ref().and_then(|r| r.incident_id);
    let event = Event::new(origin, "followup_cancelled", &detail).about(Some(f.request_id), incident);
    audit::record(&mut tx, event, now).await?;
    if let Some(r) = &r {
        let reply = format!(
            ":no_entry_sign: <@{}> cancelled follow-up #{id} ({}) of approval #{}; it will not run.",
            origin.user,
            escape(&f.title),
            f.request_id
        );
        crate::approval::notify::reply(&mut tx, state, r, reply).await?;
    }
    state.outbox.commit(tx).await?;
    tracing::info!(followup.id = id, slack.user_id = %origin.user, "follow-up cancelled");
    Ok(Reply::new(format!("Cancelled follow-up #{id}; it will not run.")))
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
