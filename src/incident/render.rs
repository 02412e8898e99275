//! Block Kit and text for incidents: the root message, thread replies, the
//! status-page drafts, the timeline summary and the postmortem skeleton.
//! Pure functions of the incident; user-typed text is always escaped.

use chrono::{TimeZone, Utc};
use slack_morphism::prelude::*;

use super::model::{Incident, Room, Severity, State, TimelineEvent, human_duration};
use crate::slack::text::{SECTION_MAX, escape, escape_code_block, fit};

pub const ACTION_ACK: &str = "incident_ack";
pub const ACTION_RESOLVE: &str = "incident_resolve";

/// Slack limits a header to 150 characters of plain text.
const HEADER_MAX: usize = 150;

fn md(text: impl Into<String>) -> SlackBlockText {
    SlackBlockText::MarkDown(SlackBlockMarkDownText::new(text.into()))
}

fn section(text: impl Into<String>) -> SlackBlock {
    SlackBlock::Section(SlackSectionBlock::new().with_text(md(fit(text.into(), SECTION_MAX))))
}

fn context(text: impl Into<String>) -> SlackBlock {
    SlackBlock::Context(SlackContextBlock::new(vec![SlackContextBlockElement::MarkDown(
        SlackBlockMarkDownText::new(text.into()),
    )]))
}

/// `<!date^…>` renders in each reader's own time zone; the fallback is UTC.
pub fn slack_time(ms: i64) -> String {
    format!("<!date^{}^{{date_short_pretty}} {{time}}|{}>", ms / 1000, utc(ms))
}

pub fn utc(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "?".into())
}

fn hhmm(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_else(|| "?".into())
}

fn who(actor: &str) -> String {
    if actor == "bot" {
        "runbook-bot".into()
    } else {
        format!("<@{actor}>")
    }
}

pub fn state_line(i: &Incident, now: i64) -> String {
    match i.state {
        State::Declared => format!(
            ":rotating_light: Investigating · not acknowledged · open {}",
            human_duration(now - i.declared_at)
        ),
        State::Acknowledged => format!(
            ":eyes: Acknowledged by {} · open {}",
            i.acknowledged_by.as_deref().map(who).unwrap_or_default(),
            human_duration(now - i.declared_at)
        ),
        State::Resolved => format!(
            ":white_check_mark: Resolved by {} after {}",
            i.resolved_by.as_deref().map(who).unwrap_or_default(),
            human_duration(i.resolved_at.unwrap_or(now) - i.declared_at)
        ),
    }
}

pub fn header_text(i: &Incident) -> String {
    let full = format!("#{} · {} · {}", i.id, i.severity, i.title);
    if full.chars().count() <= HEADER_MAX {
        full
    } else {
        let mut s: String = full.chars().take(HEADER_MAX - 1).collect();
        s.push('…');
        s
    }
}

/// The incident's root message, updated in place on every change.
pub fn root(i: &Incident, now: i64) -> SlackMessageContent {
    let mut blocks = vec![
        SlackBlock::Header(SlackHeaderBlock::new(SlackBlockPlainTextOnly::from(header_text(i)))),
        SlackBlock::Section(SlackSectionBlock::new().with_fields(vec![
            md(format!(
                "*Severity*\n{} {} — {}",
                i.severity.emoji(),
                i.severity.label(),
                i.severity.definition()
            )),
            md(format!("*Status*\n{}", state_line(i, now))),
            md(format!("*Commander*\n{}", who(&i.commander))),
            md(format!(
                "*Declared*\n{} by {}",
                slack_time(i.declared_at),
                who(&i.declared_by)
            )),
        ])),
    ];
    if let Some(room) = room_line(i) {
        blocks.push(section(room));
    }
    if let Some(s) = &i.status_text {
        blocks.push(section(format!("*Latest update:* {}", escape(s))));
    }
    if let Some(s) = &i.summary {
        blocks.push(section(format!("*Summary:* {}", escape(s))));
    }
    if i.state != State::Resolved {
        let mut buttons = Vec::new();
        if i.state == State::Declared {
            buttons.push(SlackActionBlockElement::Button(
                SlackBlockButtonElement::new(SlackBlockPlainTextOnly::from("Acknowledge"))
                    .with_action_id(ACTION_ACK.into())
                    .with_value(i.id.to_string())
                    .with_style(SlackBlockButtonStyle::Primary),
            ));
        }
        buttons.push(SlackActionBlockElement::Button(
            SlackBlockButtonElement::new(SlackBlockPlainTextOnly::from("Resolve"))
                .with_action_id(ACTION_RESOLVE.into())
                .with_value(i.id.to_string())
                .with_style(SlackBlockButtonStyle::Danger)
                .with_confirm(SlackBlockConfirmItem::new(
                    SlackBlockPlainTextOnly::from(format!("Resolve incident #{}?", i.id)),
                    md("This posts the timeline, a postmortem skeleton and the status-page draft.".to_string()),
                    SlackBlockPlainTextOnly::from("Resolve"),
                    SlackBlockPlainTextOnly::from("Cancel"),
                )),
        ));
        blocks.push(SlackBlock::Actions(SlackActionsBlock::new(buttons)));
        blocks.push(context(format!("Runbook timeline: {}", i.severity.expectation())));
    }
    SlackMessageContent::new()
        .with_text(format!(
            "{} incident #{}: {} ({})",
            i.severity,
            i.id,
            escape(&i.title),
            i.state.as_str()
        ))
        .with_blocks(blocks)
}

