//! `/incident reopen [#id]`: a resolved incident is back. Works for thread
//! incidents and for those with a room, where it also cancels the room's
//! scheduled archive (in the same conditional update).

use super::{Ctx, no_more};
use crate::config::Level;
use crate::error::{CommandError, UserError};
use crate::incident::model::{IncidentRef, Room, State};
use crate::incident::store as db;
use crate::origin::Reply;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reopen {
    pub target: Option<IncidentRef>,
}

impl Reopen {
    pub const NAME: &str = "incident.reopen";
    /// As resolve: whoever may close an incident may open it again.
    pub const LEVEL: Level = Level::L2;

    pub fn parse(target: Option<IncidentRef>, verb: &str, rest: &str) -> Result<Self, UserError> {
        no_more(verb, rest)?;
        Ok(Reopen { target })
    }

    pub async fn run(self, ctx: &mut Ctx<'_>) -> Result<Reply, CommandError> {
        let i = ctx.find(self.target).await?;
        let Some(reopened) = db::reopen(ctx.tx.conn().await?, i.id, ctx.now).await? else {
            let now = db::get(ctx.tx.conn().await?, i.id).await?;
            if now.is_some_and(|n| n.state != State::Resolved) {
                return Err(UserError::new(format!("#{} is not resolved; nothing to reopen.", i.id)).into());
            }
            return Err(UserError::new(format!("#{} changed while you were typing; try again.", i.id)).into());
        };
        let reply = format!(":leftwards_arrow_with_hook: <@{}> reopened #{}.", ctx.user(), i.id);
        ctx.changed(&reopened, "reopened", &format!("Reopened by {}", ctx.user()), reply)
            .await?;
        tracing::info!(incident.id = i.id, slack.user_id = %ctx.user(), "incident reopened");
        if let Room::Archived(c) = i.room() {
            return Ok(Reply::new(format!(
                "Reopened #{}. Its channel <#{c}> was archived already, so it continues in its thread in <#{}>.",
                i.id, i.channel
            )));
        }
        Ok(Reply::new(format!("Reopened #{}.", i.id)))
    }
}
