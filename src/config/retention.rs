//! How long the state store keeps what it no longer needs (`[retention]`)
//! and how much one person can make the bot write or say (`[abuse]`).

use std::time::Duration;

use serde::Deserialize;

type Push<'a> = &'a mut dyn FnMut(&str, String);

const DAY_MS: i64 = 24 * 3_600_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetention {
    events_days: Option<u32>,
    inbox_days: Option<u32>,
    sent_days: Option<u32>,
    failed_days: Option<u32>,
    alerts_days: Option<u32>,
    messages_days: Option<u32>,
    audit_days: Option<u32>,
}

/// Days each kind of row is kept (see `store::janitor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Events API ids (Slack retries for about an hour).
    pub events_days: u32,
    /// Processed alert payloads.
    pub inbox_days: u32,
    /// Delivered and superseded outbox rows.
    pub sent_days: u32,
    /// Failed outbox rows and alert payloads that could not be handled.
    pub failed_days: u32,
    /// Alerts not seen for this long, unless on an open incident.
    pub alerts_days: u32,
    /// Message keys of incidents resolved and approvals finished this long ago.
    pub messages_days: u32,
    /// The audit log and the timelines of resolved incidents.
    pub audit_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            events_days: 1,
            inbox_days: 7,
            sent_days: 7,
            failed_days: 30,
            alerts_days: 30,
            messages_days: 30,
            audit_days: 400,
        }
    }
}

impl RetentionConfig {
    /// A day count as milliseconds, for comparing with stored times.
    pub fn ms(days: u32) -> i64 {
        i64::from(days) * DAY_MS
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAbuse {
    refusal_window_secs: Option<u64>,
    mention_burst: Option<u32>,
    mention_refill_secs: Option<u64>,
    max_tracked_users: Option<usize>,
}

/// Per-user limits on what a person can make the bot record or post.
#[derive(Debug, Clone)]
pub struct AbuseConfig {
    /// A click refused for want of level is recorded and answered once per
    /// user per window; repeats within it are dropped and counted.
    pub refusal_window: Duration,
    /// @mentions answered at once per user ...
    pub mention_burst: u32,
    /// ... then one more per this interval.
    pub mention_refill: Duration,
    /// Users each limiter remembers; beyond that, idle ones are forgotten
    /// and, when none is idle, a new user is treated as over the limit.
    pub max_tracked_users: usize,
}

impl Default for AbuseConfig {
    fn default() -> Self {
        AbuseConfig {
            refusal_window: Duration::from_secs(60),
            mention_burst: 3,
            mention_refill: Duration::from_secs(20),
            max_tracked_users: 10_000,
        }
    }
}

pub(super) fn retention(raw: RawRetention, push: Push<'_>) -> RetentionConfig {
    let mut c = RetentionConfig::default();
    let fields: [(&str, Option<u32>, &mut u32); 7] = [
        ("events_days", raw.events_days, &mut c.events_days),
        ("inbox_days", raw.inbox_days, &mut c.inbox_days),
        ("sent_days", raw.sent_days, &mut c.sent_days),
        ("failed_days", raw.failed_days, &mut c.failed_days),
        ("alerts_days", raw.alerts_days, &mut c.alerts_days),
        ("messages_days", raw.messages_days, &mut c.messages_days),
        ("audit_days", raw.audit_days, &mut c.audit_days),
    ];
    for (name, given, slot) in fields {
        match given {
            Some(d) if (1..=36_500).contains(&d) => *slot = d,
            Some(_) => push(&format!("retention.{name}"), "must be between 1 and 36500 days".into()),
            None => {}
        }
    }
    let longest_other = [
        c.events_days,
        c.inbox_days,
        c.sent_days,
        c.failed_days,
        c.alerts_days,
        c.messages_days,
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    if c.audit_days < longest_other {
        push(
            "retention.audit_days",
            format!("the audit is kept longest: at least {longest_other} days, the longest other retention"),
        );
    }
    c
}

pub(super) fn abuse(raw: RawAbuse, push: Push<'_>) -> AbuseConfig {
    let mut c = AbuseConfig::default();
    match raw.refusal_window_secs {
        Some(s) if (1..=86_400).contains(&s) => c.refusal_window = Duration::from_secs(s),
        Some(_) => push("abuse.refusal_window_secs", "must be between 1 and 86400".into()),
        None => {}
    }
    match raw.mention_burst {
        Some(n) if (1..=100).contains(&n) => c.mention_burst = n,
        Some(_) => push("abuse.mention_burst", "must be between 1 and 100".into()),
        None => {}
    }
    match raw.mention_refill_secs {
        Some(s) if (1..=86_400).contains(&s) => c.mention_refill = Duration::from_secs(s),
        Some(_) => push("abuse.mention_refill_secs", "must be between 1 and 86400".into()),
        None => {}
    }
    match raw.max_tracked_users {
        Some(n) if (10..=1_000_000).contains(&n) => c.max_tracked_users = n,
        Some(_) => push("abuse.max_tracked_users", "must be between 10 and 1000000".into()),
        None => {}
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_is_kept_longest_and_days_are_bounded() {
        let mut fields = Vec::new();
        let raw = RawRetention {
            failed_days: Some(0),
            alerts_days: Some(90),
            audit_days: Some(60),
            ..RawRetention::default()
        };
        let c = retention(raw, &mut |f: &str, _: String| fields.push(f.to_string()));
        assert_eq!(fields, ["retention.failed_days", "retention.audit_days"]);
        assert_eq!(c.alerts_days, 90);
        let mut none = Vec::new();
        let d = retention(RawRetention::default(), &mut |f: &str, _: String| {
            none.push(f.to_string())
        });
        assert!(none.is_empty());
        assert_eq!(d, RetentionConfig::default());
    }

    #[test]
    fn abuse_limits_are_bounded() {
        let mut fields = Vec::new();
        let raw = RawAbuse {
            refusal_window_secs: Some(0),
            mention_burst: Some(0),
            mention_refill_secs: Some(5),
            max_tracked_users: Some(1),
        };
        let c = abuse(raw, &mut |f: &str, _: String| fields.push(f.to_string()));
        assert_eq!(
            fields,
            [
                "abuse.refusal_window_secs",
                "abuse.mention_burst",
                "abuse.max_tracked_users"
            ]
        );
        assert_eq!(c.mention_refill, Duration::from_secs(5));
    }
}
