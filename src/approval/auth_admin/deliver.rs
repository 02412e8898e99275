//! Where a recovery link goes: to the requester only, as a direct message
//! through the outbox (so a rate-limited Slack delays it instead of losing
//! it), in a row marked sensitive, whose payload is replaced once delivered
//! or given up. The same state-store transaction tells the thread and the
//! audit log that a link was generated and sent privately, without the link.

use secrecy::{ExposeSecret, SecretString};
use slack_morphism::prelude::*;

use crate::approval::store::Request;
use crate::audit::{self, Event};
use crate::outbox::{self, Outgoing};
use crate::slack::ids::{ChannelId, UserId};
use crate::slack::text::{escape_entities, visible};
use crate::state::AppState;

/// What the result and the audit say; never the link.
pub fn sent_words(email: &str, requester: &UserId) -> String {
    said(&visible(email), requester)
}

fn said(email: &str, requester: &UserId) -> String {
    format!(
        "recovery link generated for {email} and sent privately to {}",
        requester.mention()
    )
}

/// Queue the direct message, the thread note and the audit row, together.
pub async fn send(
    state: &AppState,
    r: &Request,
    requester: &UserId,
    email: &str,
    link: &SecretString,
) -> anyhow::Result<()> {
    let now = state.clock.now_ms();
    let words = sent_words(email, requester);
    let mut dm = Outgoing::direct(requester, message(r, email, link)).sensitive();
    // A DM that cannot be delivered is written on the incident's timeline.
    dm.incident_id = r.incident_id;
    let channel = ChannelId::parse(&r.channel).map_err(|e| anyhow::anyhow!("stored channel: {e}"))?;
    // The email is escaped; the requester is a real mention.
    let note = crate::incident::render::reply(format!(
        ":closed_lock_with_key: Approval #{}: {}.",
        r.id,
        said(&escape_entities(&visible(email)), requester)
    ));
    let thread = Outgoing::post_keyed(&channel, r.incident_id.map(crate::outbox::room_thread_key), None, note);
    let mut tx = state.store.begin().await?;
    outbox::enqueue(&mut tx, &[dm, thread], None, now).await?;
    let event = Event::bot("recovery_link_sent", &words).about(Some(r.id), r.incident_id);
    audit::record(&mut tx, event, now).await?;
    state.outbox.commit(tx).await?;
    Ok(())
}

/// The direct message. The link sits alone in a preformatted rich-text
/// block, copied exactly as it is (no entity escaping), and stays out of
/// the notification text that lock screens show.
fn message(r: &Request, email: &str, link: &SecretString) -> SlackMessageContent {
    let email = escape_entities(&visible(email)).replace('`', "'");
    let approved_by = r
        .decided_by
        .as_deref()
        .map(|u| format!(", approved by <@{u}>"))
        .unwrap_or_default();
    let head = format!(
        ":closed_lock_with_key: *Password-recovery link for `{email}`* (approval #{}{approved_by}).\n\
         Give it to the user through a secure channel, never in the incident channel. It works once; \
         generating another link replaces it.",
        r.id
    );
    let section = SlackSectionBlock::new().with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(head)));
    let link = SlackRichTextPreformatted::new(vec![link.expose_secret().into()]);
    let rich = SlackRichTextBlock::new(vec![SlackRichTextElement::Preformatted(link)]);
    SlackMessageContent::new()
        .with_text(format!(
            "Password-recovery link for {email} (approval #{}): open this message to copy it.",
            r.id
        ))
        .with_blocks(vec![SlackBlock::Section(section), SlackBlock::RichText(rich)])
}
