//! A diagnostic result as one Block Kit message (inside Slack's limits of 50
//! blocks and 3,000 characters per text, however large the result) and as
//! plain text for `runbook-bot exec`. Every value from the database is
//! escaped: it cannot mention, link or format.

use slack_morphism::prelude::*;

use super::run::{Outcome, StepOutcome, Verdict};
use crate::slack::text::{escape_code_block, escape_entities};

/// Slack's limit for a section's text, with room for the closing fence.
const SECTION_MAX: usize = 2900;
/// Slack's limit of blocks per message, less the header, summary and context.
const STEP_BLOCKS_MAX: usize = 46;
/// Characters of one cell before it is cut.
const CELL_MAX: usize = 60;

fn md(text: String) -> SlackBlock {
    SlackBlock::Section(SlackSectionBlock::new().with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(text))))
}

fn ms(d: std::time::Duration) -> String {
    format!("{} ms", d.as_millis())
}

pub fn headline(o: &Outcome) -> String {
    let args = if o.args.is_empty() {
        String::new()
    } else {
        format!(
            " {}",
            o.args.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(" ")
        )
    };
    format!("{} {}{args} on {}: {}", o.command, o.name, o.target, o.verdict.as_str())
}

pub fn blocks(o: &Outcome) -> SlackMessageContent {
    let mut blocks = vec![
        SlackBlock::Header(SlackHeaderBlock::new(SlackBlockPlainTextOnly::from(truncate(
            &format!("{} {} · {}", o.command, o.name, o.target),
            150,
        )))),
        md(format!(
            "{} *{}* — {} · {} step{} · {}{}",
            o.verdict.emoji(),
            o.verdict.as_str(),
            escape_entities(&o.summary),
            o.steps.len(),
            if o.steps.len() == 1 { "" } else { "s" },
            ms(o.elapsed),
            args_line(o)
        )),
    ];
    let mut steps = o.steps.iter();
    for s in steps.by_ref().take(STEP_BLOCKS_MAX) {
        blocks.push(md(step_text(s)));
    }
    let left = steps.count();
    if left > 0 {
        blocks.push(md(format!(
            "_… and {left} more steps; run `runbook-bot exec` for all of them._"
        )));
    }
    let mut ctx = format!("Read-only on target *{}*", escape_entities(&o.target));
    if let Some(r) = &o.runbook {
        ctx.push_str(&format!(" · runbook: {}", escape_entities(r)));
    }
    blocks.push(SlackBlock::Context(SlackContextBlock::new(vec![
        SlackContextBlockElement::MarkDown(SlackBlockMarkDownText::new(ctx)),
    ])));
    SlackMessageContent::new()
        .with_text(escape_entities(&headline(o)))
        .with_blocks(blocks)
}

fn args_line(o: &Outcome) -> String {
    if o.args.is_empty() {
        return String::new();
    }
    let a: Vec<String> = o
        .args
        .iter()
        .map(|(k, v)| format!("{k}=`{}`", escape_code_block(v).replace('`', "'")))
        .collect();
    format!(" · {}", a.join(" "))
}

fn step_text(s: &StepOutcome) -> String {
    let mut head = format!("{} *{}* — ", s.verdict.emoji(), escape_entities(&s.title));
    if let Some(note) = &s.note {
        head.push_str(&escape_entities(note));
    } else {
        head.push_str(&format!(
            "{} row{} · {}",
            s.table.total,
            if s.table.total == 1 { "" } else { "s" },
            ms(s.elapsed)
        ));
    }
    if let Some(e) = &s.expect {
        head.push_str(&format!("\n_Expected: {}_", escape_entities(e)));
    }
    if s.table.rows.is_empty() {
        return truncate(&head, SECTION_MAX);
    }
    let budget = SECTION_MAX.saturating_sub(head.len() + 80);
    let (table, shown_rows) = table_text(s, budget);
    let mut out = format!("{head}\n```{}```", escape_code_block(&table));
    let more = s.table.total - shown_rows as i64;
    if more > 0 {
        out.push_str(&format!(
            "\n_… and {more} more row{}_",
            if more == 1 { "" } else { "s" }
        ));
    }
    out
}

