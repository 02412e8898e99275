//! `/incident sev [#id] p0|p1|p2|p3`: change the severity (the escalation
//! ladder of the new level applies from then on).

use super::{Ctx, no_more, refused, split_first, usage_error};
use crate::config::Level;
use crate::error::{CommandError, UserError};
use crate::incident::model::{IncidentRef, Severity, State};
use crate::incident::store::{self as db, Change};
use crate::origin::Reply;

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
            return Err(refused(&mut ctx.tx, i.id, "change the severity of").await);
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
        Ok(Reply::new(format!("#{} is now {to}.", i.id)))
    }
}
