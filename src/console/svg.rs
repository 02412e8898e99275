//! Charts drawn on the server as inline SVG, so the console needs no
//! JavaScript: an incident's timeline on a time axis (one lane per kind of
//! event, a mark per event with its text as the tooltip) and weekly bars.
//! Pure functions of their data; maud escapes every label.

use maud::{Markup, html};

const WIDTH: f64 = 960.0;
const LEFT: f64 = 120.0;
const RIGHT: f64 = 20.0;
const LANE_H: f64 = 36.0;
const AXIS_H: f64 = 28.0;
const TOOLTIP_MAX: usize = 160;

/// The timeline's lanes, top to bottom.
pub const LANES: [&str; 5] = ["Alerts", "Commands", "Diagnostics", "Approvals", "Escalation"];

/// Which lane an event kind goes in, and the CSS class of its mark (alerts
/// by firing/resolved, diagnostics by verdict, approvals by outcome).
pub fn lane(kind: &str, text: &str) -> (usize, &'static str) {
    let lower = text.to_ascii_lowercase();
    match kind {
        "alert" if lower.contains("resolved") => (0, "ok"),
        "alert" => (0, "critical"),
        "diagnostic" => {
            let verdict = lower.split(" (").next().unwrap_or("");
            let class = if verdict.ends_with(": critical") {
                "critical"
            } else if verdict.ends_with(": warning") {
                "warning"
            } else if verdict.ends_with(": could not check") {
                "unknown"
            } else {
                "ok"
            };
            (2, class)
        }
        k if k.starts_with("action_") || k.starts_with("approval_") || k == "recovery_link_sent" => {
            let class = match k {
                "action_applied" | "approval_vote" => "ok",
                "action_failed" | "action_rolled_back" | "approval_denied" | "action_interrupted" => "critical",
                "approval_expired" | "approval_refused" | "action_result_late" => "warning",
                _ => "info",
            };
            (3, class)
        }
        "escalation" => (4, "warning"),
        "resolved" => (1, "ok"),
        "declared" => (1, "critical"),
        _ => (1, "info"),
    }
}

/// A point on the timeline.
pub struct Mark<'a> {
    pub at: i64,
    pub kind: &'a str,
    pub text: &'a str,
}

fn x_of(at: i64, start: i64, end: i64) -> f64 {
    let span = (end - start).max(1) as f64;
    LEFT + ((at - start).clamp(0, end - start) as f64 / span) * (WIDTH - LEFT - RIGHT)
}

/// Tick labels: clock times within a day, dates beyond.
fn tick_label(ms: i64, span_ms: i64) -> String {
    let fmt = if span_ms <= 86_400_000 { "%H:%M" } else { "%m-%d %H:%M" };
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format(fmt).to_string())
        .unwrap_or_default()
}

fn short(text: &str) -> String {
    if text.chars().count() <= TOOLTIP_MAX {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(TOOLTIP_MAX).collect::<String>())
    }
}

/// The incident's timeline from `start` to `end` (UTC ms).
pub fn timeline(start: i64, end: i64, marks: &[Mark<'_>]) -> Markup {
    let end = end.max(start + 60_000);
    let height = LANE_H * LANES.len() as f64 + AXIS_H;
    let plot_bottom = LANE_H * LANES.len() as f64;
    let ticks: Vec<i64> = (0..=5).map(|i| start + (end - start) * i / 5).collect();
    html! {
        svg.chart.timeline xmlns="http://www.w3.org/2000/svg" role="img" viewBox=(format!("0 0 {WIDTH} {height}"))
            aria-label="Incident timeline" {
            title { "Incident timeline" }
            @for (i, name) in LANES.iter().enumerate() {
                @let y = LANE_H * i as f64 + LANE_H / 2.0;
                line.lane x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y) y2=(y) {}
                text.lane-label x="8" y=(y + 4.0) { (name) }
            }
            @for t in &ticks {
                @let x = x_of(*t, start, end);
                line.tick x1=(x) x2=(x) y1="0" y2=(plot_bottom) {}
                text.tick-label x=(x) y=(plot_bottom + 18.0) text-anchor="middle" { (tick_label(*t, end - start)) }
            }
            @for m in marks {
                @let (lane, class) = lane(m.kind, m.text);
                circle class=(format!("mark {class}")) cx=(format!("{:.1}", x_of(m.at, start, end)))
                    cy=(LANE_H * lane as f64 + LANE_H / 2.0) r="5" {
                    title { (tick_label(m.at, 0)) " " (m.kind) ": " (short(m.text)) }
                }
            }
        }
    }
}

