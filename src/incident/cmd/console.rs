//! `/incident console`: a one-time link to the incident console for the
//! person who asked (any level; the console applies their level on every
//! page). Only the link's hash is stored; the reply is ephemeral.

use super::{Ctx, no_more, usage_error};
use crate::config::Level;
use crate::error::{CommandError, UserError};
use crate::incident::model::IncidentRef;
use crate::origin::Reply;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Console;

impl Console {
    pub const NAME: &str = "incident.console";
    pub const LEVEL: Level = Level::L1;

    pub fn parse(target: Option<IncidentRef>, verb: &str, rest: &str) -> Result<Self, UserError> {
        if target.is_some() {
            return Err(usage_error("`/incident console` takes no incident reference.".into()));
        }
        no_more(verb, rest)?;
        Ok(Console)
    }

    pub async fn run(self, ctx: &mut Ctx<'_>) -> Result<Reply, CommandError> {
        let cfg = &ctx.state.config.console;
        let Some(base) = cfg.public_url() else {
            return Err(UserError::new(
                "The incident console is not turned on here: an operator sets `[console] enabled = true` and `public_url`.",
            )
            .into());
        };
        let ttl = cfg.link_ttl;
        let user = ctx.user().to_string();
        let token =
            crate::console::auth::issue_link(ctx.tx.conn().await?, &user, ctx.now, ttl.as_millis() as i64).await?;
        tracing::info!(slack.user_id = %user, "console sign-in link issued");
        Ok(Reply::secret(format!(
            ":lock: <{base}/console/login?token={token}|Open the incident console>: a sign-in link for you alone. \
             It works once and expires in {} minutes; a newer link replaces it.",
            ttl.as_secs() / 60
        )))
    }
}
