//! The steps after a room is made: invitations, topic, bookmarks and the
//! archive. None of them can lose the incident, so a refusal from Slack is
//! a warning on the timeline (and, for people who could not be invited, a
//! message in the room), never a failure; rate limits and outages retry.

use std::collections::BTreeSet;

use slack_morphism::errors::{SlackClientApiError, SlackClientError};
use slack_morphism::prelude::*;

use super::Step;
use super::steps::{Answer, Budget, GO_ON, Steps, TRANSIENT};
use crate::incident::model::{Incident, Room};
use crate::incident::{render, store as db};
use crate::outbox::{self, OutboxRow, Outcome, Outgoing};
use crate::slack::ids::{ChannelId, RoleSubject};

/// `conversations.invite` takes at most 1000 users per call.
const INVITE_BATCH: usize = 1000;

/// Errors that concern the whole room, not one invitee: inviting people one
/// by one would only repeat them.
const ROOM_ERRORS: &[&str] = &[
    "missing_scope",
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "restricted_action",
    "not_authed",
    "invalid_auth",
    "no_permission",
    "not_allowed_token_type",
];

/// How one `conversations.invite` call ended.
enum Invited {
    /// Done; these users were refused, with Slack's reason.
    Done(Vec<(String, String)>),
    /// Nobody can be invited to this room (`ROOM_ERRORS`).
    RoomRefused(String),
    Later(Outcome),
}

/// Who Slack refused in a forced invite that answered `ok: false`: its
/// per-user `errors`, or, without them, everyone in the call. Someone
/// already in the channel is where they should be.
fn refusals(api: &SlackClientApiError, users: &[String]) -> Vec<(String, String)> {
    let body: serde_json::Value = api
        .http_response_body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or_default();
    let listed: Vec<(String, String)> = match body["errors"].as_array() {
        Some(errors) => errors
            .iter()
            .filter_map(|e| Some((e["user"].as_str()?.to_string(), e["error"].as_str()?.to_string())))
            .collect(),
        None => users.iter().map(|u| (u.clone(), api.code.clone())).collect(),
    };
    listed
        .into_iter()
        .filter(|(_, code)| code != "already_in_channel")
        .collect()
}

impl Steps {
    /// Everyone who should be in the room: the declarer, the commander and
    /// the severity's responders (user groups expanded).
    pub(super) async fn invitees(&self, i: &Incident) -> Vec<String> {
        let mut users = BTreeSet::new();
        for who in [&i.declared_by, &i.commander] {
            if who != "bot" {
                users.insert(who.clone());
            }
        }
        let responders = self.state.config.incidents.responders_for(i.severity);
        self.add_subjects(responders.iter().cloned(), &mut users).await;
        users.into_iter().collect()
    }

    /// Users and groups (by id) as the users to invite.
    pub(super) async fn expand(&self, ids: &[String]) -> Vec<String> {
        let mut users = BTreeSet::new();
        let subjects = ids.iter().filter_map(|id| RoleSubject::parse(id).ok());
        self.add_subjects(subjects, &mut users).await;
        users.into_iter().collect()
    }

    async fn add_subjects(&self, subjects: impl Iterator<Item = RoleSubject>, users: &mut BTreeSet<String>) {
        for subject in subjects {
            match subject {
                RoleSubject::User(u) => {
                    users.insert(u.as_str().to_string());
                }
                RoleSubject::Group(g) => {
                    let members = self.state.roles.group_members(&self.state.slack, g.as_str()).await;
                    users.extend(members);
                }
            }
        }
    }

