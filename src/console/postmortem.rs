//! The postmortem draft as Markdown: the same sections and prompts as the
//! draft `/incident resolve` posts in Slack (`incident::render::postmortem`),
//! with the timeline in full up to `EVENTS_MAX` events. Downloaded from the
//! console, or posted to the incident's thread on request.

use chrono::{TimeZone, Utc};

use super::queries::{EventRow, IncidentRow};
use crate::incident::model::human_duration;
use crate::incident::render::{ACTIONS, IMPACT_PROMPT, REVIEW_NOTE, ROOT_CAUSE_PROMPT, SUMMARY_PROMPT, utc};

/// Timeline events written out; the rest are counted.
pub const EVENTS_MAX: i64 = 500;

fn seconds(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "?".into())
}

/// One line per value: text from Slack and alerts cannot start a heading
/// or a list item of its own.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A value from a person, an alert or the database, on one line, as
/// literal Markdown text: every character Markdown (CommonMark and GFM)
/// gives a meaning is backslash-escaped, so a title or timeline text cannot
/// become raw HTML (`<img …>`), a link or image (`[x](javascript:…)`),
/// code, emphasis, a table cell, an entity, or at its start a heading, a
/// list item or a quote.
pub fn md_text(text: &str) -> String {
    let line = one_line(text);
    let mut out = String::with_capacity(line.len() + 8);
    let mut leading_digits = true;
    for (i, ch) in line.chars().enumerate() {
        let special = matches!(
            ch,
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '<' | '>' | '&' | '!' | '#' | '|' | '~' | '{' | '}'
        );
        // `- x`, `+ x`, `= x` or `12. x` at the start would be a block of its own.
        let starts_block = (i == 0 && matches!(ch, '-' | '+' | '=')) || (ch == '.' && leading_digits && i > 0);
        leading_digits &= ch.is_ascii_digit();
        if special || starts_block {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Where the draft goes, which decides how values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A Markdown file: every value escaped (`md_text`).
    File,
    /// A Slack message: values on one line; the outbox's text escaping
    /// (`&`, `<`, `>`) keeps them from being links or mentions, and Slack
    /// shows no backslash escapes.
    Slack,
}

impl Target {
    fn text(self, value: &str) -> String {
        match self {
            Target::File => md_text(value),
            Target::Slack => one_line(value),
        }
    }
}

/// The draft; `total` is how many timeline events there are in all.
pub fn markdown(row: &IncidentRow, events: &[EventRow], total: i64, now: i64, to: Target) -> String {
    let i = &row.incident;
    let resolved = i.resolved_at.unwrap_or(now);
    let mut out = format!("# Postmortem draft — incident #{}: {}\n\n", i.id, to.text(&i.title));
    out.push_str(&format!("- Severity: {}\n", i.severity.label()));
    out.push_str(&format!(
        "- Declared: {} by {}\n",
        utc(i.declared_at),
        to.text(&i.declared_by)
    ));
    out.push_str(&format!("- Commander: {}\n", to.text(&i.commander)));
    if let Some(s) = &row.service {
        out.push_str(&format!("- Service: {}\n", to.text(s)));
    }
    out.push_str(&match i.acknowledged_at {
        Some(a) => format!("- Acknowledged after {}\n", human_duration(a - i.declared_at)),
        None => "- Never acknowledged\n".to_string(),
    });
    out.push_str(&match i.resolved_at {
        Some(_) => format!("- Resolved after {}\n", human_duration(resolved - i.declared_at)),
        None => format!("- Still open after {}\n", human_duration(now - i.declared_at)),
    });
    let summary = i
        .summary
        .as_deref()
        .map(|s| to.text(s))
        .unwrap_or_else(|| format!("_{SUMMARY_PROMPT}_"));
    out.push_str(&format!("\n## Summary\n\n{summary}\n"));
    out.push_str(&format!("\n## Impact\n\n_{IMPACT_PROMPT}_\n"));
    out.push_str(&format!(
        "\n## Timeline (UTC, {} – {})\n\n",
        utc(i.declared_at),
        utc(resolved)
    ));
    for e in events {
        out.push_str(&format!(
            "- `{}` {} ({}): {}\n",
            seconds(e.occurred_at),
            to.text(&e.actor),
            to.text(&e.kind),
            to.text(&e.text)
        ));
    }
    let left = total - events.len() as i64;
    if left > 0 {
        out.push_str(&format!("- … and {left} more events, in the console\n"));
    }
    out.push_str(&format!("\n## Root cause\n\n_{ROOT_CAUSE_PROMPT}_\n\n## Actions\n\n"));
    for (what, prompt) in ACTIONS {
        out.push_str(&format!("- [ ] {what}: _{prompt}_\n"));
    }
    out.push_str(&format!("\n{REVIEW_NOTE}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::model::{Incident, Severity, State};

    fn row() -> IncidentRow {
        IncidentRow {
            incident: Incident {
                id: 42,
                channel: "CINC".into(),
                title: "Login\n# failing".into(),
                severity: Severity::P1,
                state: State::Resolved,
                status_text: None,
                commander: "U0LEAD".into(),
                declared_by: "U0ONCALL".into(),
                declared_at: 1_767_225_600_000,
                acknowledged_by: Some("U0LEAD".into()),
                acknowledged_at: Some(1_767_225_600_000 + 300_000),
                resolved_by: Some("U0LEAD".into()),
                resolved_at: Some(1_767_225_600_000 + 3_600_000),
                summary: Some("bad index".into()),
                room_state: None,
                room_channel: None,
            },
            service: Some("auth".into()),
        }
    }

    fn event(at: i64, kind: &str, text: &str) -> EventRow {
        EventRow {
            occurred_at: at,
            actor: "U0LEAD".into(),
            kind: kind.into(),
            text: text.into(),
        }
    }

    #[test]
    fn every_section_filled_from_the_timeline() {
        let r = row();
        let t0 = r.incident.declared_at;
        let events = [
            event(t0, "declared", "Declared P1"),
            event(t0 + 60_000, "status", "rolling\nback"),
        ];
        let md = markdown(&r, &events, 2, t0, Target::File);
        for part in [
            "# Postmortem draft — incident #42: Login \\# failing\n",
            "- Severity: P1 High\n",
            "- Service: auth",
            "- Acknowledged after 5 m",
            "- Resolved after 1 h",
            "## Summary\n\nbad index",
            "## Impact",
            "## Timeline (UTC, 2026-01-01 00:00 UTC – 2026-01-01 01:00 UTC)",
            "- `2026-01-01 00:01:00` U0LEAD (status): rolling back\n",
            "## Root cause",
            "## Actions",
            "- [ ] Prevent:",
        ] {
            assert!(md.contains(part), "missing {part:?} in\n{md}");
        }
        assert!(!md.contains("more events"));
        assert!(markdown(&r, &events, 700, t0, Target::File).contains("… and 698 more events"));
        let slack = markdown(&r, &events, 2, t0, Target::Slack);
        assert!(slack.contains("incident #42: Login # failing\n"), "{slack}");
    }

    #[test]
    fn values_are_literal_markdown() {
        for (given, written) in [
            ("plain text 2026-01-01", "plain text 2026-01-01"),
            ("<img src=x onerror=alert(1)>", "\\<img src=x onerror=alert\\(1\\)\\>"),
            ("[x](javascript:alert(1))", "\\[x\\]\\(javascript:alert\\(1\\)\\)"),
            ("![i](http://e/x.png)", "\\!\\[i\\]\\(http://e/x.png\\)"),
            (
                "`code` *em* _em_ ~del~ a|b",
                "\\`code\\` \\*em\\* \\_em\\_ \\~del\\~ a\\|b",
            ),
            ("&lt; &amp; \\ {x}", "\\&lt; \\&amp; \\\\ \\{x\\}"),
            ("# heading", "\\# heading"),
            ("- item", "\\- item"),
            ("+ item", "\\+ item"),
            ("12. item", "12\\. item"),
            ("version 1.2 - ok", "version 1.2 - ok"),
            ("two\nlines\n# not a heading", "two lines \\# not a heading"),
        ] {
            assert_eq!(md_text(given), written, "{given:?}");
        }
    }
}
