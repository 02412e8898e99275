//! The approval card and the words for each state. Pure functions; every
//! value from the database or a person is escaped.

use slack_morphism::prelude::*;

use super::plan::Plan;
use super::snapshot::{Script, Snapshot};
use super::store::{Request, State};
use crate::incident::model::human_duration;
use crate::incident::render::slack_time;
use crate::slack::text::{escape_code_block, escape_entities, fit, visible, visible_lines};

pub const ACTION_APPROVE: &str = "approval_approve";
pub const ACTION_DENY: &str = "approval_deny";

/// Slack's limit for a section's text, with room for fences.
const SECTION_MAX: usize = 2900;
/// Plan rows shown per table on the card; the hash covers all of them.
const CARD_ROWS: usize = 15;

fn md(text: String) -> SlackBlock {
    SlackBlock::Section(SlackSectionBlock::new().with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(text))))
}

pub fn emoji(s: State) -> &'static str {
    match s {
        State::Pending => ":hourglass_flowing_sand:",
        State::Approved | State::Applying => ":gear:",
        State::Applied => ":white_check_mark:",
        State::Failed | State::Interrupted => ":x:",
        State::RolledBack => ":leftwards_arrow_with_hook:",
        State::Denied => ":no_entry:",
        State::Expired => ":alarm_clock:",
    }
}

pub fn state_words(s: State) -> &'static str {
    match s {
        State::Pending => "is waiting for approval",
        State::Approved => "is approved",
        State::Applying => "is being applied",
        State::Applied => "was applied and verified",
        State::Failed => "failed",
        State::RolledBack => "was rolled back",
        State::Denied => "was denied",
        State::Expired => "expired without approval",
        State::Interrupted => "was interrupted",
    }
}

/// A cell as shown: control characters written out, long values cut
/// (the hash covers every character), NULL as `NULL`.
fn shown_cell(v: &Option<String>) -> String {
    match v {
        None => "NULL".into(),
        Some(v) => {
            let v = visible(v);
            if v.chars().count() > CELL_MAX {
                v.chars().take(CELL_MAX - 1).collect::<String>() + "…"
            } else {
                v
            }
        }
    }
}

const CELL_MAX: usize = 48;

