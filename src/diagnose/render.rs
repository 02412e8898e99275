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
    format!("{} {}{args} on {}: {}", o.command, o.name, o.target, o.verdict.words())
}

pub fn blocks(o: &Outcome) -> SlackMessageContent {
    let mut blocks = vec![
        SlackBlock::Header(SlackHeaderBlock::new(SlackBlockPlainTextOnly::from(truncate(
            &format!("{} {} · {}", o.command, o.name, o.target),
            150,
        )))),
        md(format!(
            "{} *{}* — {} · {} step{} · {} · {}{}",
            o.verdict.emoji(),
            o.verdict.words(),
            escape_entities(&o.summary),
            o.steps.len(),
            if o.steps.len() == 1 { "" } else { "s" },
            tally(o),
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
    let mut head = format!(
        "{} *{}* — {}",
        s.verdict.emoji(),
        escape_entities(&s.title),
        escape_entities(&status(s, true))
    );
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

/// A step's note (with "could not check:" when it says why, for readers
/// without the verdict's word beside it) and its row count when it ran.
fn status(s: &StepOutcome, say_verdict: bool) -> String {
    let mut parts = Vec::new();
    if let Some(note) = &s.note {
        parts.push(match s.verdict {
            Verdict::CouldNotCheck if say_verdict => format!("{}: {note}", s.verdict.words()),
            _ => note.clone(),
        });
    }
    if s.note.is_none() || s.table.total > 0 {
        parts.push(format!(
            "{} row{} · {}",
            s.table.total,
            if s.table.total == 1 { "" } else { "s" },
            ms(s.elapsed)
        ));
    }
    parts.join(" · ")
}

/// The same result for a terminal.
pub fn text(o: &Outcome) -> String {
    let mut out = format!("{} — {} ({}, {})\n", headline(o), o.summary, tally(o), ms(o.elapsed));
    for s in &o.steps {
        out.push_str(&format!("\n[{}] {} — {}", s.verdict.words(), s.title, status(s, false)));
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

/// Findings and steps that could not check, counted apart: "2 findings ·
/// 1 step could not check". Shown in the summary and on the timeline.
pub fn tally(o: &Outcome) -> String {
    let count = |f: fn(Verdict) -> bool| o.steps.iter().filter(|s| f(s.verdict)).count();
    let findings = count(|v| v >= Verdict::Warning);
    let unchecked = count(|v| v == Verdict::CouldNotCheck);
    let mut t = format!("{findings} finding{}", if findings == 1 { "" } else { "s" });
    if unchecked > 0 {
        t.push_str(&format!(
            " · {unchecked} step{} could not check",
            if unchecked == 1 { "" } else { "s" }
        ));
    }
    t
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

    fn could_not_check(mut o: Outcome) -> Outcome {
        for s in &mut o.steps {
            s.verdict = Verdict::CouldNotCheck;
            s.note = Some("relation \"public.users\" does not exist (42P01) on production".into());
            s.table = Table::default();
        }
        o.verdict = Verdict::CouldNotCheck;
        o
    }

    #[test]
    fn a_diagnostic_that_could_not_check_never_reads_healthy() {
        let o = could_not_check(outcome(0, "x"));
        assert_eq!(headline(&o), "/diagnose orphans on production: could not check");
        assert_eq!(tally(&o), "0 findings · 3 steps could not check");
        let c = blocks(&o);
        let all = section_texts(&c).join("\n");
        assert!(!all.contains(":large_green_circle:") && !all.contains("*ok*"), "{all}");
        assert!(
            all.starts_with(
                ":grey_question: *could not check* — Orphans · 3 steps · 0 findings · 3 steps could not check"
            ),
            "{all}"
        );
        assert!(
            all.contains(":grey_question: *Users without an account* — could not check: relation \"public.users\""),
            "{all}"
        );
        let t = text(&o);
        assert!(
            t.contains("on production: could not check — Orphans (0 findings · 3 steps could not check"),
            "{t}"
        );
        assert!(
            t.contains("[could not check] Users without an account — relation"),
            "{t}"
        );
    }

    #[test]
    fn findings_and_unchecked_steps_are_counted_apart() {
        let mut o = outcome(2, "a");
        o.steps[1].verdict = Verdict::CouldNotCheck;
        o.steps[1].note = Some("extension `pg_stat_statements` is not installed on production".into());
        o.steps[2].verdict = Verdict::Critical;
        assert_eq!(tally(&o), "2 findings · 1 step could not check");
        o.steps[0].verdict = Verdict::Ok;
        o.steps[2].verdict = Verdict::Ok;
        assert_eq!(tally(&o), "0 findings · 1 step could not check");
        // A note about rows that were read keeps the rows beside it.
        o.steps[1].table.total = 2;
        assert!(status(&o.steps[1], true).starts_with("could not check: extension"));
        assert!(
            status(&o.steps[1], true).ends_with("2 rows · 12 ms"),
            "{}",
            status(&o.steps[1], true)
        );
        assert_eq!(status(&o.steps[0], false), "2 rows · 12 ms");
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
