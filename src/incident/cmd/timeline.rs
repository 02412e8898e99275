//! `/incident timeline [#id]`: everything that happened, oldest first.

use super::{Ctx, no_more};
use crate::config::Level;
use crate::error::{CommandError, UserError};
use crate::incident::model::IncidentRef;
use crate::incident::{render, store as db};
use crate::origin::Reply;
use crate::slack::text::escape;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    pub target: Option<IncidentRef>,
}

impl Timeline {
    pub const NAME: &str = "incident.timeline";
    pub const LEVEL: Level = Level::L1;

    pub fn parse(target: Option<IncidentRef>, verb: &str, rest: &str) -> Result<Self, UserError> {
        no_more(verb, rest)?;
        Ok(Timeline { target })
    }

    pub async fn run(self, ctx: &mut Ctx<'_>) -> Result<Reply, CommandError> {
        let i = ctx.find(self.target).await?;
        let events = db::timeline(ctx.tx.conn().await?, i.id).await?;
        Ok(Reply::new(format!(
            "*Timeline of #{}* — {}\n{}",
            i.id,
            escape(&i.title),
            render::timeline_capped(&events, 2800).replace("{id}", &i.id.to_string())
        )))
    }
}
