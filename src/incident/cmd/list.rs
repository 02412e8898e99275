//! `/incident list`: the open incidents, most severe first.

use super::{Ctx, no_more, usage_error};
use crate::config::Level;
use crate::error::{CommandError, UserError};
use crate::incident::model::IncidentRef;
use crate::incident::{render, store as db};
use crate::origin::Reply;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List;

impl List {
    pub const NAME: &str = "incident.list";
    pub const LEVEL: Level = Level::L1;

    pub fn parse(target: Option<IncidentRef>, verb: &str, rest: &str) -> Result<Self, UserError> {
        if target.is_some() {
            return Err(usage_error("`/incident list` takes no incident reference.".into()));
        }
        no_more(verb, rest)?;
        Ok(List)
    }

    pub async fn run(self, ctx: &mut Ctx<'_>) -> Result<Reply, CommandError> {
        let open = db::list_open(ctx.tx.conn().await?, 20).await?;
        Ok(Reply::new(render::list(&open, ctx.now)))
    }
}
