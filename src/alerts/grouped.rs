//! The grouped message: one post for a group whose notification brought
//! more new alerts than the threshold, updated in place as its alerts
//! repeat, join and resolve: counts, and the first firing and resolved
//! alerts, cut to fit Slack's limits however large the group grows.

use slack_morphism::prelude::*;

use super::normalize::Status;
use crate::incident::model::human_duration;
use crate::slack::text::{SECTION_MAX, escape, escape_code_block, fit};

const KEY_PREFIX: &str = "alertgroup:";

/// Alerts listed by name in each of the firing and resolved lists; the
/// rest are counted.
pub const LISTED: usize = 15;

/// Longest title shown in a list line: 15 lines stay well inside a section.
const TITLE_MAX: usize = 150;

/// The key a group run's message is remembered under.
pub fn message_key(group_id: i64) -> String {
    format!("{KEY_PREFIX}{group_id}")
}

/// Whether a message key names a grouped message rather than one alert's.
pub fn is_message_key(key: &str) -> bool {
    key.starts_with(KEY_PREFIX)
}

/// One alert as a list line shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Member {
    pub title: String,
    pub severity: String,
    #[sqlx(try_from = "String")]
    pub status: Status,
    pub fired_at: i64,
    pub resolved_at: Option<i64>,
}

/// What the message shows: totals, and the first `LISTED` of each list.
pub struct View {
    /// The monitoring source, as the context line names it.
    pub source: String,
    pub title: String,
    pub firing: i64,
    pub resolved: i64,
    pub firing_list: Vec<Member>,
    pub resolved_list: Vec<Member>,
    pub incident: Option<i64>,
}

fn line(m: &Member, now: i64) -> String {
    let title = escape(&m.title.chars().take(TITLE_MAX).collect::<String>());
    let severity = escape_code_block(&m.severity).replace('`', "'");
    match (m.status, m.resolved_at) {
        (Status::Resolved, Some(at)) => format!("• {title} — resolved after {}", human_duration(at - m.fired_at)),
        _ => format!("• `{severity}` {title} — for {}", human_duration(now - m.fired_at)),
    }
}

/// A list section: its heading, a line per listed alert, and how many more.
fn list(heading: &str, total: i64, members: &[Member], now: i64) -> SlackBlock {
    let mut text = format!("*{heading} ({total})*");
    for m in members.iter().take(LISTED) {
        text.push('\n');
        text.push_str(&line(m, now));
    }
    let more = total - members.len().min(LISTED) as i64;
    if more > 0 {
        text.push_str(&format!("\n…and {more} more"));
    }
    SlackBlock::Section(
        SlackSectionBlock::new().with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(fit(
            text,
            SECTION_MAX,
        )))),
    )
}

