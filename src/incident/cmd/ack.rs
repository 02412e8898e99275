//! `/incident ack [#id]`: acknowledge, which stops the escalation ladder.

use super::{Ctx, no_more, refused};
use crate::config::Level;
use crate::error::{CommandError, UserError};
use crate::incident::model::{IncidentRef, human_duration};
use crate::incident::store::{self as db, Change};
use crate::origin::Reply;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub target: Option<IncidentRef>,
}

impl Ack {
    pub const NAME: &str = "incident.ack";
    pub const LEVEL: Level = Level::L2;

    pub fn parse(target: Option<IncidentRef>, verb: &str, rest: &str) -> Result<Self, UserError> {
        no_more(verb, rest)?;
        Ok(Ack { target })
    }

    pub async fn run(self, ctx: &mut Ctx<'_>) -> Result<Reply, CommandError> {
        let i = ctx.find(self.target).await?;
        let by = ctx.user().to_string();
        let Some(changed) = db::apply(&mut ctx.tx, i.id, Change::Acknowledge { by: &by }, ctx.now).await? else {
            return Err(refused(ctx.tx.conn().await?, i.id, "acknowledge").await);
        };
        let took = human_duration(ctx.now - i.declared_at);
        let text = format!(":eyes: <@{by}> acknowledged #{} after {took}.", i.id);
        ctx.changed(&changed, "acknowledged", &format!("Acknowledged after {took}"), text)
            .await?;
        Ok(Reply::new(format!("Acknowledged #{}.", i.id)))
    }
}
