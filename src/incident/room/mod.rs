//! Dedicated incident channels ("rooms"). For the severities configured in
//! `[incidents] dedicated_channel`, declaring (or raising the severity to
//! one of them) queues a `create` step in the outbox, behind the root
//! message in the incident channel and under the incident's order key.
//! The outbox runs it through `steps::Steps`: it creates the channel once
//! (the id is stored by a conditional update, and a retry looks there
//! first), then queues the invitations, topic, bookmarks and the updated
//! root. Messages meant for the room (`Outgoing::to_room`) wait behind the
//! create step and are routed at delivery; if the room cannot be made they
//! go to the incident's thread, and the declarer is told once.
//!
//! Resolving schedules the archive (`archive_at`, persisted; `archive`
//! polls it), reopening cancels it, even once queued (the archive step
//! checks the incident is still resolved right before each call). Pins and
//! the configured reaction add a message to the timeline once (`pins`).

pub mod adopt;
pub mod archive;
pub mod pins;
pub mod steps;
pub mod upkeep;

use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

use super::model::Incident;
use crate::config::IncidentsConfig;
use crate::outbox;
use crate::slack::ids::ChannelId;

/// How many names a create step tries (`name`, `name-2` … `name-9`) before
/// it gives up on `name_taken`.
pub const NAME_ATTEMPTS: usize = 9;

/// One outbox room step, stored as the row's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    Create,
    /// The declarer, the commander and the severity's responders.
    Invite,
    /// Whom a post in the room is about to ping (user and group ids): an
    /// escalation's targets, who would not be notified outside the room.
    Summon {
        subjects: Vec<String>,
    },
    /// An invite or summon under way (stored in its row when Slack asks it
    /// to wait): the users left to invite and those Slack refused so far.
    Inviting {
        users: Vec<String>,
        #[serde(default)]
        refused: Vec<(String, String)>,
    },
    /// Set from the incident as it is when the step runs.
    Topic,
    Bookmarks,
    /// `channel` set: archive that channel (one made by a replica that lost
    /// the race to store its id); else the incident's room.
    Archive {
        #[serde(default)]
        channel: Option<String>,
    },
}

impl Step {
    pub fn payload(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a step serializes")
    }
}

/// Queue `step` for the incident's room in the caller's transaction.
pub async fn queue(
    conn: &mut AnyConnection,
    i: &Incident,
    step: Step,
    notify_url: Option<&str>,
    now: i64,
) -> anyhow::Result<()> {
    let channel = ChannelId::parse(&i.channel).map_err(|e| anyhow::anyhow!("stored channel: {e}"))?;
    outbox::enqueue_step(conn, i.id, &channel, &step.payload(), notify_url, now).await
}

/// Mark an incident as wanting a room (its create step is queued next,
/// after the messages that must precede it). Only called for severities
/// that want one, so a thread incident pays nothing.
pub async fn mark_pending(conn: &mut AnyConnection, i: &mut Incident) -> anyhow::Result<()> {
    sqlx::query("UPDATE incidents SET room_state = 'pending' WHERE id = $1 AND room_state IS NULL")
        .bind(i.id)
        .execute(&mut *conn)
        .await?;
    i.room_state = Some("pending".into());
    Ok(())
}

/// The incident whose room `channel` is, if any (resolved ones too: the
/// room outlives the resolve until it is archived, and `reopen` is typed there).
pub async fn incident_in_room(conn: &mut AnyConnection, channel: &str) -> anyhow::Result<Option<i64>> {
    let id: Option<i64> =
        sqlx::query_scalar("SELECT id FROM incidents WHERE room_channel = $1 ORDER BY id DESC LIMIT 1")
            .bind(channel)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(id)
}

/// The incident a command typed in `channel` is about: the newest open one
/// declared there, else the one whose room `channel` is.
pub async fn incident_for_channel(conn: &mut AnyConnection, channel: &str) -> anyhow::Result<Option<Incident>> {
    if let Some(i) = crate::incident::store::newest_open_in_channel(conn, channel).await? {
        return Ok(Some(i));
    }
    match incident_in_room(conn, channel).await? {
        Some(id) => crate::incident::store::get(conn, id).await,
        None => Ok(None),
    }
}

/// The channel name for incident `number` titled `title`, from the
/// template: `{slug}` becomes the title in lowercase letters and digits
/// joined by `-`, cut so the name fits Slack's 80 characters with room for
/// a `-9` suffix.
pub fn channel_name(config: &IncidentsConfig, number: i64, title: &str) -> String {
    let with_number = config.channel_name.replace("{number}", &number.to_string());
    let fixed = with_number.replace("{slug}", "").chars().count();
    let room = crate::config::CHANNEL_NAME_MAX.saturating_sub(fixed + 2);
    let slug = slug(title, room);
    let name = with_number.replace("{slug}", &slug);
    // An empty slug must not leave `inc-42-` behind.
    name.trim_matches(|c| c == '-' || c == '_').to_string()
}

/// The `n`th name tried for a room (1 is the plain name).
pub fn nth_name(base: &str, n: usize) -> String {
    if n <= 1 {
        base.to_string()
    } else {
        format!("{base}-{n}")
    }
}

fn slug(title: &str, max: usize) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
        if out.chars().count() >= max {
            break;
        }
    }
    out.chars()
        .take(max)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_template_and_slacks_rules() {
        let c = IncidentsConfig::default();
        assert_eq!(channel_name(&c, 42, "Checkout 502s!"), "inc-42-checkout-502s");
        assert_eq!(channel_name(&c, 7, "  DB <down> — *now*  "), "inc-7-db-down-now");
        assert_eq!(channel_name(&c, 7, "💥💥"), "inc-7");
        let long = channel_name(&c, 123_456, &"word ".repeat(40));
        assert!(long.chars().count() <= 78, "{long}");
        assert!(
            long.starts_with("inc-123456-word-word") && !long.ends_with('-'),
            "{long}"
        );
        assert!(
            long.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        );
        assert_eq!(nth_name("inc-1-x", 1), "inc-1-x");
        assert_eq!(nth_name("inc-1-x", 3), "inc-1-x-3");
    }

    #[test]
    fn steps_round_trip_as_payloads() {
        for s in [
            Step::Create,
            Step::Invite,
            Step::Summon {
                subjects: vec!["U1".into(), "S1".into()],
            },
            Step::Inviting {
                users: vec!["U2".into()],
                refused: vec![("U3".into(), "user_is_inactive".into())],
            },
            Step::Topic,
            Step::Bookmarks,
            Step::Archive { channel: None },
            Step::Archive {
                channel: Some("C1".into()),
            },
        ] {
            let back: Step = serde_json::from_value(s.payload()).unwrap();
            assert_eq!(back, s);
        }
        assert_eq!(Step::Create.payload().to_string(), r#"{"step":"create"}"#);
    }
}
