//! Raw TOML sections (plus their environment overrides) → validated
//! settings, one function per section. Every problem is pushed as one
//! `(field, why)` so `check` can print them all at once; a section with a
//! problem yields `None` where a value is required.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{
    ApprovalsConfig, Config, DEFAULT_BIND, DEFAULT_DATABASE_URL, DEFAULT_SLACK_API_URL, DeployHook, HealthCheck, Level,
    OutboxConfig, Problem, RawApprovals, RawConfig, RawOutbox, RawSlack, RawTarget, Roles, SlackConfig, TargetConfig,
    alerts,
};
use crate::slack::ids::{ChannelId, RoleSubject};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;
type Push<'a> = &'a mut dyn FnMut(&str, String);

/// An environment override, ignored when empty.
fn env_nonempty(env: Env<'_>, name: &str) -> Option<String> {
    env(name).filter(|s| !s.trim().is_empty())
}

pub(super) fn build(file: &str, raw: RawConfig, env: Env<'_>, problems: &mut Vec<Problem>) -> Option<Config> {
    let mut push = |field: &str, why: String| {
        problems.push(Problem {
            file: file.to_string(),
            field: field.to_string(),
            why,
        })
    };
    let bind = bind(env, raw.server.bind, &mut push);
    let slack = slack(env, raw.slack, &mut push);
    let database_url = database_url(env, raw.state.database_url, &mut push);
    let roles = roles(raw.roles, &mut push);
    let outbox = outbox(raw.outbox, &mut push);
    let supabase_auth = super::supabase::auth(&raw.targets, &mut push);
    let targets = targets(raw.targets, &mut push);
    let default_target = default_target(raw.diagnostics.default_target, &targets, &mut push);
    check_health_checks(&raw.health_checks, &mut push);
    check_deploy_hooks(&raw.deploy_hooks, &mut push);
    let env_token = env_nonempty(env, "ALERT_WEBHOOK_TOKEN").map(SecretString::from);
    let (alerts, escalation) = alerts::build(raw.alerts, raw.escalation, env_token, &mut push);
    let approvals = approvals(raw.approvals, &mut push);
    let http = super::limits::http(raw.http, &mut push);
    let metrics = super::limits::metrics(raw.metrics, &mut push);
    let retention = super::retention::retention(raw.retention, &mut push);
    let abuse = super::retention::abuse(raw.abuse, &mut push);
    let incidents = super::incidents::incidents(raw.incidents, &mut push);
    let console = super::console::console(raw.console, &mut push);
    Some(Config {
        http,
        metrics,
        retention,
        abuse,
        incidents,
        console,
        alerts,
        escalation,
        approvals,
        deploy_hooks: raw.deploy_hooks,
        targets,
        supabase_auth,
        default_target,
        commands_dir: PathBuf::from(raw.diagnostics.commands_dir.unwrap_or_else(|| "commands".into())),
        health_checks: raw.health_checks,
        bind: bind?,
        slack: slack?,
        database_url,
        roles,
        outbox,
    })
}

/// `[server] bind`, overridden by `BIND`.
fn bind(env: Env<'_>, raw: Option<String>, push: Push<'_>) -> Option<SocketAddr> {
    let text = env("BIND").or(raw).unwrap_or_else(|| DEFAULT_BIND.to_string());
    text.parse::<SocketAddr>()
        .map_err(|_| push("server.bind", format!("`{text}` is not an address like 127.0.0.1:3000")))
        .ok()
}

/// `[slack]`, with `SLACK_SIGNING_SECRET`, `SLACK_BOT_TOKEN`, `SLACK_APP_TOKEN`,
/// `SLACK_API_URL` and `SLACK_INCIDENT_CHANNEL`.
fn slack(env: Env<'_>, raw: RawSlack, push: Push<'_>) -> Option<SlackConfig> {
    let secret = |name: &str, raw: Option<SecretString>| {
        env_nonempty(env, name)
            .map(SecretString::from)
            .or(raw)
            .filter(|s| !s.expose_secret().trim().is_empty())
    };
    let signing_secret = secret("SLACK_SIGNING_SECRET", raw.signing_secret);
    let bot_token = secret("SLACK_BOT_TOKEN", raw.bot_token);
    if bot_token.is_none() {
        push("slack.bot_token", "missing: set SLACK_BOT_TOKEN (xoxb-…)".into());
    }
    let app_token = secret("SLACK_APP_TOKEN", raw.app_token);
    if app_token
        .as_ref()
        .is_some_and(|t| !t.expose_secret().starts_with("xapp-"))
    {
        push(
            "slack.app_token",
            "must be an app-level token (xapp-…, scope connections:write), not a bot or user token".into(),
        );
    }
    let socket_connections = raw.socket_connections.unwrap_or(2);
    if !(1..=10).contains(&socket_connections) {
        push(
            "slack.socket_connections",
            "must be between 1 and 10 (Slack allows 10 per app, across replicas)".into(),
        );
    }
    let api_url = slack_api_url(
        env_nonempty(env, "SLACK_API_URL")
            .or(raw.api_url)
            .unwrap_or_else(|| DEFAULT_SLACK_API_URL.to_string()),
        push,
    );
    let incident_channel = match env_nonempty(env, "SLACK_INCIDENT_CHANNEL").or(raw.incident_channel) {
        None => {
            push(
                "slack.incident_channel",
                "missing: the channel id (C…) incidents are declared in; or set SLACK_INCIDENT_CHANNEL".into(),
            );
            None
        }
        Some(c) => ChannelId::parse(&c)
            .map_err(|e| push("slack.incident_channel", e.to_string()))
            .ok(),
    };
    Some(SlackConfig {
        signing_secret,
        bot_token: bot_token?,
        app_token,
        socket_connections: socket_connections.clamp(1, 10),
        api_url: api_url?,
        incident_channel: incident_channel?,
    })
}

