//! `[incidents]`: which severities get a dedicated channel (a "room"), what
//! it is called, who is invited, when it is archived and which emoji adds a
//! message to the timeline. Empty `dedicated_channel` keeps every incident
//! a thread in the incident channel.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::severity::Severity;
use crate::slack::ids::RoleSubject;

type Push<'a> = &'a mut dyn FnMut(&str, String);

/// Slack's limit on channel names.
pub const CHANNEL_NAME_MAX: usize = 80;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIncidents {
    dedicated_channel: Option<Vec<String>>,
    channel_name: Option<String>,
    private: Option<bool>,
    archive_after_hours: Option<u32>,
    pin_emoji: Option<String>,
    runbook_url: Option<String>,
    status_page_url: Option<String>,
    #[serde(default)]
    responders: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct IncidentsConfig {
    /// Severities whose incidents get a room.
    pub dedicated_channel: Vec<Severity>,
    /// `{number}` and `{slug}` (of the title) are filled in.
    pub channel_name: String,
    pub private: bool,
    pub archive_after_hours: u32,
    /// Reacting with this emoji (name without colons) adds the message to the timeline.
    pub pin_emoji: String,
    /// Bookmarked in every room, when set.
    pub runbook_url: Option<String>,
    pub status_page_url: Option<String>,
    /// Invited to rooms of each severity (users and user groups), p0..p3.
    pub responders: [Vec<RoleSubject>; 4],
}

impl Default for IncidentsConfig {
    fn default() -> Self {
        IncidentsConfig {
            dedicated_channel: Vec::new(),
            channel_name: "inc-{number}-{slug}".into(),
            private: false,
            archive_after_hours: 24,
            pin_emoji: "pushpin".into(),
            runbook_url: None,
            status_page_url: None,
            responders: Default::default(),
        }
    }
}

impl IncidentsConfig {
    pub fn wants_room(&self, s: Severity) -> bool {
        self.dedicated_channel.contains(&s)
    }

    pub fn responders_for(&self, s: Severity) -> &[RoleSubject] {
        &self.responders[s as usize]
    }

    pub fn archive_after_ms(&self) -> i64 {
        i64::from(self.archive_after_hours) * 3_600_000
    }
}

pub(super) fn incidents(raw: RawIncidents, push: Push<'_>) -> IncidentsConfig {
    let mut c = IncidentsConfig::default();
    for (i, s) in raw.dedicated_channel.unwrap_or_default().iter().enumerate() {
        match Severity::parse(s) {
            Ok(s) if !c.dedicated_channel.contains(&s) => c.dedicated_channel.push(s),
            Ok(_) => {}
            Err(e) => push(&format!("incidents.dedicated_channel[{i}]"), e.0),
        }
    }
    if let Some(t) = raw.channel_name {
        match check_template(&t) {
            Ok(()) => c.channel_name = t,
            Err(why) => push("incidents.channel_name", why),
        }
    }
    c.private = raw.private.unwrap_or(false);
    if let Some(h) = raw.archive_after_hours {
        if h > 24 * 90 {
            push("incidents.archive_after_hours", "must be at most 2160 (90 days)".into());
        } else {
            c.archive_after_hours = h;
        }
    }
    if let Some(e) = raw.pin_emoji {
        let e = e.trim_matches(':').to_string();
        let ok = !e.is_empty()
            && e.len() <= 100
            && e.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "-_+'".contains(ch));
        if ok {
            c.pin_emoji = e;
        } else {
            push("incidents.pin_emoji", "must be an emoji name like `pushpin`".into());
        }
    }
    c.runbook_url = url(raw.runbook_url, "incidents.runbook_url", push);
    c.status_page_url = url(raw.status_page_url, "incidents.status_page_url", push);
    for (sev, ids) in raw.responders {
        let Ok(s) = Severity::parse(&sev) else {
            push(
                &format!("incidents.responders.{sev}"),
                "must be p0, p1, p2 or p3".into(),
            );
            continue;
        };
        for (i, id) in ids.iter().enumerate() {
            match RoleSubject::parse(id) {
                Ok(subject) => c.responders[s as usize].push(subject),
                Err(e) => push(&format!("incidents.responders.{sev}[{i}]"), e.to_string()),
            }
        }
    }
    c
}

