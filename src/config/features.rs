//! What a configuration turns on. Everything beyond Slack itself is
//! optional and off until configured; `serve` logs one line per feature and
//! `check` prints them, so a first run says what it will and will not do.

use std::fmt;

use super::Config;

/// One optional part of the bot, on or off, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    pub on: bool,
    /// When on: what it covers. When off: how to turn it on.
    pub detail: String,
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.on { "on" } else { "off" };
        write!(f, "{}: {state} ({})", self.name, self.detail)
    }
}

fn feature(name: &'static str, on: bool, when_on: impl FnOnce() -> String, when_off: &str) -> Feature {
    let detail = if on { when_on() } else { when_off.to_string() };
    Feature { name, on, detail }
}

fn list(names: impl Iterator<Item = impl AsRef<str>>) -> String {
    names.map(|n| n.as_ref().to_string()).collect::<Vec<_>>().join(", ")
}

impl Config {
    pub fn features(&self) -> Vec<Feature> {
        let slack = &self.slack;
        let targets = &self.targets;
        let hooks = &self.deploy_hooks;
        let alerts = &self.alerts;
        let polled = self.health_checks.len() + targets.len();
        vec![
            feature(
                "slack http",
                slack.signing_secret.is_some(),
                || "POST /slack/commands, /slack/interactions, /slack/events, signature checked".into(),
                "no signing secret: /slack/* answers 401; set SLACK_SIGNING_SECRET to receive Slack over HTTP",
            ),
            feature(
                "socket mode",
                slack.app_token.is_some(),
                || {
                    format!(
                        "{} connections opened with apps.connections.open",
                        slack.socket_connections
                    )
                },
                "set SLACK_APP_TOKEN (xapp-…) to receive Slack over WebSockets, without a public URL",
            ),
            feature(
                "targets",
                !targets.is_empty(),
                || match &self.default_target {
                    Some(d) => format!("{} (default {d})", list(targets.keys())),
                    None => list(targets.keys()),
                },
                "no [targets]: /diagnose and actions answer that no database is configured",
            ),
            feature(
                "password reset",
                !self.supabase_auth.is_empty(),
                || format!("Supabase Auth admin API for {}", list(self.supabase_auth.keys())),
                "no target sets supabase_url and service_role_key",
            ),
            feature(
                "deploy hooks",
                !hooks.is_empty(),
                || format!("/rollback deploy for {}", list(hooks.keys())),
                "no [deploy_hooks]: /rollback deploy has no service to call",
            ),
            feature(
                "alert intake",
                alerts.token.is_some(),
                || format!("POST /alerts/{{source}}, {} routes", alerts.routes.len()),
                "set ALERT_WEBHOOK_TOKEN (or alerts.token) to accept monitoring webhooks",
            ),
            feature(
                "health poller",
                !alerts.health_poll.is_zero() && polled > 0,
                || {
                    let every = alerts.health_poll.as_secs();
                    let n = self.health_checks.len();
                    format!("{n} endpoints and {} targets every {every} s", targets.len())
                },
                "no [[health_checks]] or targets to probe, or alerts.health_poll_seconds = 0",
            ),
            feature(
                "incident channels",
                !self.incidents.dedicated_channel.is_empty(),
                || {
                    let levels = list(self.incidents.dedicated_channel.iter().map(|s| s.as_str()));
                    let h = self.incidents.archive_after_hours;
                    format!("a channel per {levels} incident, archived {h} h after resolve")
                },
                "every incident is a thread; set incidents.dedicated_channel = [\"p0\", \"p1\"] for their own channels",
            ),
            feature(
                "incident console",
                self.console.public_url().is_some(),
                || {
                    let url = self.console.public_url().unwrap_or_default();
                    format!("{url}/console, sign-in links from /incident console")
                },
                "set console.enabled = true and console.public_url to review incidents in a browser",
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    fn states(c: &Config) -> Vec<(&'static str, bool)> {
        c.features().iter().map(|f| (f.name, f.on)).collect()
    }

    #[test]
    fn a_minimal_config_has_only_slack_on_and_says_how_to_turn_the_rest_on() {
        let text = "[slack]\nincident_channel = \"C0INC\"\n";
        let c = Config::parse(
            "f.toml",
            text,
            &env(&[("SLACK_BOT_TOKEN", "xoxb-1"), ("SLACK_SIGNING_SECRET", "s")]),
        )
        .unwrap();
        let on: Vec<_> = states(&c).into_iter().filter(|(_, on)| *on).map(|(n, _)| n).collect();
        assert_eq!(on, ["slack http"]);
        let lines: Vec<String> = c.features().iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 9);
        assert!(lines.contains(
            &"alert intake: off (set ALERT_WEBHOOK_TOKEN (or alerts.token) to accept monitoring webhooks)".to_string()
        ));
        assert!(
            lines[1].starts_with("socket mode: off (set SLACK_APP_TOKEN"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn configured_features_are_on_and_name_what_they_cover() {
        let text = r#"
            [slack]
            incident_channel = "C0INC"
            [targets.production]
            url = "postgres://x@db/app"
            [deploy_hooks.api]
            url = "https://deploy.example.com/hook"
            [incidents]
            dedicated_channel = ["p0", "p1"]
        "#;
        let e = env(&[
            ("SLACK_BOT_TOKEN", "xoxb-1"),
            ("SLACK_APP_TOKEN", "xapp-1"),
            ("ALERT_WEBHOOK_TOKEN", "t"),
        ]);
        let c = Config::parse("f.toml", text, &e).unwrap();
        let f = c.features();
        let by = |n: &str| f.iter().find(|x| x.name == n).unwrap().to_string();
        assert_eq!(by("slack http").split(' ').nth(2), Some("off"));
        assert_eq!(
            by("socket mode"),
            "socket mode: on (2 connections opened with apps.connections.open)"
        );
        assert_eq!(by("targets"), "targets: on (production (default production))");
        assert_eq!(by("deploy hooks"), "deploy hooks: on (/rollback deploy for api)");
        assert_eq!(by("alert intake"), "alert intake: on (POST /alerts/{source}, 0 routes)");
        assert_eq!(
            by("health poller"),
            "health poller: on (0 endpoints and 1 targets every 300 s)"
        );
        assert_eq!(
            by("incident channels"),
            "incident channels: on (a channel per p0, p1 incident, archived 24 h after resolve)"
        );
        assert!(c.serve_problems().is_empty(), "Socket Mode needs no signing secret");
    }
}