    /// Invite `todo` in batches. With `force`, Slack invites the valid
    /// users of a batch and lists the others (`errors`), so one inactive
    /// user or one already in does not stop the rest. When Slack asks to
    /// wait, what is left is stored in the row, and the retry resumes there.
    pub(super) async fn invite(
        &self,
        row: &OutboxRow,
        i: &Incident,
        mut todo: Vec<String>,
        mut refused: Vec<(String, String)>,
        budget: Budget,
    ) -> anyhow::Result<Outcome> {
        let Room::Made(room) = i.room() else {
            return Ok(Outcome::Sent(None));
        };
        let mut calls = 0;
        while !todo.is_empty() {
            if calls > 0 && budget.spent() {
                let left = Step::Inviting { users: todo, refused };
                outbox::save_step(&self.state.store, row.id, &left.payload()).await?;
                return Ok(GO_ON);
            }
            calls += 1;
            let n = todo.len().min(INVITE_BATCH);
            match self.invite_some(row, &room, &todo[..n]).await {
                Invited::Later(outcome) => {
                    let left = Step::Inviting { users: todo, refused };
                    outbox::save_step(&self.state.store, row.id, &left.payload()).await?;
                    return Ok(outcome);
                }
                Invited::Done(mut no) => refused.append(&mut no),
                Invited::RoomRefused(code) => {
                    refused.extend(todo.drain(..).map(|u| (u, code.clone())));
                    break;
                }
            }
            todo.drain(..n);
        }
        if !refused.is_empty() {
            self.report_refused(i, &refused).await?;
        }
        Ok(Outcome::Sent(None))
    }

    async fn invite_some(&self, row: &OutboxRow, room: &str, users: &[String]) -> Invited {
        let req = serde_json::json!({"channel": room, "users": users.join(","), "force": true});
        let e = match self.post("conversations.invite", &req).await {
            Ok(_) => return Invited::Done(Vec::new()),
            Err(e) => e,
        };
        if let Some(SlackClientError::ApiError(api)) = &e
            && !TRANSIENT.contains(&api.code.as_str())
        {
            if ROOM_ERRORS.contains(&api.code.as_str()) {
                return Invited::RoomRefused(api.code.clone());
            }
            return Invited::Done(refusals(api, users));
        }
        match self.sort(row, e) {
            Answer::Later(outcome) => Invited::Later(outcome),
            Answer::No(code) => Invited::Done(users.iter().map(|u| (u.clone(), code.clone())).collect()),
            Answer::Ok(_) => Invited::Done(Vec::new()),
        }
    }

    async fn report_refused(&self, i: &Incident, refused: &[(String, String)]) -> anyhow::Result<()> {
        let now = self.state.clock.now_ms();
        let list = refused
            .iter()
            .map(|(u, code)| format!("<@{u}> (`{}`)", code.replace('`', "'")))
            .collect::<Vec<_>>()
            .join(", ");
        let channel = ChannelId::parse(&i.channel).map_err(|e| anyhow::anyhow!("stored channel: {e}"))?;
        let text = format!(
            ":warning: I could not invite {list}. Everyone else is in; invite them by hand if they should be here."
        );
        let mut tx = self.state.store.begin_in_background().await?;
        outbox::enqueue(
            &mut tx,
            &[Outgoing::to_room(i.id, &channel, render::reply(text))],
            None,
            now,
        )
        .await?;
        let who: Vec<&str> = refused.iter().map(|(u, _)| u.as_str()).collect();
        let event = format!("Could not invite to the incident channel: {}", who.join(", "));
        db::add_event(&mut tx, i.id, now, "bot", "room_warning", &event).await?;
        self.state.outbox.commit(tx).await?;
        Ok(())
    }

    pub(super) async fn topic(&self, row: &OutboxRow, i: &Incident) -> anyhow::Result<Outcome> {
        let Room::Made(room) = i.room() else {
            return Ok(Outcome::Sent(None));
        };
        let req = SlackApiConversationsSetTopicRequest::new(SlackChannelId::new(room), render::topic(i));
        self.warn_unless_done(row, i, "conversations.setTopic", &req, "set the topic")
            .await
    }

    pub(super) async fn bookmarks(&self, row: &OutboxRow, i: &Incident) -> anyhow::Result<Outcome> {
        let Room::Made(room) = i.room() else {
            return Ok(Outcome::Sent(None));
        };
        let config = &self.state.config.incidents;
        let links = [
            ("Runbook", &config.runbook_url),
            ("Status page", &config.status_page_url),
        ];
        for (title, link) in links {
            let Some(link) = link else { continue };
            // slack-morphism has no bookmarks API: the same client, its generic post.
            let req = serde_json::json!({"channel_id": room, "title": title, "type": "link", "link": link});
            match self
                .warn_unless_done(row, i, "bookmarks.add", &req, "add a bookmark")
                .await?
            {
                Outcome::Sent(_) => {}
                later => return Ok(later),
            }
        }
        Ok(Outcome::Sent(None))
    }