/// The plan as fixed-width tables, `rows` per table at most.
pub fn plan_text(plan: &Plan, rows: usize) -> String {
    let mut out = String::new();
    for t in &plan.tables {
        let cells: Vec<Vec<String>> = t
            .rows
            .iter()
            .take(rows)
            .map(|r| r.iter().map(shown_cell).collect())
            .collect();
        let headers: Vec<String> = t.columns.iter().map(|c| visible(c)).collect();
        let widths: Vec<usize> = (0..headers.len())
            .map(|c| {
                cells
                    .iter()
                    .map(|r| r[c].chars().count())
                    .chain([headers[c].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |row: &[String]| {
            row.iter()
                .zip(&widths)
                .map(|(v, w)| format!("{v:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let key = t
            .key
            .as_ref()
            .map(|k| format!(", key {}", visible(k)))
            .unwrap_or_default();
        out.push_str(&format!(
            "{} ({} row{}{}{key})\n",
            visible(&t.title),
            t.rows.len(),
            if t.rows.len() == 1 { "" } else { "s" },
            if t.counts { "" } else { ", context" }
        ));
        out.push_str(&line(&headers));
        for r in &cells {
            out.push('\n');
            out.push_str(&line(r));
        }
        if t.rows.len() > rows {
            out.push_str(&format!("\n… and {} more rows", t.rows.len() - rows));
        }
        out.push_str("\n\n");
    }
    out.trim_end().to_string()
}

/// What an approver must know beyond the rows: statements not limited to
/// the plan's keys, steps no rollback can undo, the script that will run.
pub fn warnings(snapshot: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (i, a) in snapshot.def.apply.iter().enumerate() {
        if let Some(why) = &a.unrestricted {
            out.push(format!(
                "Statement {} is not limited to the planned rows: {}",
                i + 1,
                visible(why)
            ));
        }
    }
    for e in &snapshot.def.effects {
        out.push(format!(
            "Cannot be undone: {} — {}",
            visible(&e.title),
            visible(&e.cannot_undo)
        ));
    }
    if let Some(h) = &snapshot.hook {
        out.push(format!(
            "Cannot be undone by the bot: calls the deploy hook of {} ({} {})",
            visible(&h.service),
            h.method,
            h.endpoint
        ));
    }
    if let Some(f) = &snapshot.def.followup {
        out.push(format!(
            "Schedules {} {} days after it is applied; it then runs on its own (`/scheduled cancel` stops it)",
            visible(&f.title),
            f.after_days
        ));
    }
    out.extend(super::auth_admin::warnings(snapshot));
    if let Some(s) = &snapshot.script {
        out.push(format!(
            "Runs rollback script {} ({} lines, sha256 {}), posted in full in the thread",
            visible(&s.file),
            s.text.lines().count(),
            &s.sha256()[..12]
        ));
    }
    out
}

/// Everything the card warns about: the action's own warnings, then what
/// the database does on its own for the planned rows.
pub fn all_warnings(plan: Option<&Plan>, snapshot: Option<&Snapshot>) -> Vec<String> {
    let mut out = snapshot.map(warnings).unwrap_or_default();
    if let Some(p) = plan {
        out.extend(p.database.iter().cloned());
    }
    out
}

/// The plan, warnings and whole script, for `runbook-bot exec`.
pub fn plan_terminal(plan: &Plan, snapshot: &Snapshot) -> String {
    let mut out = plan_text(plan, 50);
    for w in all_warnings(Some(plan), Some(snapshot)) {
        out.push_str(&format!("\n! {w}"));
    }
    if let Some(s) = &snapshot.script {
        out.push_str(&format!("\n\n--- {} ---\n", visible(&s.file)));
        let lines: Vec<String> = s.text.lines().map(visible).collect();
        out.push_str(&lines.join("\n"));
    }
    out
}

/// A rollback script as thread messages, every line of it, each message one
/// section that fits Slack's limit.
pub fn script_messages(id: i64, script: &Script) -> Vec<SlackMessageContent> {
    let mut chunks: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in script.text.lines() {
        let line = escape_code_block(&visible(line));
        if !current.is_empty() && current.len() + line.len() + 1 > SCRIPT_CHUNK {
            chunks.push(std::mem::take(&mut current));
        }
        // A single line longer than a chunk is split; nothing is dropped.
        let mut rest = line.as_str();
        while rest.len() > SCRIPT_CHUNK {
            let cut = rest
                .char_indices()
                .map(|(i, _)| i)
                .take_while(|i| *i <= SCRIPT_CHUNK)
                .last()
                .unwrap_or(0);
            chunks.push(rest[..cut].to_string());
            rest = &rest[cut..];
        }
        current.push_str(rest);
        current.push('\n');
    }
    if !current.is_empty() || chunks.is_empty() {
        chunks.push(current);
    }
    let parts = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let head = format!(
                "*Approval #{id}* — rollback script `{}` (part {} of {parts}, sha256 `{}`)",
                escape_entities(&visible(&script.file)),
                i + 1,
                &script.sha256()[..12]
            );
            SlackMessageContent::new()
                .with_text(format!("Approval #{id}: rollback script part {} of {parts}", i + 1))
                .with_blocks(vec![md(format!("{head}\n```{body}```"))])
        })
        .collect()
}

/// Room for script text in one section, with the header and fences.
const SCRIPT_CHUNK: usize = 2600;

pub fn card(r: &Request, votes: &[String], now: i64) -> SlackMessageContent {
    let header = format!("Approval #{}: {}", r.id, r.label())
        .chars()
        .take(150)
        .collect::<String>();
    let mut blocks = vec![
        SlackBlock::Header(SlackHeaderBlock::new(SlackBlockPlainTextOnly::from(header))),
        facts(r, votes, now),
    ];
    let plan = serde_json::from_str::<Plan>(&r.plan).ok();
    if let Some(p) = &plan {
        blocks.push(plan_section(r, p));
    }
    let snapshot = r
        .snapshot
        .as_deref()
        .and_then(|s| serde_json::from_str::<Snapshot>(s).ok());
    let w = all_warnings(plan.as_ref(), snapshot.as_ref());
    if !w.is_empty() {
        let lines: Vec<String> = w.iter().map(|w| format!(":warning: {}", escape_entities(w))).collect();
        blocks.push(md(fit(lines.join("\n"), SECTION_MAX)));
    }
    if let Some(res) = &r.result {
        blocks.push(md(format!(
            "*Result:* {}",
            escape_entities(&visible_lines(res))
                .chars()
                .take(2000)
                .collect::<String>()
        )));
    }
    if r.state == State::Pending {
        blocks.push(buttons(r));
    }
    SlackMessageContent::new()
        .with_text(format!(
            "Approval #{} {}: {}",
            r.id,
            state_words(r.state),
            escape_entities(&r.label())
        ))
        .with_blocks(blocks)
}

fn short_hash(r: &Request) -> &str {
    super::plan::short(&r.plan_hash)
}

/// Who asked, where, who may approve, and where it stands.
fn facts(r: &Request, votes: &[String], now: i64) -> SlackBlock {
    let approvals = if votes.is_empty() {
        "none yet".to_string()
    } else {
        votes.iter().map(|v| format!("<@{v}>")).collect::<Vec<_>>().join(", ")
    };
    let status = match r.state {
        State::Pending => format!(
            "waiting · expires {} (in {})",
            slack_time(r.expires_at),
            human_duration(r.expires_at - now)
        ),
        s => state_words(s).to_string(),
    };
    let field = |text: String| SlackBlockText::MarkDown(SlackBlockMarkDownText::new(text));
    SlackBlock::Section(SlackSectionBlock::new().with_fields(vec![
        field(format!("*Requested by*\n<@{}>", r.requested_by)),
        field(format!("*Target*\n{}", escape_entities(&r.target))),
        field(format!(
            "*Approvers*\nlevel {} · {} needed · {approvals}",
            r.approver_level, r.approvals_needed
        )),
        field(format!("*Status*\n{} {status}", emoji(r.state))),
    ]))
}

/// The plan as a code block, cut to fit one section (the hash covers all).
fn plan_section(r: &Request, p: &Plan) -> SlackBlock {
    let text = plan_text(p, CARD_ROWS);
    let head = format!("*Plan* — touches *{}* rows · hash `{}`\n", p.touched, short_hash(r));
    let budget = SECTION_MAX - head.len() - 10;
    let mut body = escape_code_block(&text);
    if body.len() > budget {
        body = body.chars().take(budget - 20).collect::<String>() + "\n… (cut)";
    }
    md(format!("{head}```{body}```"))
}

/// Approve (behind a confirm dialog) and Deny.
fn buttons(r: &Request) -> SlackBlock {
    let confirm = SlackBlockConfirmItem::new(
        SlackBlockPlainTextOnly::from(format!("Apply approval #{}?", r.id)),
        SlackBlockText::MarkDown(SlackBlockMarkDownText::new(format!(
            "This runs `{}` on *{}*, exactly as planned (hash `{}`).",
            escape_entities(&r.label()),
            escape_entities(&r.target),
            short_hash(r)
        ))),
        SlackBlockPlainTextOnly::from("Approve"),
        SlackBlockPlainTextOnly::from("Cancel"),
    );
    SlackBlock::Actions(SlackActionsBlock::new(vec![
        SlackActionBlockElement::Button(
            SlackBlockButtonElement::new(SlackBlockPlainTextOnly::from("Approve"))
                .with_action_id(ACTION_APPROVE.into())
                .with_value(r.id.to_string())
                .with_style(SlackBlockButtonStyle::Primary)
                .with_confirm(confirm),
        ),
        SlackActionBlockElement::Button(
            SlackBlockButtonElement::new(SlackBlockPlainTextOnly::from("Deny"))
                .with_action_id(ACTION_DENY.into())
                .with_value(r.id.to_string())
                .with_style(SlackBlockButtonStyle::Danger),
        ),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::plan::{PlanTable, request_hash};
    use crate::approval::store::Words;
    use crate::config::Level;

    fn request(state: State, rows: usize) -> Request {
        let plan = Plan {
            tables: vec![PlanTable {
                id: "flags".into(),
                title: "Flags".into(),
                key: Some("name".into()),
                columns: vec!["name".into()],
                rows: (0..rows).map(|i| vec![Some(format!("<!channel> flag-{i}"))]).collect(),
                counts: true,
            }],
            touched: rows as i64,
            database: vec!["DELETE on t also runs its triggers: <!channel>".into()],
        };
        let snapshot = Snapshot::for_tests("UPDATE t SET a = 1 WHERE name = ANY($1) RETURNING name");
        Request {
            id: 4,
            command: "/rollback".into(),
            name: "flag".into(),
            words: Words(vec!["new-flow".into()]),
            target: "production".into(),
            channel: "C1".into(),
            incident_id: None,
            requested_by: "U1".into(),
            requested_at: 0,
            expires_at: 1_800_000,
            approver_level: Level::L3,
            approvals_needed: 1,
            plan_hash: request_hash(&plan, &snapshot),
            plan: serde_json::to_string(&plan).unwrap(),
            state,
            decided_by: None,
            result: None,
            snapshot: Some(snapshot.canonical()),
            lease_until: None,
            target_xid: None,
        }
    }

    #[test]
    fn pending_card_has_plan_hash_expiry_and_buttons() {
        let j = serde_json::to_string(&card(&request(State::Pending, 2), &[], 0)).unwrap();
        for part in [
            "Approval #4: /rollback flag new-flow",
            "touches *2* rows",
            ACTION_APPROVE,
            ACTION_DENY,
            "\"confirm\"",
            "in 30 m",
            "DELETE on t also runs its triggers: &lt;!channel&gt;",
        ] {
            assert!(j.contains(part), "missing {part}: {j}");
        }
        assert!(!j.contains("<!channel>"), "plan values are escaped");
    }

    #[test]
    fn typed_reasons_cannot_mention_anyone() {
        let mut r = request(State::Applied, 1);
        r.words = Words(vec!["U1".into(), "<!channel>".into(), "`x`".into()]);
        let c = card(&r, &[], 0);
        assert!(!c.text.as_ref().unwrap().contains("<!channel>"));
        for b in c.blocks.unwrap() {
            if let SlackBlock::Section(s) = b {
                assert!(!serde_json::to_string(&s).unwrap().contains("<!channel>"));
            }
        }
        assert_eq!(r.label_md(), "`/rollback flag U1 &lt;!channel&gt; 'x'`");
    }

    #[test]
    fn decided_cards_have_no_buttons_and_large_plans_are_cut() {
        let j = serde_json::to_string(&card(&request(State::Expired, 500), &["U2".into()], 0)).unwrap();
        assert!(!j.contains(ACTION_APPROVE) && j.contains("expired without approval"));
        assert!(j.contains("and 485 more rows"));
        let c = card(&request(State::Pending, 500), &[], 0);
        for b in c.blocks.unwrap() {
            if let SlackBlock::Section(s) = b
                && let Some(SlackBlockText::MarkDown(m)) = s.text
            {
                assert!(m.text.chars().count() <= 3000);
            }
        }
    }

    #[test]
    fn plan_cells_cannot_forge_lines_or_escape_sequences() {
        let mut r = request(State::Pending, 1);
        let mut plan: Plan = serde_json::from_str(&r.plan).unwrap();
        plan.tables[0].rows[0][0] = Some("ok\nflags_that_will_be_kept (0 rows)\n\u{1b}[2J".into());
        r.plan = serde_json::to_string(&plan).unwrap();
        let text = plan_text(&plan, 15);
        assert_eq!(text.lines().count(), 3, "title, header and one row: {text}");
        assert!(
            text.contains("ok\\nflags_that_will_be_kept (0 rows)\\n\\u{1b}[2J"),
            "{text}"
        );
        let j = serde_json::to_string(&card(&r, &[], 0)).unwrap();
        assert!(!j.contains("\\u001b"), "{j}");
    }

    #[test]
    fn warnings_name_unrestricted_statements_effects_hooks_and_scripts() {
        let mut s = Snapshot::for_tests("CREATE TABLE IF NOT EXISTS x (a int)");
        s.def.apply[0].plan = None;
        s.def.apply[0].unrestricted = Some("creates the backup table".into());
        s.script = Some(Script {
            file: "1.sql".into(),
            text: "SELECT 1;\nSELECT 2;".into(),
        });
        let w = warnings(&s);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("Statement 1 is not limited to the planned rows: creates the backup table"));
        assert!(w[1].contains("Runs rollback script 1.sql (2 lines"));
    }

    #[test]
    fn a_long_script_is_posted_whole_across_messages() {
        let text: String = (0..400).map(|i| format!("-- line {i} of the script\n")).collect();
        let script = Script {
            file: "20250101.sql".into(),
            text,
        };
        let msgs = script_messages(9, &script);
        assert!(msgs.len() > 1);
        let all: String = msgs.iter().map(|m| serde_json::to_string(m).unwrap()).collect();
        for i in [0, 199, 399] {
            assert!(all.contains(&format!("-- line {i} of the script")), "line {i}");
        }
        for m in &msgs {
            for b in m.blocks.clone().unwrap() {
                if let SlackBlock::Section(s) = b
                    && let Some(SlackBlockText::MarkDown(t)) = s.text
                {
                    assert!(t.text.chars().count() <= 3000);
                }
            }
        }
    }
}
