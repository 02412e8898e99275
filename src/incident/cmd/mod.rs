//! `/incident` and its subcommands. Each subcommand has one home here, in
//! the style of mini-redis' `cmd/`: its grammar, the level it needs and its
//! behaviour live together in one file; this module only splits the verb
//! off, routes, and runs each subcommand in one state-store transaction (the
//! conditional change, its timeline event and its outbox rows commit
//! together or not at all).

mod ack;
mod assign;
mod console;
mod declare;
mod list;
mod reopen;
mod resolve;
mod sev;
mod status;
mod timeline;

pub use ack::Ack;
pub use assign::Assign;
pub use console::Console;
pub use declare::{Declare, NewIncident, declare};
pub use list::List;
pub use reopen::Reopen;
pub use resolve::Resolve;
pub use sev::Sev;
pub use status::Status;
pub use timeline::Timeline;

use slack_morphism::prelude::SlackMessageContent;
use sqlx::AnyConnection;

use super::model::{Incident, IncidentRef, State};
use super::render;
use super::room;
use super::store as db;
use crate::config::Level;
use crate::error::{CommandError, UserError};
use crate::origin::{Origin, Reply};
use crate::outbox::{self, Outgoing};
use crate::slack::ids::ChannelId;
use crate::slack::text::escape;
use crate::state::AppState;
use crate::store::group::LazyPersonTx;

pub const TITLE_MAX: usize = 140;
pub const TEXT_MAX: usize = 2000;

pub const USAGE: &str = "*Usage:* `/incident p0|p1|p2|p3 <title>` declares an incident.\n\
In an incident's channel (or with `#id`):\n\
• `/incident ack [#id]` — acknowledge\n\
• `/incident status [#id] <text>` — post a status update\n\
• `/incident sev [#id] p0|p1|p2|p3` — change severity\n\
• `/incident assign [#id] @person` — hand over the commander role\n\
• `/incident resolve [#id] [summary]` — resolve, with timeline, postmortem and status-page drafts\n\
• `/incident reopen [#id]` — reopen a resolved incident (and keep its channel)\n\
• `/incident list` — open incidents\n\
• `/incident timeline [#id]` — everything that happened\n\
• `/incident console` — a one-time sign-in link to the incident console (in a browser)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentCmd {
    Declare(Declare),
    Ack(Ack),
    Status(Status),
    Sev(Sev),
    Assign(Assign),
    Resolve(Resolve),
    Reopen(Reopen),
    List(List),
    Timeline(Timeline),
    Console(Console),
}

impl IncidentCmd {
    /// Parse the text after `/incident`; `Ok(None)` is a request for help.
    pub fn parse(text: &str) -> Result<Option<IncidentCmd>, UserError> {
        let (verb, rest) = split_first(text.trim());
        let verb_lc = verb.to_ascii_lowercase();
        if verb.is_empty() || verb_lc == "help" {
            return Ok(None);
        }
        if let Ok(severity) = crate::severity::Severity::parse(&verb_lc) {
            return Declare::parse(severity, &verb_lc, rest).map(|d| Some(IncidentCmd::Declare(d)));
        }
        let (target, rest) = take_ref(rest)?;
        let cmd = match verb_lc.as_str() {
            "ack" | "acknowledge" => IncidentCmd::Ack(Ack::parse(target, &verb_lc, rest)?),
            "status" | "update" => IncidentCmd::Status(Status::parse(target, rest)?),
            "sev" | "severity" => IncidentCmd::Sev(Sev::parse(target, &verb_lc, rest)?),
            "assign" => IncidentCmd::Assign(Assign::parse(target, &verb_lc, rest)?),
            "resolve" => IncidentCmd::Resolve(Resolve::parse(target, rest)?),
            "reopen" => IncidentCmd::Reopen(Reopen::parse(target, &verb_lc, rest)?),
            "list" => IncidentCmd::List(List::parse(target, &verb_lc, rest)?),
            "timeline" => IncidentCmd::Timeline(Timeline::parse(target, &verb_lc, rest)?),
            "console" => IncidentCmd::Console(Console::parse(target, &verb_lc, rest)?),
            _ => return Err(usage_error(format!("Unknown subcommand `{}`.", shown(verb)))),
        };
        Ok(Some(cmd))
    }

