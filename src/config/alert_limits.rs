//! What keeps an alert storm bounded: `[alerts.grouping]` (one incident
//! and one updated message per alert group), `[alerts.auto_diagnose]` (one
//! run per incident per diagnostic per window, a global cap on concurrent
//! runs) and each route's `storm` limit on the incidents it declares.

use std::time::Duration;

use serde::Deserialize;

type Push<'a> = &'a mut dyn FnMut(&str, String);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGrouping {
    window_minutes: Option<u64>,
    threshold: Option<u32>,
}

/// How alerts of one group (Alertmanager's `groupKey`, else the route's
/// `group_by` labels) are kept together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    /// A group stays the same group (one incident, one grouped message)
    /// while its alerts keep arriving within this of each other.
    pub window: Duration,
    /// More new alerts than this in one notification of a group: one grouped
    /// message updated in place instead of a post per alert.
    pub threshold: u32,
}

impl Default for Grouping {
    fn default() -> Self {
        Grouping {
            window: Duration::from_secs(60 * 60),
            threshold: 3,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAutoDiagnose {
    max_concurrent: Option<u32>,
    window_minutes: Option<u64>,
}

/// The budget of diagnostics alert routes run on their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoDiagnoseBudget {
    /// Automatic diagnostics running at once, bot-wide; more are skipped
    /// (and said so in the thread), not queued. Below the target pool's
    /// size, so people's `/diagnose` keeps connections.
    pub max_concurrent: u32,
    /// A diagnostic runs at most once per incident (or alert thread) in this.
    pub window: Duration,
}

impl Default for AutoDiagnoseBudget {
    fn default() -> Self {
        AutoDiagnoseBudget {
            max_concurrent: 2,
            window: Duration::from_secs(30 * 60),
        }
    }
}

/// A route's declare rate limit: beyond `incidents` declared in `minutes`,
/// new groups attach to the route's newest open incident (storm mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StormLimit {
    pub incidents: u32,
    pub minutes: u32,
}

impl Default for StormLimit {
    fn default() -> Self {
        StormLimit {
            incidents: 3,
            minutes: 10,
        }
    }
}

impl StormLimit {
    pub fn window_ms(&self) -> i64 {
        i64::from(self.minutes) * 60_000
    }
}

fn minutes(field: &str, raw: Option<u64>, default: Duration, push: Push<'_>) -> Duration {
    match raw {
        None => default,
        Some(m) if (1..=7 * 24 * 60).contains(&m) => Duration::from_secs(m * 60),
        Some(_) => {
            push(field, "must be between 1 and 10080 (a week)".into());
            default
        }
    }
}

pub(super) fn grouping(raw: RawGrouping, push: Push<'_>) -> Grouping {
    let d = Grouping::default();
    let threshold = match raw.threshold {
        Some(0) => {
            push("alerts.grouping.threshold", "must be at least 1".into());
            d.threshold
        }
        Some(t) => t,
        None => d.threshold,
    };
    Grouping {
        window: minutes("alerts.grouping.window_minutes", raw.window_minutes, d.window, push),
        threshold,
    }
}

pub(super) fn auto_diagnose(raw: RawAutoDiagnose, push: Push<'_>) -> AutoDiagnoseBudget {
    let d = AutoDiagnoseBudget::default();
    let max_concurrent = match raw.max_concurrent {
        Some(n) if !(1..=64).contains(&n) => {
            push("alerts.auto_diagnose.max_concurrent", "must be between 1 and 64".into());
            d.max_concurrent
        }
        Some(n) => n,
        None => d.max_concurrent,
    };
    AutoDiagnoseBudget {
        max_concurrent,
        window: minutes(
            "alerts.auto_diagnose.window_minutes",
            raw.window_minutes,
            d.window,
            push,
        ),
    }
}

/// A route's `group_by` and `storm`.
pub(super) fn check_route(i: usize, group_by: &[String], storm: &StormLimit, push: Push<'_>) {
    for (j, label) in group_by.iter().enumerate() {
        if label.trim().is_empty() {
            push(&format!("alerts.routes[{i}].group_by[{j}]"), "must not be empty".into());
        } else if group_by[..j].contains(label) {
            push(
                &format!("alerts.routes[{i}].group_by[{j}]"),
                format!("`{label}` is listed twice"),
            );
        }
    }
    if storm.incidents == 0 {
        push(
            &format!("alerts.routes[{i}].storm.incidents"),
            "must be at least 1".into(),
        );
    }
    if !(1..=24 * 60).contains(&storm.minutes) {
        push(
            &format!("alerts.routes[{i}].storm.minutes"),
            "must be between 1 and 1440 (a day)".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const BASE: &str = r#"
        [slack]
        bot_token = "xoxb-1"
        incident_channel = "C0INC"
    "#;

    fn parse(extra: &str) -> Result<Config, Vec<crate::config::Problem>> {
        Config::parse("f.toml", &format!("{BASE}\n{extra}"), &|_| None)
    }

    #[test]
    fn defaults_apply_and_keys_are_read() {
        let c = parse("").unwrap();
        assert_eq!(c.alerts.grouping.threshold, 3);
        assert_eq!(c.alerts.grouping.window.as_secs(), 3600);
        assert_eq!(c.alerts.auto_diagnose.max_concurrent, 2);
        assert_eq!(c.alerts.auto_diagnose.window.as_secs(), 1800);
        let c = parse(
            r#"
            [alerts.grouping]
            window_minutes = 15
            threshold = 5
            [alerts.auto_diagnose]
            max_concurrent = 3
            window_minutes = 60
            [[alerts.routes]]
            group_by = ["alertname", "cluster"]
            storm = { incidents = 2, minutes = 5 }
            [[alerts.routes]]
            declare = "p2"
            "#,
        )
        .unwrap();
        assert_eq!(
            (c.alerts.grouping.threshold, c.alerts.grouping.window.as_secs()),
            (5, 900)
        );
        assert_eq!(c.alerts.auto_diagnose.max_concurrent, 3);
        let r = &c.alerts.routes;
        assert_eq!(r[0].group_by, ["alertname", "cluster"]);
        assert_eq!((r[0].storm.incidents, r[0].storm.window_ms()), (2, 300_000));
        assert_eq!((r[1].storm.incidents, r[1].storm.minutes), (3, 10), "the default limit");
    }

    #[test]
    fn bad_values_name_their_field() {
        let e = parse(
            r#"
            [alerts.grouping]
            window_minutes = 0
            threshold = 0
            [alerts.auto_diagnose]
            max_concurrent = 0
            [[alerts.routes]]
            group_by = ["service", "", "service"]
            storm = { incidents = 0, minutes = 0 }
            "#,
        )
        .unwrap_err();
        let fields: Vec<_> = e.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "alerts.grouping.threshold",
                "alerts.grouping.window_minutes",
                "alerts.auto_diagnose.max_concurrent",
                "alerts.routes[0].group_by[1]",
                "alerts.routes[0].group_by[2]",
                "alerts.routes[0].storm.incidents",
                "alerts.routes[0].storm.minutes",
            ]
        );
        for extra in [
            "[alerts.grouping]\nwindow = 5\n",
            "[alerts.auto_diagnose]\nconcurrency = 5\n",
            "[[alerts.routes]]\nstorm = { incidents = 2, window = 5 }\n",
        ] {
            let e = parse(extra).unwrap_err();
            assert!(e[0].why.contains("unknown field"), "{extra}: {}", e[0]);
        }
    }
}
