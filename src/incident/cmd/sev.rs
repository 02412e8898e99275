//! `/incident sev [#id] p0|p1|p2|p3`: change the severity (the escalation
//! ladder of the new level applies from then on).

use super::{Ctx, channel_of, no_more, refused, split_first, usage_error};
use crate::config::Level;
use crate::error::{CommandError, UserError};
use crate::incident::model::{Incident, IncidentRef, Severity, State};
use crate::incident::store::{self as db, Change};
use crate::incident::{render, room};
use crate::origin::Reply;
use crate::outbox::{self, Outgoing};

/// A severity that wants a room, reached mid-incident: create one, and say
/// so in the thread where the incident lived until now.
async fn open_room_now(ctx: &mut Ctx<'_>, mut i: Incident) -> Result<(), CommandError> {
    room::mark_pending(ctx.tx.conn().await?, &mut i).await?;
    let channel = channel_of(&i)?;
    let note = format!(
        ":door: #{} is now {}: I am creating a dedicated channel for it; updates continue there.",
        i.id, i.severity
    );
    let msgs = [
        Outgoing::thread(i.id, &channel, render::reply(note)),
        Outgoing::update_root(i.id, &channel, render::root(&i, ctx.now)),
    ];
    outbox::enqueue(ctx.tx.conn().await?, &msgs, ctx.origin.response_url.as_deref(), ctx.now).await?;
    let url = ctx.origin.response_url.as_deref();
    room::queue(ctx.tx.conn().await?, &i, room::Step::Create, url, ctx.now).await?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sev {
    pub target: Option<IncidentRef>,
    pub severity: Severity,
}

impl Sev {
    pub const NAME: &str = "incident.sev";
    pub const LEVEL: Level = Level::L2;

    pub fn parse(target: Option<IncidentRef>, verb: &str, rest: &str) -> Result<Self, UserError> {
        let (s, more) = split_first(rest);
        if s.is_empty() {
            return Err(usage_error(
                "`/incident sev` needs a severity: p0, p1, p2 or p3.".into(),
            ));
        }
        let severity = Severity::parse(s).map_err(|e| usage_error(e.0))?;
        no_more(verb, more)?;
        Ok(Sev { target, severity })
    }

    pub async fn run(self, ctx: &mut Ctx<'_>) -> Result<Reply, CommandError> {
        let to = self.severity;
        let i = ctx.find(self.target).await?;
        if i.severity == to && i.state != State::Resolved {
            return Err(UserError::new(format!("#{} is already {to}.", i.id)).into());
        }
        let Some(changed) = db::apply(&mut ctx.tx, i.id, Change::Severity { to }, ctx.now).await? else {
            return Err(refused(ctx.tx.conn().await?, i.id, "change the severity of").await);
        };
        let arrow = if to < i.severity { ":arrow_up:" } else { ":arrow_down:" };
        let what = format!("Severity {} → {to}", i.severity);
        let reply = format!(
            "{arrow} <@{}> changed the severity: {} → {to} ({}).",
            ctx.user(),
            i.severity,
            to.definition()
        );
        ctx.changed(&changed, "severity", &what, reply).await?;
        if ctx.state.config.incidents.wants_room(to) && !changed.has_room() {
            open_room_now(ctx, changed).await?;
            return Ok(Reply::new(format!(
                "#{} is now {to}; I am creating its own channel and will link it in the thread.",
                i.id
            )));
        }
        Ok(Reply::new(format!("#{} is now {to}.", i.id)))
    }
}