    /// The incident buttons run the same subcommands, under the same rules.
    pub fn from_button(action_id: &str, incident_id: i64) -> Option<IncidentCmd> {
        let target = Some(IncidentRef(incident_id));
        match action_id {
            render::ACTION_ACK => Some(IncidentCmd::Ack(Ack { target })),
            render::ACTION_RESOLVE => Some(IncidentCmd::Resolve(Resolve { target, summary: None })),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            IncidentCmd::Declare(_) => Declare::NAME,
            IncidentCmd::Ack(_) => Ack::NAME,
            IncidentCmd::Status(_) => Status::NAME,
            IncidentCmd::Sev(_) => Sev::NAME,
            IncidentCmd::Assign(_) => Assign::NAME,
            IncidentCmd::Resolve(_) => Resolve::NAME,
            IncidentCmd::Reopen(_) => Reopen::NAME,
            IncidentCmd::List(_) => List::NAME,
            IncidentCmd::Timeline(_) => Timeline::NAME,
            IncidentCmd::Console(_) => Console::NAME,
        }
    }

    /// The level the subcommand needs.
    pub fn level(&self) -> Level {
        match self {
            IncidentCmd::Declare(_) => Declare::LEVEL,
            IncidentCmd::Ack(_) => Ack::LEVEL,
            IncidentCmd::Status(_) => Status::LEVEL,
            IncidentCmd::Sev(_) => Sev::LEVEL,
            IncidentCmd::Assign(_) => Assign::LEVEL,
            IncidentCmd::Resolve(_) => Resolve::LEVEL,
            IncidentCmd::Reopen(_) => Reopen::LEVEL,
            IncidentCmd::List(_) => List::LEVEL,
            IncidentCmd::Timeline(_) => Timeline::LEVEL,
            IncidentCmd::Console(_) => Console::LEVEL,
        }
    }

    /// Run in one transaction; commit (and wake the outbox) only on success.
    pub async fn run(self, state: &AppState, origin: &Origin) -> Result<Reply, CommandError> {
        let mut ctx = Ctx {
            tx: state.store.begin_for_person_lazy().await?,
            state,
            origin,
            now: state.clock.now_ms(),
        };
        let reply = match self {
            IncidentCmd::Declare(c) => c.run(&mut ctx).await?,
            IncidentCmd::Ack(c) => c.run(&mut ctx).await?,
            IncidentCmd::Status(c) => c.run(&mut ctx).await?,
            IncidentCmd::Sev(c) => c.run(&mut ctx).await?,
            IncidentCmd::Assign(c) => c.run(&mut ctx).await?,
            IncidentCmd::Resolve(c) => c.run(&mut ctx).await?,
            IncidentCmd::Reopen(c) => c.run(&mut ctx).await?,
            IncidentCmd::List(c) => c.run(&mut ctx).await?,
            IncidentCmd::Timeline(c) => c.run(&mut ctx).await?,
            IncidentCmd::Console(c) => c.run(&mut ctx).await?,
        };
        state.outbox.commit_person(ctx.tx.ready().await?).await?;
        Ok(reply)
    }
}

/// What every subcommand runs with: its transaction, the state, who asked, when.
pub struct Ctx<'a> {
    /// Statements go through `tx.conn()`; the conditional change
    /// (`db::apply`), often the first, carries the transaction's prelude.
    pub tx: LazyPersonTx,
    pub state: &'a AppState,
    pub origin: &'a Origin,
    pub now: i64,
}

