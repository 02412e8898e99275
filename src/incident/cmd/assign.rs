//! `/incident assign [#id] @person`: hand over the commander role.

use super::{Ctx, no_more, refused, shown, split_first, usage_error};
use crate::config::Level;
use crate::error::{CommandError, UserError};
use crate::incident::model::IncidentRef;
use crate::incident::store::{self as db, Change};
use crate::origin::Reply;
use crate::slack::ids::{UserId, parse_user_mention};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assign {
    pub target: Option<IncidentRef>,
    pub user: UserId,
}

impl Assign {
    pub const NAME: &str = "incident.assign";
    pub const LEVEL: Level = Level::L2;

    pub fn parse(target: Option<IncidentRef>, verb: &str, rest: &str) -> Result<Self, UserError> {
        let (m, more) = split_first(rest);
        if m.is_empty() {
            return Err(usage_error(
                "`/incident assign` needs a person: `/incident assign @name`.".into(),
            ));
        }
        let user = parse_user_mention(m).map_err(|_| {
            usage_error(format!(
                "`{}` is not a Slack user: pick the person from the @-autocomplete.",
                shown(m)
            ))
        })?;
        no_more(verb, more)?;
        Ok(Assign { target, user })
    }

    pub async fn run(self, ctx: &mut Ctx<'_>) -> Result<Reply, CommandError> {
        let to = self.user;
        let i = ctx.find(self.target).await?;
        let Some(changed) = db::apply(&mut ctx.tx, i.id, Change::Assign { commander: to.as_str() }, ctx.now).await?
        else {
            return Err(refused(ctx.tx.conn().await?, i.id, "reassign").await);
        };
        let reply = format!(
            ":bust_in_silhouette: {} is now the commander of #{} (handed over by <@{}>).",
            to.mention(),
            i.id,
            ctx.user()
        );
        ctx.changed(&changed, "assigned", &format!("Commander → {}", to.mention()), reply)
            .await?;
        Ok(Reply::new(format!("{} now commands #{}.", to.mention(), i.id)))
    }
}