/// A fixed-width table of the shown columns, as many rows as fit `budget`.
fn table_text(s: &StepOutcome, budget: usize) -> (String, usize) {
    let cols: Vec<&str> = s.shown.iter().map(|&i| s.table.columns[i].as_str()).collect();
    let rows: Vec<Vec<String>> = s
        .table
        .rows
        .iter()
        .take(s.limit as usize)
        .map(|r| {
            s.shown
                .iter()
                .map(|&i| truncate(&clean(r.get(i).map(String::as_str).unwrap_or("")), CELL_MAX))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..cols.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count())
                .chain([cols[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(cols.clone());
    let mut n = 0;
    for r in &rows {
        let l = line(r.iter().map(String::as_str).collect());
        // Escaping can grow text; leave headroom for it.
        if out.len() + l.len() * 5 / 4 + 1 > budget {
            break;
        }
        out.push('\n');
        out.push_str(&l);
        n += 1;
    }
    (out, n)
}

/// Cells are one line each.
fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// The same result for a terminal.
pub fn text(o: &Outcome) -> String {
    let mut out = format!("{} — {} ({})\n", headline(o), o.summary, ms(o.elapsed));
    for s in &o.steps {
        out.push_str(&format!("\n[{}] {}", s.verdict.as_str(), s.title));
        match &s.note {
            Some(n) => out.push_str(&format!(" — {n}")),
            None => out.push_str(&format!(" — {} rows, {}", s.table.total, ms(s.elapsed))),
        }
        if let Some(e) = &s.expect {
            out.push_str(&format!("\n  expected: {e}"));
        }
        if !s.table.rows.is_empty() {
            let (t, n) = table_text(s, usize::MAX);
            for l in t.lines() {
                out.push_str(&format!("\n  {l}"));
            }
            let more = s.table.total - n as i64;
            if more > 0 {
                out.push_str(&format!("\n  … and {more} more rows"));
            }
        }
        out.push('\n');
    }
    out
}

/// Whether any step could not run (shown in the timeline).
pub fn findings(o: &Outcome) -> usize {
    o.steps.iter().filter(|s| s.verdict != Verdict::Ok).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::Table;
    use std::time::Duration;

    fn outcome(rows: usize, cell: &str) -> Outcome {
        let table = Table {
            columns: vec!["user_email".into(), "note".into()],
            rows: (0..rows.min(100))
                .map(|i| vec![format!("{cell}{i}"), "x".into()])
                .collect(),
            total: rows as i64,
        };
        let step = StepOutcome {
            title: "Users without an account".into(),
            expect: Some("no rows".into()),
            verdict: Verdict::Warning,
            table,
            shown: vec![0, 1],
            limit: 100,
            note: None,
            elapsed: Duration::from_millis(12),
            unreachable: false,
        };
        Outcome {
            command: "/diagnose".into(),
            name: "orphans".into(),
            summary: "Orphans".into(),
            runbook: Some("Auth runbook, issue 3".into()),
            target: "production".into(),
            args: vec![],
            verdict: Verdict::Warning,
            steps: vec![step; 3],
            elapsed: Duration::from_millis(40),
        }
    }

    fn section_texts(c: &SlackMessageContent) -> Vec<String> {
        c.blocks
            .as_ref()
            .unwrap()
            .iter()
            .filter_map(|b| match b {
                SlackBlock::Section(s) => match &s.text {
                    Some(SlackBlockText::MarkDown(m)) => Some(m.text.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    #[test]
    fn huge_results_stay_inside_slack_limits() {
        let mut o = outcome(1_000_000, &"w".repeat(200));
        o.steps = vec![o.steps[0].clone(); 80];
        let c = blocks(&o);
        assert!(c.blocks.as_ref().unwrap().len() <= 50);
        for t in section_texts(&c) {
            assert!(t.chars().count() <= 3000, "{}", t.len());
        }
        let all = section_texts(&c).join("\n");
        assert!(all.contains("more rows"));
        assert!(all.contains("… and 34 more steps"));
    }

    #[test]
    fn database_values_cannot_mention_or_format() {
        let o = outcome(2, "<!channel> *bold* <@U1> & ``` ");
        let all = section_texts(&blocks(&o)).join("\n");
        assert!(!all.contains("<!channel>") && !all.contains("<@U1>"), "{all}");
        assert!(all.contains("&lt;!channel&gt;"));
        // The code fence in a value cannot end the table early.
        assert_eq!(all.matches("```").count(), 6, "{all}");
    }

    #[test]
    fn text_rendering_lists_rows_and_the_rest() {
        let o = outcome(12, "a@x.io-");
        let t = text(&o);
        assert!(t.contains("/diagnose orphans on production: warning"), "{t}");
        assert!(t.contains("a@x.io-0"));
        assert!(t.contains("12 rows"));
    }
}