impl Ctx<'_> {
    pub fn user(&self) -> &str {
        self.origin.user.as_str()
    }

    /// `#id` if given, else the newest open incident of the channel the
    /// command came from.
    async fn find(&mut self, target: Option<IncidentRef>) -> Result<Incident, CommandError> {
        let found = self.find_any(target).await?;
        crate::telemetry::record_incident(found.id);
        Ok(found)
    }

    async fn find_any(&mut self, target: Option<IncidentRef>) -> Result<Incident, CommandError> {
        match target {
            Some(r) => db::get(self.tx.conn().await?, r.0)
                .await?
                .ok_or_else(|| no_incident(r.0).into()),
            // In an incident's own channel, that incident.
            None => room::incident_for_channel(self.tx.conn().await?, self.origin.channel.as_str())
                .await?
                .ok_or_else(|| {
                    UserError::new(
                        "There is no open incident in this channel. Name one with `#id` (see `/incident list`).",
                    )
                    .into()
                }),
        }
    }

    /// The incident a change names: `#id` as typed (the conditional change
    /// itself finds out whether it exists), else the newest open incident of
    /// the channel the command came from.
    async fn target_id(&mut self, target: Option<IncidentRef>) -> Result<i64, CommandError> {
        let id = match target {
            Some(r) => r.0,
            None => self.find_any(None).await?.id,
        };
        crate::telemetry::record_incident(id);
        Ok(id)
    }

    /// Record a change to `i` (as it is after the change): timeline event,
    /// thread reply, root update.
    async fn changed(&mut self, i: &Incident, kind: &str, event: &str, reply: String) -> Result<(), CommandError> {
        let channel = channel_of(i)?;
        let msgs = [
            conversation(i, &channel, render::reply(reply)),
            Outgoing::update_root(i.id, &channel, render::root(i, self.now)),
        ];
        let noted = outbox::Noted {
            incident_id: i.id,
            actor: self.origin.user.as_str(),
            kind,
            text: event,
        };
        let notify = self.origin.response_url.as_deref();
        outbox::enqueue_noted(
            self.tx.conn().await?,
            self.state.store.backend,
            noted,
            &msgs,
            notify,
            self.now,
        )
        .await?;
        // The room's topic shows severity, state and commander, not updates
        // (a thread incident pays nothing for it).
        if i.has_room() && kind != "status" {
            room::upkeep::refresh_topic(self.tx.conn().await?, i, self.now).await?;
        }
        Ok(())
    }
}

/// A message in the incident's conversation: its room when it has one (or
/// is getting one), else its thread.
pub fn conversation(i: &Incident, channel: &ChannelId, content: SlackMessageContent) -> Outgoing {
    if i.has_room() {
        Outgoing::to_room(i.id, channel, content)
    } else {
        Outgoing::thread(i.id, channel, content)
    }
}

fn channel_of(i: &Incident) -> anyhow::Result<ChannelId> {
    ChannelId::parse(&i.channel).map_err(|e| anyhow::anyhow!("stored channel: {e}"))
}

/// Why a conditional change did not apply, from the incident as it is now.
async fn refused(conn: &mut AnyConnection, id: i64, verb: &str) -> CommandError {
    match db::get(conn, id).await {
        Ok(Some(now)) => refusal(&now, verb).into(),
        Ok(None) => no_incident(id).into(),
        Err(e) => e.into(),
    }
}

fn no_incident(id: i64) -> UserError {
    UserError::new(format!("There is no incident #{id}. See `/incident list`."))
}

fn refusal(i: &Incident, verb: &str) -> UserError {
    match i.state {
        State::Resolved => UserError::new(format!(
            "#{} is already resolved; nothing to {verb}. `/incident reopen #{}` if it is back.",
            i.id, i.id
        )),
        State::Acknowledged => UserError::new(format!(
            "#{} was already acknowledged by {}.",
            i.id,
            i.acknowledged_by
                .as_deref()
                .map(|u| format!("<@{u}>"))
                .unwrap_or_default()
        )),
        State::Declared => UserError::new(format!("#{} changed while you were typing; try again.", i.id)),
    }
}

fn usage_error(what: String) -> UserError {
    UserError::new(format!("{what}\n{USAGE}"))
}

fn shown(s: &str) -> String {
    escape(&s.chars().take(30).collect::<String>())
}

