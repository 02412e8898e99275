//! `/incident status [#id] <text>`: a status update, threaded and shown on
//! the root message.

use super::{Ctx, TEXT_MAX, refused, usage_error};
use crate::config::Level;
use crate::error::{CommandError, UserError};
use crate::incident::model::IncidentRef;
use crate::incident::store::{self as db, Change};
use crate::origin::Reply;
use crate::slack::text::{decode_command_text, escape};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub target: Option<IncidentRef>,
    pub text: String,
}

impl Status {
    pub const NAME: &str = "incident.status";
    pub const LEVEL: Level = Level::L2;

    pub fn parse(target: Option<IncidentRef>, rest: &str) -> Result<Self, UserError> {
        let text = decode_command_text(rest).trim().to_string();
        if text.is_empty() {
            return Err(usage_error("`/incident status` needs the update text.".into()));
        }
        if text.chars().count() > TEXT_MAX {
            return Err(usage_error(format!(
                "The update is too long; keep it under {TEXT_MAX} characters."
            )));
        }
        Ok(Status { target, text })
    }

    pub async fn run(self, ctx: &mut Ctx<'_>) -> Result<Reply, CommandError> {
        let id = ctx.target_id(self.target).await?;
        let Some(i) = db::apply(&mut ctx.tx, id, Change::Status { text: &self.text }, ctx.now).await? else {
            return Err(refused(ctx.tx.conn().await?, id, "update").await);
        };
        let reply = format!(":memo: Status update from <@{}>: {}", ctx.user(), escape(&self.text));
        ctx.changed(&i, "status", &self.text, reply).await?;
        Ok(Reply::new(format!("Posted the update to #{}.", i.id)))
    }
}
