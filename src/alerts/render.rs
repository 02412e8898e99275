//! The alert message (posted once, then updated in place as the alert
//! repeats or resolves) and its thread replies. Everything from the payload
//! is escaped; link targets lose the characters that could break out of
//! Slack's `<url|label>` syntax.

use slack_morphism::prelude::*;

use super::normalize::{Alert, Status};
use crate::incident::model::human_duration;
use crate::slack::text::{SECTION_MAX, escape, escape_code_block, fit};

/// What the message shows besides the alert itself.
pub struct Seen {
    pub occurrence: i64,
    pub deliveries: i64,
    pub fired_at: i64,
    pub last_seen: i64,
    pub resolved_at: Option<i64>,
    pub incident: Option<i64>,
}

fn emoji(a: &Alert) -> &'static str {
    match (a.status, a.severity.as_str()) {
        (Status::Resolved, _) => ":white_check_mark:",
        (_, "critical" | "fatal" | "page") => ":rotating_light:",
        (_, "error") => ":red_circle:",
        (_, "warning") => ":warning:",
        _ => ":information_source:",
    }
}

fn safe_url(u: &str) -> String {
    u.chars().filter(|c| !matches!(c, '<' | '>' | '|' | ' ')).collect()
}

pub fn message(a: &Alert, seen: &Seen, now: i64) -> SlackMessageContent {
    let state = match (a.status, seen.resolved_at) {
        (Status::Resolved, Some(at)) => format!("*RESOLVED* after {}", human_duration(at - seen.fired_at)),
        _ => format!("*FIRING* for {}", human_duration(now - seen.fired_at)),
    };
    let mut text = format!(
        "{} {state} · `{}` · {}",
        emoji(a),
        escape_code_block(&a.severity).replace('`', "'"),
        escape(&a.title)
    );
    if let Some(d) = &a.description {
        text.push_str(&format!("\n{}", escape(&d.chars().take(1500).collect::<String>())));
    }
    let mut blocks = vec![SlackBlock::Section(SlackSectionBlock::new().with_text(
        SlackBlockText::MarkDown(SlackBlockMarkDownText::new(fit(text, SECTION_MAX))),
    ))];
    if !a.labels.is_empty() {
        let labels: String = a
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("  ")
            .chars()
            .take(2800)
            .collect();
        blocks.push(SlackBlock::Section(SlackSectionBlock::new().with_text(
            SlackBlockText::MarkDown(SlackBlockMarkDownText::new(format!(
                "```{}```",
                fit(escape_code_block(&labels), SECTION_MAX - 6)
            ))),
        )));
    }
    let mut ctx = format!(
        "{} · seen {}× · last {}",
        a.source.as_str(),
        seen.deliveries,
        crate::incident::render::slack_time(seen.last_seen)
    );
    if seen.occurrence > 1 {
        ctx.push_str(&format!(" · occurrence {}", seen.occurrence));
    }
    if let Some(i) = seen.incident {
        ctx.push_str(&format!(" · incident #{i}"));
    }
    for (label, url) in a.links.iter().take(5) {
        ctx.push_str(&format!(" · <{}|{}>", safe_url(url), escape(label)));
    }
    blocks.push(SlackBlock::Context(SlackContextBlock::new(vec![
        SlackContextBlockElement::MarkDown(SlackBlockMarkDownText::new(ctx)),
    ])));
    let word = if a.status == Status::Firing {
        "FIRING"
    } else {
        "RESOLVED"
    };
    SlackMessageContent::new()
        .with_text(format!("[{word}] {} ({})", escape(&a.title), escape(&a.severity)))
        .with_blocks(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::normalize::Source;

    fn alert() -> Alert {
        Alert {
            source: Source::Generic,
            fingerprint: "k".into(),
            status: Status::Firing,
            severity: "critical".into(),
            title: "<!channel> disk *full*".into(),
            description: None,
            labels: [("service".to_string(), "db".to_string())].into(),
            links: vec![("link".into(), "https://x.io/a>b|<!channel>".into())],
            starts_at: None,
            ends_at: None,
            group: None,
        }
    }

    #[test]
    fn payload_text_cannot_mention_or_break_links() {
        let seen = Seen {
            occurrence: 2,
            deliveries: 3,
            fired_at: 0,
            last_seen: 60_000,
            resolved_at: None,
            incident: Some(4),
        };
        let j = serde_json::to_string(&message(&alert(), &seen, 120_000)).unwrap();
        assert!(!j.contains("<!channel>"), "{j}");
        assert!(j.contains("<https://x.io/ab!channel|link>"), "{j}");
        assert!(
            j.contains("FIRING* for 2 m")
                && j.contains("seen 3×")
                && j.contains("occurrence 2")
                && j.contains("incident #4")
        );
    }

    #[test]
    fn huge_escaped_payloads_stay_inside_the_section_limit() {
        let mut a = alert();
        a.title = "&".repeat(2000);
        a.description = Some("<".repeat(1500));
        a.labels = (0..400).map(|i| (format!("k{i}"), "&&&&".to_string())).collect();
        let seen = Seen {
            occurrence: 1,
            deliveries: 1,
            fired_at: 0,
            last_seen: 0,
            resolved_at: None,
            incident: None,
        };
        for b in message(&a, &seen, 0).blocks.unwrap() {
            if let SlackBlock::Section(s) = b
                && let Some(SlackBlockText::MarkDown(m)) = s.text
            {
                assert!(m.text.chars().count() <= 3000, "{}", m.text.chars().count());
            }
        }
    }

    #[test]
    fn resolved_alerts_say_how_long_they_fired() {
        let mut a = alert();
        a.status = Status::Resolved;
        let seen = Seen {
            occurrence: 1,
            deliveries: 1,
            fired_at: 0,
            last_seen: 0,
            resolved_at: Some(12 * 60_000),
            incident: None,
        };
        let j = serde_json::to_string(&message(&a, &seen, 13 * 60_000)).unwrap();
        assert!(j.contains("RESOLVED* after 12 m"), "{j}");
    }
}
