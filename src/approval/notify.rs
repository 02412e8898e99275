//! What the approval flow tells Slack: the card (posted once, then updated in
//! place under its own message key) and the thread replies, each written to
//! the outbox in the same transaction as the state change and its audit row.
//! For an incident with a dedicated channel they go there.

use sqlx::AnyConnection;

use super::render;
use super::snapshot::Snapshot;
use super::store::{self, Request, State};
use crate::audit::{self, Event};
use crate::outbox::{self, Outgoing};
use crate::slack::ids::ChannelId;
use crate::slack::text::visible_lines;
use crate::state::AppState;

pub fn card_key(id: i64) -> String {
    format!("approval:{id}")
}

/// Where the request's messages go: the incident thread, or the channel.
fn channel(r: &Request) -> anyhow::Result<ChannelId> {
    ChannelId::parse(&r.channel).map_err(|e| anyhow::anyhow!("stored channel: {e}"))
}

/// An incident's conversation: its dedicated channel when it has one
/// (resolved when delivered, so a room made after the request is used),
/// else its thread.
fn thread_key(r: &Request) -> Option<String> {
    r.incident_id.map(crate::outbox::room_thread_key)
}

/// A reply where the request's other replies go: the incident's thread, or
/// under the card when there is no incident.
pub async fn reply(conn: &mut AnyConnection, state: &AppState, r: &Request, text: String) -> anyhow::Result<()> {
    let ch = channel(r)?;
    let thread = thread_key(r).unwrap_or_else(|| card_key(r.id));
    let msg = Outgoing::post_keyed(&ch, Some(thread), None, crate::incident::render::reply(text));
    outbox::enqueue(conn, &[msg], None, state.clock.now_ms()).await
}

/// Queue the card's current look plus an optional thread reply.
pub async fn card_and_reply(
    conn: &mut AnyConnection,
    state: &AppState,
    id: i64,
    reply: Option<String>,
    notify_url: Option<&str>,
) -> anyhow::Result<()> {
    let r = store::get(conn, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("request {id} vanished"))?;
    let votes = store::votes(conn, id).await?;
    let ch = channel(&r)?;
    let now = state.clock.now_ms();
    let mut msgs = vec![Outgoing::update(&ch, &card_key(id), render::card(&r, &votes, now))];
    if let Some(text) = reply {
        msgs.push(Outgoing::post_keyed(
            &ch,
            thread_key(&r),
            None,
            crate::incident::render::reply(text),
        ));
    }
    outbox::enqueue(conn, &msgs, notify_url, now).await
}

/// The first post of a new request's card, preceded in the thread by its
/// rollback script in full: every line that will run is visible to the
/// approver, however long the script is.
pub async fn new_card(
    conn: &mut AnyConnection,
    state: &AppState,
    r: &Request,
    snapshot: &Snapshot,
    notify_url: Option<&str>,
) -> anyhow::Result<()> {
    let ch = channel(r)?;
    let now = state.clock.now_ms();
    let mut msgs: Vec<Outgoing> = match &snapshot.script {
        Some(script) => render::script_messages(r.id, script)
            .into_iter()
            .map(|m| Outgoing::post_keyed(&ch, thread_key(r), None, m))
            .collect(),
        None => Vec::new(),
    };
    msgs.push(Outgoing::post_keyed(
        &ch,
        thread_key(r),
        Some(card_key(r.id)),
        render::card(r, &[], now),
    ));
    outbox::enqueue(conn, &msgs, notify_url, now).await
}

/// Record an action's end: state, audit, result in the thread, card.
pub async fn finished(state: &AppState, r: &Request, to: State, text: &str) -> anyhow::Result<()> {
    let now = state.clock.now_ms();
    let mut tx = state.store.begin().await?;
    // False when the worker already reported it interrupted: the true outcome
    // is still recorded and posted, marked as late, without rewriting state.
    let on_time = store::finish(&mut tx, r.id, to, text, now).await?;
    if !on_time {
        tracing::warn!(
            request.id = r.id,
            "an action's result arrived after it was reported interrupted"
        );
    }
    let kind = match (on_time, to) {
        (false, _) => "action_result_late",
        (_, State::Applied) => "action_applied",
        (_, State::RolledBack) => "action_rolled_back",
        _ => "action_failed",
    };
    let detail = format!("{} → {}: {text}", r.label(), to.as_str());
    audit::record(&mut tx, Event::bot(kind, &detail).about(Some(r.id), r.incident_id), now).await?;
    let undo = match (to, undo_of(r)) {
        (State::Applied, Some(u)) => format!("\nTo reverse it: `{u}`"),
        _ => String::new(),
    };
    let late = if on_time {
        ""
    } else {
        " (this result arrived after the request was reported interrupted)"
    };
    // Late or not, an applied action's follow-up is due: a result that
    // arrives after the request was reported interrupted still schedules it
    // (once; scheduling is idempotent).
    let scheduled = match to {
        State::Applied => scheduled_followup(&mut tx, r, now).await?,
        _ => String::new(),
    };
    let reply = format!(
        "{} {} {}: {}{undo}{scheduled}{late}",
        render::emoji(to),
        r.label_md(),
        render::state_words(to),
        crate::slack::text::escape_entities(&visible_lines(text))
    );
    card_and_reply(&mut tx, state, r.id, Some(reply), None).await?;
    state.outbox.commit(tx).await?;
    if on_time {
        state.metrics.approval(to.as_str());
    }
    Ok(())
}

/// Schedule the follow-up an applied action declares (the GDPR hard delete),
/// in the transaction that records it applied; what the thread is told.
async fn scheduled_followup(conn: &mut AnyConnection, r: &Request, now: i64) -> anyhow::Result<String> {
    Ok(match crate::approval::followup::schedule_for(conn, r, now).await? {
        Some((id, due_at)) => format!(
            "\nScheduled follow-up #{id} for {} (`/scheduled cancel {id}` stops it).",
            crate::incident::render::utc(due_at)
        ),
        None => String::new(),
    })
}

/// How to reverse an applied action, from the definition that ran.
fn undo_of(r: &Request) -> Option<String> {
    let snapshot: Snapshot = serde_json::from_str(r.snapshot.as_deref()?).ok()?;
    snapshot.def.undo
}