fn url(raw: Option<String>, field: &str, push: Push<'_>) -> Option<String> {
    let u = raw?;
    if u.starts_with("https://") || u.starts_with("http://") {
        Some(u)
    } else {
        push(field, "must be an http(s) URL".into());
        None
    }
}

/// A template is valid when the longest name it can make is a Slack name:
/// lowercase letters, digits, `-` and `_`, at most 80 characters (the slug
/// is cut to fit, so only the fixed part and the number count).
fn check_template(t: &str) -> Result<(), String> {
    if !t.contains("{number}") {
        return Err("must contain `{number}` so every incident gets its own name".into());
    }
    let fixed = t.replace("{number}", "").replace("{slug}", "");
    if let Some(bad) = fixed
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "`{bad}` is not allowed: Slack channel names use lowercase letters, digits, `-` and `_`"
        ));
    }
    // Room for a 10-digit number and a `-99` suffix.
    if fixed.chars().count() + 10 + 3 > CHANNEL_NAME_MAX {
        return Err(format!(
            "is too long: channel names have at most {CHANNEL_NAME_MAX} characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(raw: RawIncidents) -> (IncidentsConfig, Vec<String>) {
        let mut problems = Vec::new();
        let c = incidents(raw, &mut |f, why| problems.push(format!("{f}: {why}")));
        (c, problems)
    }

    #[test]
    fn defaults_keep_every_incident_a_thread() {
        let (c, p) = build(RawIncidents::default());
        assert!(p.is_empty());
        assert!(Severity::ALL.iter().all(|s| !c.wants_room(*s)));
        assert_eq!(c.channel_name, "inc-{number}-{slug}");
        assert_eq!(c.archive_after_hours, 24);
        assert_eq!(c.pin_emoji, "pushpin");
    }

    #[test]
    fn severities_responders_and_emoji_are_read() {
        let raw: RawIncidents = toml::from_str(
            r#"dedicated_channel = ["p0", "P1"]
               pin_emoji = ":star:"
               [responders]
               p1 = ["U0A", "S0TEAM"]"#,
        )
        .unwrap();
        let (c, p) = build(raw);
        assert!(p.is_empty(), "{p:?}");
        assert!(c.wants_room(Severity::P0) && c.wants_room(Severity::P1) && !c.wants_room(Severity::P3));
        assert_eq!(c.responders_for(Severity::P1).len(), 2);
        assert_eq!(c.pin_emoji, "star");
    }

    #[test]
    fn every_bad_value_is_named() {
        let raw: RawIncidents = toml::from_str(
            r#"dedicated_channel = ["p9"]
               channel_name = "Incident {number}"
               archive_after_hours = 99999
               pin_emoji = "no spaces"
               runbook_url = "ftp://x"
               [responders]
               p7 = ["U0A"]
               p1 = ["bob"]"#,
        )
        .unwrap();
        let (_, p) = build(raw);
        let fields: Vec<_> = p.iter().map(|s| s.split(':').next().unwrap()).collect();
        assert_eq!(
            fields,
            [
                "incidents.dedicated_channel[0]",
                "incidents.channel_name",
                "incidents.archive_after_hours",
                "incidents.pin_emoji",
                "incidents.runbook_url",
                "incidents.responders.p1[0]",
                "incidents.responders.p7"
            ]
        );
        assert!(p[1].contains("`I` is not allowed"), "{}", p[1]);
    }

    #[test]
    fn templates_need_a_number_and_a_slack_length() {
        assert!(check_template("inc-{number}-{slug}").is_ok());
        assert!(check_template("inc-{slug}").unwrap_err().contains("{number}"));
        assert!(check_template(&format!("{}-{{number}}", "a".repeat(70))).is_err());
    }
}