    pub(super) async fn archive(
        &self,
        row: &OutboxRow,
        i: &Incident,
        stray: Option<String>,
    ) -> anyhow::Result<Outcome> {
        let room = match (stray.clone(), i.room()) {
            (Some(c), _) | (None, Room::Made(c)) => c,
            _ => return Ok(Outcome::Sent(None)),
        };
        if stray.is_none() && !self.still_resolved(i).await? {
            tracing::info!(incident.id = i.id, "incident reopened; its room is not archived");
            return Ok(Outcome::Sent(None));
        }
        let req = SlackApiConversationsArchiveRequest::new(SlackChannelId::new(room));
        match self.call(row, "conversations.archive", &req).await {
            Answer::Later(outcome) => Ok(outcome),
            Answer::Ok(_) if stray.is_none() => {
                self.archived(i).await?;
                Ok(Outcome::Sent(None))
            }
            Answer::Ok(_) => Ok(Outcome::Sent(None)),
            Answer::No(code) if code == "already_archived" && stray.is_none() => {
                self.archived(i).await?;
                Ok(Outcome::Sent(None))
            }
            Answer::No(code) if code == "already_archived" => Ok(Outcome::Sent(None)),
            Answer::No(code) => {
                self.note(
                    i,
                    "room_warning",
                    &format!("Could not archive the incident channel ({code})"),
                )
                .await?;
                Ok(Outcome::Sent(None))
            }
        }
    }

    /// Checked right before each call to archive (a retry after a 429
    /// included): a reopen since the archive was queued cancels it, and so
    /// does a new resolve (it scheduled an archive of its own, `archive_at`
    /// set again). One conditional statement on the writer, so it sees the
    /// latest reopen.
    async fn still_resolved(&self, i: &Incident) -> anyhow::Result<bool> {
        let n = sqlx::query(
            "UPDATE incidents SET archive_at = NULL
             WHERE id = $1 AND state = 'resolved' AND room_state = 'made' AND archive_at IS NULL",
        )
        .bind(i.id)
        .execute(&self.state.store.writer)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Make a call whose refusal is only a warning on the timeline.
    async fn warn_unless_done(
        &self,
        row: &OutboxRow,
        i: &Incident,
        method: &str,
        req: &(impl serde::Serialize + Send + Sync),
        what: &str,
    ) -> anyhow::Result<Outcome> {
        match self.call(row, method, req).await {
            Answer::Ok(_) => Ok(Outcome::Sent(None)),
            Answer::Later(outcome) => Ok(outcome),
            Answer::No(code) => {
                self.note(
                    i,
                    "room_warning",
                    &format!("Could not {what} of the incident channel ({code})"),
                )
                .await?;
                Ok(Outcome::Sent(None))
            }
        }
    }

    /// From now on what is meant for the room goes to the thread (a reopened
    /// incident goes on there); the root says the channel is archived.
    async fn archived(&self, i: &Incident) -> anyhow::Result<()> {
        let now = self.state.clock.now_ms();
        let mut tx = self.state.store.begin_in_background().await?;
        sqlx::query("UPDATE incidents SET room_state = 'archived' WHERE id = $1 AND room_state = 'made'")
            .bind(i.id)
            .execute(&mut *tx)
            .await?;
        let i = db::get(&mut tx, i.id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("incident vanished"))?;
        let channel = ChannelId::parse(&i.channel).map_err(|e| anyhow::anyhow!("stored channel: {e}"))?;
        let root = Outgoing::update_root(i.id, &channel, render::root(&i, now));
        outbox::enqueue(&mut tx, &[root], None, now).await?;
        db::add_event(&mut tx, i.id, now, "bot", "room", "Incident channel archived").await?;
        self.state.outbox.commit(tx).await?;
        Ok(())
    }

    async fn note(&self, i: &Incident, kind: &str, text: &str) -> anyhow::Result<()> {
        let mut tx = self.state.store.begin_in_background().await?;
        db::add_event(&mut tx, i.id, self.state.clock.now_ms(), "bot", kind, text).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Queue a topic refresh for an incident with a room (after a change of
/// severity, status or commander, and on resolve and reopen).
pub async fn refresh_topic(conn: &mut sqlx::AnyConnection, i: &Incident, now: i64) -> anyhow::Result<()> {
    if matches!(i.room(), Room::Made(_) | Room::Pending) {
        super::queue(conn, i, Step::Topic, None, now).await?;
    }
    Ok(())
}