fn split_first(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

fn take_ref(s: &str) -> Result<(Option<IncidentRef>, &str), UserError> {
    let (first, rest) = split_first(s);
    match IncidentRef::parse(first).map_err(|e| usage_error(e.0))? {
        Some(r) => Ok((Some(r), rest)),
        None => Ok((None, s.trim())),
    }
}

fn no_more(verb: &str, rest: &str) -> Result<(), UserError> {
    if rest.trim().is_empty() {
        Ok(())
    } else {
        Err(usage_error(format!(
            "`/incident {verb}` does not take `{}`.",
            shown(rest.trim())
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::severity::Severity;
    use crate::slack::ids::UserId;

    fn inc(text: &str) -> IncidentCmd {
        IncidentCmd::parse(text).unwrap().expect("a subcommand")
    }

    fn err(text: &str) -> String {
        IncidentCmd::parse(text).unwrap_err().0
    }

    #[test]
    fn declares_with_severity_and_title() {
        assert_eq!(
            inc("p1 Login failing"),
            IncidentCmd::Declare(Declare {
                severity: Severity::P1,
                title: "Login failing".into()
            })
        );
        assert_eq!(
            inc("  P0   DB &lt;down&gt;  "),
            IncidentCmd::Declare(Declare {
                severity: Severity::P0,
                title: "DB <down>".into()
            })
        );
    }

    #[test]
    fn subcommands_with_and_without_refs() {
        assert_eq!(inc("ack"), IncidentCmd::Ack(Ack { target: None }));
        assert_eq!(
            inc("ack #12"),
            IncidentCmd::Ack(Ack {
                target: Some(IncidentRef(12))
            })
        );
        assert_eq!(
            inc("status #3 rolling back the deploy"),
            IncidentCmd::Status(Status {
                target: Some(IncidentRef(3)),
                text: "rolling back the deploy".into()
            })
        );
        assert_eq!(
            inc("sev p0"),
            IncidentCmd::Sev(Sev {
                target: None,
                severity: Severity::P0
            })
        );
        assert_eq!(
            inc("assign <@U0BOB|bob>"),
            IncidentCmd::Assign(Assign {
                target: None,
                user: UserId::parse("U0BOB").unwrap()
            })
        );
        assert_eq!(
            inc("resolve"),
            IncidentCmd::Resolve(Resolve {
                target: None,
                summary: None
            })
        );
        assert_eq!(
            inc("resolve #4 bad index"),
            IncidentCmd::Resolve(Resolve {
                target: Some(IncidentRef(4)),
                summary: Some("bad index".into())
            })
        );
        assert_eq!(inc("list"), IncidentCmd::List(List));
        assert_eq!(
            inc("reopen #5"),
            IncidentCmd::Reopen(Reopen {
                target: Some(IncidentRef(5))
            })
        );
        assert_eq!(inc("reopen"), IncidentCmd::Reopen(Reopen { target: None }));
        assert_eq!(
            inc("timeline #9"),
            IncidentCmd::Timeline(Timeline {
                target: Some(IncidentRef(9))
            })
        );
        assert_eq!(IncidentCmd::parse("").unwrap(), None);
        assert_eq!(IncidentCmd::parse("help").unwrap(), None);
    }

    #[test]
    fn bad_arguments_are_named_with_usage() {
        assert!(err("p1").contains("needs a title"));
        assert!(err("p1   ").contains("needs a title"));
        assert!(err(&format!("p1 {}", "x".repeat(200))).contains("keep it under"));
        assert!(err("sev p7").contains("`p7` is not a severity"));
        assert!(err("sev").contains("needs a severity"));
        assert!(err("sev p1 extra").contains("does not take `extra`"));
        assert!(err("assign bob").contains("`bob` is not a Slack user"));
        assert!(err("assign").contains("needs a person"));
        assert!(err("ack #abc").contains("`#abc` is not an incident reference"));
        assert!(err("ack now").contains("does not take `now`"));
        assert!(err("status").contains("needs the update text"));
        assert!(err("frobnicate").contains("Unknown subcommand `frobnicate`"));
        assert!(err("list #3").contains("takes no incident reference"));
        assert!(err("reopen #2 now").contains("does not take `now`"));
        assert!(err("reopen #x").contains("`#x` is not an incident reference"));
        assert!(err("console #3").contains("takes no incident reference"));
        assert!(err("console now").contains("does not take `now`"));
        assert!(err("frobnicate").contains("*Usage:*"));
    }

    #[test]
    fn levels_follow_the_runbooks_ladder() {
        assert_eq!(inc("p1 x").level(), Level::L1);
        assert_eq!(inc("list").level(), Level::L1);
        assert_eq!(inc("timeline").level(), Level::L1);
        assert_eq!(inc("console").level(), Level::L1);
        for l2 in ["ack", "status x", "sev p2", "assign <@U0BOB>", "resolve", "reopen #3"] {
            assert_eq!(inc(l2).level(), Level::L2, "{l2}");
        }
    }

    #[test]
    fn buttons_map_to_the_same_subcommands() {
        assert_eq!(
            IncidentCmd::from_button(render::ACTION_ACK, 7),
            Some(IncidentCmd::Ack(Ack {
                target: Some(IncidentRef(7))
            }))
        );
        assert_eq!(
            IncidentCmd::from_button(render::ACTION_RESOLVE, 7).map(|c| c.name()),
            Some("incident.resolve")
        );
        assert_eq!(IncidentCmd::from_button("approval_approve", 7), None);
    }
}