/// One bar of a weekly chart.
pub struct Bar {
    pub label: String,
    pub value: f64,
    /// Shown in the tooltip and above the bar.
    pub shown: String,
}

/// Vertical bars, one per week, scaled to the largest.
pub fn bars(title: &str, unit: &str, bars: &[Bar]) -> Markup {
    let height = 220.0;
    let plot_h = 160.0;
    let top = 24.0;
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max).max(1e-9);
    let slot = (WIDTH - LEFT - RIGHT) / bars.len().max(1) as f64;
    html! {
        svg.chart.bars xmlns="http://www.w3.org/2000/svg" role="img" viewBox=(format!("0 0 {WIDTH} {height}"))
            aria-label=(title) {
            title { (title) }
            text.lane-label x="8" y="16" { (unit) }
            line.tick x1=(LEFT) x2=(WIDTH - RIGHT) y1=(top + plot_h) y2=(top + plot_h) {}
            @for (i, b) in bars.iter().enumerate() {
                @let h = b.value / max * plot_h;
                @let x = LEFT + slot * i as f64 + slot * 0.15;
                rect.bar x=(format!("{x:.1}")) y=(format!("{:.1}", top + plot_h - h)) width=(format!("{:.1}", slot * 0.7))
                    height=(format!("{h:.1}")) {
                    title { (b.label) ": " (b.shown) }
                }
                text.value x=(format!("{:.1}", x + slot * 0.35)) y=(format!("{:.1}", top + plot_h - h - 4.0)) text-anchor="middle" {
                    (b.shown)
                }
                text.tick-label x=(format!("{:.1}", x + slot * 0.35)) y=(top + plot_h + 18.0) text-anchor="middle" { (b.label) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_land_in_their_lanes_with_their_outcome() {
        assert_eq!(lane("alert", "HighErrorRate firing on api"), (0, "critical"));
        assert_eq!(lane("alert", "HighErrorRate resolved"), (0, "ok"));
        assert_eq!(
            lane("diagnostic", "/diagnose orphans on production: critical (2 findings)"),
            (2, "critical")
        );
        assert_eq!(
            lane("diagnostic", "/diagnose bloat on production: ok (0 findings)"),
            (2, "ok")
        );
        assert_eq!(
            lane("diagnostic", "/diagnose x on p: could not check (0 findings)"),
            (2, "unknown")
        );
        assert_eq!(lane("action_requested", "x"), (3, "info"));
        assert_eq!(lane("action_applied", "x"), (3, "ok"));
        assert_eq!(lane("approval_denied", "x"), (3, "critical"));
        assert_eq!(lane("escalation", "Escalation step 1"), (4, "warning"));
        assert_eq!(lane("status", "rolling back"), (1, "info"));
    }

    #[test]
    fn marks_sit_on_the_time_axis_and_labels_are_escaped() {
        let marks = [
            Mark {
                at: 0,
                kind: "declared",
                text: "<script>alert(1)</script>",
            },
            Mark {
                at: 600_000,
                kind: "resolved",
                text: "done",
            },
        ];
        let svg = timeline(0, 600_000, &marks).into_string();
        assert!(svg.contains(&format!("cx=\"{LEFT:.1}\"")), "{svg}");
        assert!(svg.contains(&format!("cx=\"{:.1}\"", WIDTH - RIGHT)), "{svg}");
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
        assert_eq!(svg.matches("<circle").count(), 2);
    }

    #[test]
    fn bars_scale_to_the_largest() {
        let b = |v: f64| Bar {
            label: "w".into(),
            value: v,
            shown: v.to_string(),
        };
        let svg = bars("Incidents", "count", &[b(2.0), b(4.0)]).into_string();
        assert!(
            svg.contains("height=\"80.0\"") && svg.contains("height=\"160.0\""),
            "{svg}"
        );
        assert!(bars("Empty", "count", &[]).into_string().contains("<svg"));
    }
}