fn slack_api_url(api_url: String, push: Push<'_>) -> Option<String> {
    match url::Url::parse(&api_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {
            // slack-morphism joins method names onto the base, so it must end in '/'.
            let s = u.to_string();
            Some(if s.ends_with('/') { s } else { format!("{s}/") })
        }
        _ => {
            push("slack.api_url", format!("`{api_url}` is not an http(s) URL"));
            None
        }
    }
}

/// `[state] database_url`, overridden by `DATABASE_URL`.
fn database_url(env: Env<'_>, raw: Option<SecretString>, push: Push<'_>) -> SecretString {
    let url = env_nonempty(env, "DATABASE_URL")
        .map(SecretString::from)
        .or(raw)
        .unwrap_or_else(|| SecretString::from(DEFAULT_DATABASE_URL.to_string()));
    let u = url.expose_secret();
    if !(u.starts_with("sqlite:") || u.starts_with("postgres://") || u.starts_with("postgresql://")) {
        push("state.database_url", "must start with sqlite: or postgres://".into());
    }
    url
}

/// `[roles]`: Slack user and user-group ids per level.
fn roles(raw: BTreeMap<Level, Vec<String>>, push: Push<'_>) -> Roles {
    let mut roles = Roles::default();
    for (level, ids) in raw {
        for (i, id) in ids.iter().enumerate() {
            match RoleSubject::parse(id) {
                Ok(s) => roles.subjects.push((s, level)),
                Err(e) => push(&format!("roles.{level}[{i}]"), e.to_string()),
            }
        }
    }
    roles
}

/// `[outbox]`: pacing and attempts.
fn outbox(raw: RawOutbox, push: Push<'_>) -> OutboxConfig {
    let mut outbox = OutboxConfig::default();
    if let Some(r) = raw.per_channel_per_second {
        if r.is_finite() && r > 0.0 {
            outbox.per_channel_per_second = r;
        } else {
            push("outbox.per_channel_per_second", "must be a positive number".into());
        }
    }
    if let Some(b) = raw.burst {
        if b == 0 {
            push("outbox.burst", "must be at least 1".into());
        }
        outbox.burst = b.max(1);
    }
    if let Some(m) = raw.max_attempts {
        if m == 0 {
            push("outbox.max_attempts", "must be at least 1".into());
        }
        outbox.max_attempts = m.max(1);
    }
    outbox
}

/// `[targets.<name>]`: the application databases.
fn targets(raw: BTreeMap<String, RawTarget>, push: Push<'_>) -> BTreeMap<String, TargetConfig> {
    let mut targets = BTreeMap::new();
    for (name, t) in raw {
        let field = format!("targets.{name}");
        let valid_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !valid_name {
            push(&field, "target names are lowercase letters, digits, `-` and `_`".into());
        }
        let u = t.url.expose_secret();
        if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
            push(&format!("{field}.url"), "must be a postgres:// URL".into());
        }
        let attempts = t.attempts.unwrap_or(3);
        if !(1..=5).contains(&attempts) {
            push(&format!("{field}.attempts"), "must be between 1 and 5".into());
        }
        let connect_ms = t.connect_timeout_ms.unwrap_or(1500);
        if !(50..=30_000).contains(&connect_ms) {
            push(
                &format!("{field}.connect_timeout_ms"),
                "must be between 50 and 30000".into(),
            );
        }
        let config = TargetConfig {
            url: t.url,
            connect_timeout: Duration::from_millis(connect_ms),
            attempts,
        };
        targets.insert(name, config);
    }
    targets
}

/// `[diagnostics] default_target`: named, or the only target there is.
fn default_target(raw: Option<String>, targets: &BTreeMap<String, TargetConfig>, push: Push<'_>) -> Option<String> {
    match raw {
        Some(t) if !targets.contains_key(&t) => {
            push("diagnostics.default_target", format!("no target `{t}` under [targets]"));
            None
        }
        Some(t) => Some(t),
        None if targets.len() == 1 => targets.keys().next().cloned(),
        None => None,
    }
}

/// `[approvals]`: how long an applying instance's lease lasts.
fn approvals(raw: RawApprovals, push: Push<'_>) -> ApprovalsConfig {
    let mut out = ApprovalsConfig::default();
    if let Some(s) = raw.lease_seconds {
        if (1..=600).contains(&s) {
            out.lease = Duration::from_secs(s);
        } else {
            push("approvals.lease_seconds", "must be between 1 and 600".into());
        }
    }
    out
}

/// `[[health_checks]]`: endpoints must be http(s).
fn check_health_checks(checks: &[HealthCheck], push: Push<'_>) {
    for (i, h) in checks.iter().enumerate() {
        if !h.url.starts_with("http://") && !h.url.starts_with("https://") {
            push(&format!("health_checks[{i}].url"), "must be an http(s) URL".into());
        }
    }
}

/// `[deploy_hooks.<service>]`: an http(s) URL and one of the methods providers use.
fn check_deploy_hooks(hooks: &BTreeMap<String, DeployHook>, push: Push<'_>) {
    for (name, h) in hooks {
        if !h.url.starts_with("http://") && !h.url.starts_with("https://") {
            push(&format!("deploy_hooks.{name}.url"), "must be an http(s) URL".into());
        }
        if !matches!(h.method.as_str(), "POST" | "PUT" | "PATCH" | "GET") {
            push(
                &format!("deploy_hooks.{name}.method"),
                "must be POST, PUT, PATCH or GET".into(),
            );
        }
    }
}
