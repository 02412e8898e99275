//! The approval card and the words for each state. Pure functions; every
//! value from the database or a person is escaped.

use slack_morphism::prelude::*;

use super::plan::Plan;
use super::store::{Request, State};
use crate::incident::model::human_duration;
use crate::incident::render::slack_time;
use crate::slack::text::{escape_code_block, escape_entities};

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

/// The plan as fixed-width tables, `rows` per table at most.
pub fn plan_text(plan: &Plan, rows: usize) -> String {
    let mut out = String::new();
    for t in &plan.tables {
        let widths: Vec<usize> = (0..t.columns.len())
            .map(|c| {
                t.rows
                    .iter()
                    .take(rows)
                    .map(|r| r[c].chars().count().min(40))
                    .chain([t.columns[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            cells
                .iter()
                .zip(&widths)
                .map(|(v, w)| {
                    let v: String = v.chars().take(40).collect();
                    format!("{v:<w$}")
                })
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        out.push_str(&format!(
            "{} ({} row{}{})\n",
            t.title,
            t.rows.len(),
            if t.rows.len() == 1 { "" } else { "s" },
            if t.counts { "" } else { ", context" }
        ));
        out.push_str(&line(&t.columns));
        for r in t.rows.iter().take(rows) {
            out.push('\n');
            out.push_str(&line(r));
        }
        if t.rows.len() > rows {
            out.push_str(&format!("\n… and {} more rows", t.rows.len() - rows));
        }
        out.push_str("\n\n");
    }
    for n in &plan.notes {
        out.push_str(n);
        out.push('\n');
    }
    out.trim_end().to_string()
}

pub fn card(r: &Request, votes: &[String], now: i64) -> SlackMessageContent {
    let header = format!("Approval #{}: {}", r.id, r.label())
        .chars()
        .take(150)
        .collect::<String>();
    let mut blocks = vec![
        SlackBlock::Header(SlackHeaderBlock::new(SlackBlockPlainTextOnly::from(header))),
        facts(r, votes, now),
    ];
    if let Ok(p) = serde_json::from_str::<Plan>(&r.plan) {
        blocks.push(plan_section(r, &p));
    }
    if let Some(res) = &r.result {
        blocks.push(md(format!(
            "*Result:* {}",
            escape_entities(res).chars().take(2000).collect::<String>()
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
    &r.plan_hash[..12.min(r.plan_hash.len())]
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
    use crate::approval::plan::PlanTable;
    use crate::config::Level;

    fn request(state: State, rows: usize) -> Request {
        let plan = Plan {
            tables: vec![PlanTable {
                title: "Flags".into(),
                columns: vec!["name".into()],
                rows: (0..rows).map(|i| vec![format!("<!channel> flag-{i}")]).collect(),
                counts: true,
            }],
            touched: rows as i64,
            notes: vec![],
        };
        Request {
            id: 4,
            command: "/rollback".into(),
            name: "flag".into(),
            words: crate::approval::store::Words(vec!["new-flow".into()]),
            target: "production".into(),
            channel: "C1".into(),
            incident_id: None,
            requested_by: "U1".into(),
            requested_at: 0,
            expires_at: 1_800_000,
            approver_level: Level::L3,
            approvals_needed: 1,
            plan_hash: plan.hash(),
            plan: serde_json::to_string(&plan).unwrap(),
            state,
            decided_by: None,
            result: None,
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
        ] {
            assert!(j.contains(part), "missing {part}: {j}");
        }
        assert!(!j.contains("<!channel>"), "plan values are escaped");
    }

    #[test]
    fn typed_reasons_cannot_mention_anyone() {
        let mut r = request(State::Applied, 1);
        r.words = crate::approval::store::Words(vec!["U1".into(), "<!channel>".into(), "`x`".into()]);
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
}