/// Where the incident is worked, on the root message in the incident channel.
fn room_line(i: &Incident) -> Option<String> {
    match i.room() {
        Room::Made(c) => Some(format!("*Incident channel:* <#{c}> — join it to help.")),
        Room::Pending => Some("*Incident channel:* being created…".into()),
        Room::Archived(c) => Some(format!("*Incident channel:* <#{c}> (archived)")),
        Room::Failed | Room::Thread => None,
    }
}

/// A room's topic: severity · status · commander (Slack allows 250 characters).
pub fn topic(i: &Incident) -> String {
    let status = match i.state {
        State::Resolved => "Resolved".to_string(),
        State::Acknowledged => "Acknowledged".to_string(),
        State::Declared => "Investigating".to_string(),
    };
    let t = format!(
        "{} {} · {status} · Commander: {}",
        i.severity.emoji(),
        i.severity.label(),
        who(&i.commander)
    );
    t.chars().take(250).collect()
}

pub fn reply(text: String) -> SlackMessageContent {
    SlackMessageContent::new()
        .with_text(text.clone())
        .with_blocks(vec![section(text)])
}

/// Status-page draft while investigating, from the runbooks' template.
pub fn status_page_investigating(i: &Incident) -> String {
    format!(
        ":memo: *Status-page draft — investigating* (copy to the status page after review)\n```INVESTIGATING: We are currently experiencing an issue: {}. Some users may be affected. We are actively investigating and will provide an update within {} minutes.```",
        escape_code_block(&i.title),
        i.severity.status_update_minutes()
    )
}

/// Status-page draft once resolved, from the runbooks' template.
pub fn status_page_resolved(i: &Incident) -> String {
    format!(
        ":memo: *Status-page draft — resolved*\n```RESOLVED: All systems are operational again. The issue ({}) has been resolved and services are functioning normally. We apologize for any inconvenience.\nRoot cause: {}```",
        escape_code_block(&i.title),
        i.summary
            .as_deref()
            .map(escape_code_block)
            .unwrap_or_else(|| "[brief technical explanation]".into())
    )
}

