//! `/incident resolve [#id] [summary]`: resolve, then post the timeline
//! summary, the postmortem skeleton and the status-page "resolved" draft.

use super::{Ctx, TEXT_MAX, channel_of, conversation, refused, usage_error};
use crate::config::Level;
use crate::error::{CommandError, UserError};
use crate::incident::model::{IncidentRef, human_duration};
use crate::incident::store::{self as db, Change};
use crate::incident::{render, room};
use crate::origin::Reply;
use crate::outbox::{self, Outgoing};
use crate::slack::text::decode_command_text;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolve {
    pub target: Option<IncidentRef>,
    pub summary: Option<String>,
}

impl Resolve {
    pub const NAME: &str = "incident.resolve";
    pub const LEVEL: Level = Level::L2;

    pub fn parse(target: Option<IncidentRef>, rest: &str) -> Result<Self, UserError> {
        let s = decode_command_text(rest).trim().to_string();
        if s.chars().count() > TEXT_MAX {
            return Err(usage_error(format!(
                "The summary is too long; keep it under {TEXT_MAX} characters."
            )));
        }
        Ok(Resolve {
            target,
            summary: (!s.is_empty()).then_some(s),
        })
    }

    pub async fn run(self, ctx: &mut Ctx<'_>) -> Result<Reply, CommandError> {
        let i = ctx.find(self.target).await?;
        let by = ctx.user().to_string();
        let change = Change::Resolve {
            by: &by,
            summary: self.summary.as_deref(),
        };
        let Some(resolved) = db::apply(&mut ctx.tx, i.id, change, ctx.now).await? else {
            return Err(refused(ctx.tx.conn().await?, i.id, "resolve").await);
        };
        let took = human_duration(ctx.now - i.declared_at);
        let what = match &self.summary {
            Some(s) => format!("Resolved after {took}: {s}"),
            None => format!("Resolved after {took}"),
        };
        db::add_event(ctx.tx.conn().await?, i.id, ctx.now, &by, "resolved", &what).await?;
        let i = resolved;
        let events = db::timeline(ctx.tx.conn().await?, i.id).await?;
        let channel = channel_of(&i)?;
        let msgs = [
            conversation(
                &i,
                &channel,
                render::reply(format!(":white_check_mark: <@{by}> resolved #{} after {took}.", i.id)),
            ),
            conversation(&i, &channel, render::postmortem(&i, &events, ctx.now)),
            conversation(&i, &channel, render::reply(render::status_page_resolved(&i))),
            Outgoing::update_root(i.id, &channel, render::root(&i, ctx.now)),
        ];
        outbox::enqueue(ctx.tx.conn().await?, &msgs, ctx.origin.response_url.as_deref(), ctx.now).await?;
        tracing::info!(incident.id = i.id, slack.user_id = %by, "incident resolved");
        if !i.has_room() {
            return Ok(Reply::new(format!(
                "Resolved #{} after {took}. The postmortem skeleton is in the thread.",
                i.id
            )));
        }
        room::upkeep::refresh_topic(ctx.tx.conn().await?, &i, ctx.now).await?;
        let incidents = &ctx.state.config.incidents;
        room::archive::schedule(ctx.tx.conn().await?, i.id, ctx.now + incidents.archive_after_ms()).await?;
        Ok(Reply::new(format!(
            "Resolved #{} after {took}. The postmortem skeleton is in its channel, which I archive in {} h unless you `/incident reopen` it.",
            i.id, incidents.archive_after_hours
        )))
    }
}