pub fn message(v: &View, now: i64) -> SlackMessageContent {
    let emoji = if v.firing > 0 {
        ":rotating_light:"
    } else {
        ":white_check_mark:"
    };
    let head = format!(
        "{emoji} *Alert group* · *{} firing* · {} resolved · {}",
        v.firing,
        v.resolved,
        escape(&v.title.chars().take(TITLE_MAX).collect::<String>())
    );
    let mut blocks = vec![SlackBlock::Section(SlackSectionBlock::new().with_text(
        SlackBlockText::MarkDown(SlackBlockMarkDownText::new(fit(head, SECTION_MAX))),
    ))];
    if v.firing > 0 {
        blocks.push(list("Firing", v.firing, &v.firing_list, now));
    }
    if v.resolved > 0 {
        blocks.push(list("Resolved", v.resolved, &v.resolved_list, now));
    }
    let mut ctx = format!(
        "{} · {} alerts in one message · updated {}",
        escape(&v.source),
        v.firing + v.resolved,
        crate::incident::render::slack_time(now)
    );
    if let Some(i) = v.incident {
        ctx.push_str(&format!(" · incident #{i}"));
    }
    blocks.push(SlackBlock::Context(SlackContextBlock::new(vec![
        SlackContextBlockElement::MarkDown(SlackBlockMarkDownText::new(ctx)),
    ])));
    let word = if v.firing > 0 { "FIRING" } else { "RESOLVED" };
    let text = format!(
        "[{word}] {} firing, {} resolved: {}",
        v.firing,
        v.resolved,
        escape(&v.title)
    );
    SlackMessageContent::new().with_text(fit(text, 300)).with_blocks(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(i: usize, status: Status) -> Member {
        Member {
            title: format!("pod-{i} error rate 15%"),
            severity: "critical".into(),
            status,
            fired_at: 0,
            resolved_at: (status == Status::Resolved).then_some(3 * 60_000),
        }
    }

    fn view(firing: usize, resolved: usize) -> View {
        View {
            source: "alertmanager".into(),
            title: "HighErrorRate".into(),
            firing: firing as i64,
            resolved: resolved as i64,
            firing_list: (0..firing.min(LISTED)).map(|i| member(i, Status::Firing)).collect(),
            resolved_list: (0..resolved.min(LISTED)).map(|i| member(i, Status::Resolved)).collect(),
            incident: Some(7),
        }
    }

    fn sections(c: &SlackMessageContent) -> Vec<String> {
        c.blocks
            .clone()
            .unwrap()
            .into_iter()
            .filter_map(|b| match b {
                SlackBlock::Section(s) => match s.text {
                    Some(SlackBlockText::MarkDown(m)) => Some(m.text),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    #[test]
    fn counts_lists_and_how_many_more() {
        let c = message(&view(50, 10), 12 * 60_000);
        let s = sections(&c);
        assert!(s[0].contains("*50 firing* · 10 resolved · HighErrorRate"), "{}", s[0]);
        assert!(s[1].starts_with("*Firing (50)*\n• `critical` pod-0 error rate 15% — for 12 m"));
        assert_eq!(s[1].lines().count(), 1 + LISTED + 1);
        assert!(s[1].ends_with("…and 35 more"), "{}", s[1]);
        assert!(s[2].contains("*Resolved (10)*\n• pod-0 error rate 15% — resolved after 3 m"));
        assert!(!s[2].contains("more"));
        assert_eq!(
            c.text.as_deref(),
            Some("[FIRING] 50 firing, 10 resolved: HighErrorRate")
        );
        let j = serde_json::to_string(&c).unwrap();
        assert!(
            j.contains("60 alerts in one message") && j.contains("incident #7"),
            "{j}"
        );
    }

    #[test]
    fn all_resolved_reads_resolved_without_a_firing_list() {
        let c = message(&view(0, 60), 0);
        let s = sections(&c);
        assert_eq!(s.len(), 2);
        assert!(s[0].starts_with(":white_check_mark:"));
        assert!(c.text.unwrap().starts_with("[RESOLVED] 0 firing, 60 resolved"));
    }

    #[test]
    fn huge_hostile_titles_stay_inside_slacks_limits() {
        let mut v = view(60, 60);
        for m in v.firing_list.iter_mut().chain(v.resolved_list.iter_mut()) {
            m.title = "<!channel> *&*".repeat(500);
            m.severity = "`x`".repeat(100);
        }
        v.title = "<".repeat(5000);
        let c = message(&v, 0);
        let j = serde_json::to_string(&c).unwrap();
        assert!(!j.contains("<!channel>"));
        for s in sections(&c) {
            assert!(s.chars().count() <= 3000, "{}", s.chars().count());
        }
        assert!(c.text.unwrap().chars().count() <= 300);
        assert!(c.blocks.unwrap().len() <= 4);
    }

    #[test]
    fn keys_say_which_messages_are_grouped() {
        assert_eq!(message_key(12), "alertgroup:12");
        assert!(is_message_key(&message_key(12)));
        assert!(!is_message_key("alert:12"));
    }
}