pub fn timeline_lines(events: &[TimelineEvent]) -> String {
    if events.is_empty() {
        return "_No events recorded._".into();
    }
    events
        .iter()
        .map(|e| format!("• `{}` {} — {}", hhmm(e.at), who(&e.actor), escape(&e.text)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Slack caps a section's text at 3,000 characters: keep the first and the
/// last events and say how many were left out.
pub fn timeline_capped(events: &[TimelineEvent], max_chars: usize) -> String {
    let full = timeline_lines(events);
    if full.len() <= max_chars || events.len() < 3 {
        return full.chars().take(max_chars).collect();
    }
    let mut head = Vec::new();
    let mut budget = max_chars.saturating_sub(200);
    for e in events {
        let line = timeline_lines(std::slice::from_ref(e));
        if line.len() > budget / 2 {
            break;
        }
        budget -= line.len() + 1;
        head.push(line);
    }
    let mut tail = Vec::new();
    for e in events[head.len()..].iter().rev() {
        let line = timeline_lines(std::slice::from_ref(e));
        if line.len() + 1 > budget {
            break;
        }
        budget -= line.len() + 1;
        tail.push(line);
    }
    tail.reverse();
    let skipped = events.len() - head.len() - tail.len();
    format!(
        "{}\n_… {skipped} more events (see `/incident timeline #{{id}}`) …_\n{}",
        head.join("\n"),
        tail.join("\n")
    )
}

/// The postmortem's prompts, shared by the Slack draft and the console's
/// Markdown export (`console::postmortem`).
pub const SUMMARY_PROMPT: &str = "Add a one-paragraph summary.";
pub const IMPACT_PROMPT: &str = "Who was affected, how many, for how long; which features failed.";
pub const ROOT_CAUSE_PROMPT: &str = "What failed and why; what made it possible.";
pub const ACTIONS: [(&str, &str); 3] = [
    ("Prevent", "change that stops a recurrence"),
    ("Detect", "alert or check that would have caught it sooner"),
    ("Runbook", "update the runbook with what was learnt"),
];
pub const REVIEW_NOTE: &str = "Runbooks ask for the post-incident review within 24 hours.";

/// Posted in the thread on resolve: impact, timeline, root cause, actions.
pub fn postmortem(i: &Incident, events: &[TimelineEvent], now: i64) -> SlackMessageContent {
    let resolved = i.resolved_at.unwrap_or(now);
    let ack = i
        .acknowledged_at
        .map(|a| format!("acknowledged after {}", human_duration(a - i.declared_at)))
        .unwrap_or_else(|| "never acknowledged".into());
    let timeline = timeline_capped(events, 2800).replace("{id}", &i.id.to_string());
    let blocks = vec![
        SlackBlock::Header(SlackHeaderBlock::new(SlackBlockPlainTextOnly::from(format!(
            "Postmortem draft — #{}",
            i.id
        )))),
        section(format!(
            "*Summary*\n{} · {} · open {} · {}\n{}",
            i.severity.label(),
            escape(&i.title),
            human_duration(resolved - i.declared_at),
            ack,
            i.summary
                .as_deref()
                .map(escape)
                .unwrap_or_else(|| format!("_{SUMMARY_PROMPT}_"))
        )),
        section(format!("*Impact*\n_{IMPACT_PROMPT}_")),
        section(format!(
            "*Timeline* ({} – {})\n{}",
            utc(i.declared_at),
            utc(resolved),
            timeline
        )),
        section(format!("*Root cause*\n_{ROOT_CAUSE_PROMPT}_")),
        section(format!(
            "*Actions*\n{}",
            ACTIONS
                .iter()
                .map(|(what, prompt)| format!("• [ ] {what}: _{prompt}_"))
                .collect::<Vec<_>>()
                .join("\n")
        )),
        context(REVIEW_NOTE),
    ];
    SlackMessageContent::new()
        .with_text(format!("Postmortem draft for incident #{}", i.id))
        .with_blocks(blocks)
}

/// The `/incident list` reply.
pub fn list(incidents: &[Incident], now: i64) -> String {
    if incidents.is_empty() {
        return ":white_check_mark: No open incidents.".into();
    }
    let mut out = format!("*Open incidents ({})*", incidents.len());
    for i in incidents {
        out.push_str(&format!(
            "\n• *#{}* {} {} — {} · {} · commander {}",
            i.id,
            i.severity.emoji(),
            i.severity,
            escape(&i.title),
            state_line(i, now),
            who(&i.commander)
        ));
    }
    out
}

pub fn severity_help() -> String {
    Severity::ALL
        .iter()
        .map(|s| format!("• `{}` {} — {}", s.as_str(), s.label(), s.definition()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident() -> Incident {
        Incident {
            id: 7,
            channel: "CINC".into(),
            title: "Login <!channel> *failing*".into(),
            severity: Severity::P1,
            state: State::Declared,
            status_text: Some("rolling back <@U999>".into()),
            commander: "U1".into(),
            declared_by: "U1".into(),
            declared_at: 1_700_000_000_000,
            acknowledged_by: None,
            acknowledged_at: None,
            resolved_by: None,
            resolved_at: None,
            summary: None,
            room_state: None,
            room_channel: None,
        }
    }

    #[test]
    fn the_root_links_the_room_and_the_topic_names_who_leads() {
        let mut i = incident();
        assert!(!json(&root(&i, i.declared_at)).contains("Incident channel"));
        i.room_state = Some("pending".into());
        assert!(json(&root(&i, i.declared_at)).contains("being created"));
        i.room_state = Some("made".into());
        i.room_channel = Some("C0ROOM".into());
        assert!(json(&root(&i, i.declared_at)).contains("<#C0ROOM>"));
        i.room_state = Some("archived".into());
        assert!(json(&root(&i, i.declared_at)).contains("<#C0ROOM> (archived)"));
        i.room_state = Some("failed".into());
        i.room_channel = None;
        assert!(!json(&root(&i, i.declared_at)).contains("Incident channel"));
        let t = topic(&i);
        assert!(
            t.contains("P1") && t.contains("Investigating") && t.contains("<@U1>"),
            "{t}"
        );
    }

    fn json(c: &SlackMessageContent) -> String {
        serde_json::to_string(c).unwrap()
    }

    #[test]
    fn root_shows_severity_commander_status_and_buttons() {
        let i = incident();
        let j = json(&root(&i, i.declared_at + 5 * 60_000));
        assert!(j.contains("#7 · P1 · Login"), "{j}");
        assert!(j.contains("P1 High"));
        assert!(j.contains("<@U1>"));
        assert!(j.contains("open 5 m"));
        assert!(j.contains(ACTION_ACK) && j.contains(ACTION_RESOLVE));
        assert!(j.contains("\"confirm\""));
    }

    #[test]
    fn user_text_cannot_mention_or_format() {
        let i = incident();
        let j = json(&root(&i, i.declared_at));
        // The header is plain text; the mrkdwn status line and the
        // notification text (also mrkdwn) must be escaped.
        assert!(!j.contains("<@U999>"), "{j}");
        assert!(!root(&i, i.declared_at).text.unwrap().contains("<!channel>"));
        assert!(j.contains("&lt;@U999&gt;"));
        let draft = status_page_investigating(&i);
        assert!(!draft.contains("<!channel>"));
        assert!(draft.contains("*failing*"), "literal inside the code block: {draft}");
        let mut fenced = incident();
        fenced.title = "a ``` b".into();
        assert_eq!(status_page_investigating(&fenced).matches("```").count(), 2);
    }

    #[test]
    fn resolved_root_has_no_buttons() {
        let mut i = incident();
        i.state = State::Resolved;
        i.resolved_by = Some("U2".into());
        i.resolved_at = Some(i.declared_at + 42 * 60_000);
        let j = json(&root(&i, i.declared_at + 60 * 60_000));
        assert!(!j.contains(ACTION_ACK) && !j.contains(ACTION_RESOLVE));
        assert!(j.contains("after 42 m"));
    }

    #[test]
    fn long_titles_fit_the_header_limit() {
        let mut i = incident();
        i.title = "x".repeat(400);
        assert_eq!(header_text(&i).chars().count(), HEADER_MAX);
    }

    #[test]
    fn long_timelines_stay_under_the_section_limit() {
        let events: Vec<_> = (0..500)
            .map(|n| TimelineEvent {
                at: n * 1000,
                actor: "U1".into(),
                kind: "status".into(),
                text: format!("update number {n}"),
            })
            .collect();
        let t = timeline_capped(&events, 2800);
        assert!(t.len() <= 2800, "{}", t.len());
        assert!(t.contains("update number 0") && t.contains("update number 499"));
        assert!(t.contains("more events"));
    }

    #[test]
    fn postmortem_has_every_section() {
        let mut i = incident();
        i.state = State::Resolved;
        i.resolved_at = Some(i.declared_at + 3_600_000);
        let ev = vec![TimelineEvent {
            at: i.declared_at,
            actor: "U1".into(),
            kind: "declared".into(),
            text: "Declared P1".into(),
        }];
        let j = json(&postmortem(&i, &ev, i.declared_at));
        for s in ["Impact", "Timeline", "Root cause", "Actions", "Declared P1", "open 1 h"] {
            assert!(j.contains(s), "missing {s}: {j}");
        }
    }
}
