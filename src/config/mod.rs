//! Configuration: a TOML file whose strings may be `${ENV_VAR}`, then the
//! environment overrides named in PRODUCT.md. This is the only module that
//! reads the process environment; everything else receives a `Config`.

mod alert_limits;
mod alerts;
mod build;
mod console;
mod features;
mod incidents;
mod limits;
mod retention;
mod supabase;

pub use alert_limits::{AutoDiagnoseBudget, Grouping, StormLimit};
pub use alerts::{AlertSource, AlertsConfig, EscalationConfig, EscalationStep, Matcher, Route};
use alerts::{RawAlerts, RawEscalation};
pub use console::ConsoleConfig;
use console::RawConsole;
pub use features::Feature;
use incidents::RawIncidents;
pub use incidents::{CHANNEL_NAME_MAX, IncidentsConfig};
pub use limits::{HttpConfig, MetricsConfig};
use limits::{RawHttp, RawMetrics};
pub use retention::{AbuseConfig, RetentionConfig};
use retention::{RawAbuse, RawRetention};
pub use supabase::SupabaseAuth;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::slack::ids::{ChannelId, RoleSubject};

pub const DEFAULT_CONFIG_FILE: &str = "runbook-bot.toml";
pub const DEFAULT_SLACK_API_URL: &str = "https://slack.com/api/";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://runbook-bot.db";
pub const DEFAULT_BIND: &str = "127.0.0.1:3000";

/// One thing wrong with the configuration, printed by `check` as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub field: String,
    pub why: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.field, self.why)
    }
}

/// Access level of a Slack user, from the runbooks' escalation ladder:
/// L1 support, L2 engineering on-call, L3 tech lead / security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    L1,
    L2,
    L3,
}

/// Stored levels read back; anything unknown reads as the highest level, so
/// a damaged row can only make an approval harder to give.
impl From<String> for Level {
    fn from(s: String) -> Self {
        match s.as_str() {
            "l1" => Level::L1,
            "l2" => Level::L2,
            _ => Level::L3,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::L1 => "l1",
            Level::L2 => "l2",
            Level::L3 => "l3",
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    slack: RawSlack,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    roles: BTreeMap<Level, Vec<String>>,
    #[serde(default)]
    outbox: RawOutbox,
    #[serde(default)]
    targets: BTreeMap<String, RawTarget>,
    #[serde(default)]
    diagnostics: RawDiagnostics,
    #[serde(default)]
    health_checks: Vec<HealthCheck>,
    #[serde(default)]
    deploy_hooks: BTreeMap<String, DeployHook>,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    escalation: RawEscalation,
    #[serde(default)]
    approvals: RawApprovals,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    abuse: RawAbuse,
    #[serde(default)]
    incidents: RawIncidents,
    #[serde(default)]
    console: RawConsole,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    lease_seconds: Option<u64>,
}

/// How approved actions are applied.
#[derive(Debug, Clone)]
pub struct ApprovalsConfig {
    /// The applying instance renews its lease every third of this; an apply
    /// whose lease lapsed is resolved by asking the target how it ended.
    pub lease: Duration,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            lease: Duration::from_secs(30),
        }
    }
}

/// The deploy provider's rollback hook for one service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployHook {
    pub url: String,
    #[serde(default = "default_hook_method")]
    pub method: String,
    #[serde(default)]
    pub token: Option<SecretString>,
}

fn default_hook_method() -> String {
    "POST".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    url: SecretString,
    connect_timeout_ms: Option<u64>,
    attempts: Option<u32>,
    /// The Supabase project's URL, for its Auth admin API (see `supabase`).
    supabase_url: Option<String>,
    service_role_key: Option<SecretString>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiagnostics {
    commands_dir: Option<String>,
    default_target: Option<String>,
}

/// An HTTP endpoint the `health` diagnostic probes (the runbooks' health-check script).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub name: String,
    pub url: String,
    /// Slower than this is a warning.
    #[serde(default = "default_max_latency_ms")]
    pub max_latency_ms: u64,
}

fn default_max_latency_ms() -> u64 {
    1000
}

/// An application database that catalog commands run against.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub url: SecretString,
    pub connect_timeout: Duration,
    pub attempts: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    bind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    signing_secret: Option<SecretString>,
    bot_token: Option<SecretString>,
    /// `xapp-…`: turns on Socket Mode.
    app_token: Option<SecretString>,
    socket_connections: Option<u32>,
    api_url: Option<String>,
    incident_channel: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    database_url: Option<SecretString>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbox {
    /// chat.postMessage per channel per second (Slack allows about one).
    per_channel_per_second: Option<f64>,
    /// Messages a quiet channel may take at once before pacing starts.
    burst: Option<u32>,
    /// Give up on a message after this many attempts.
    max_attempts: Option<u32>,
}

/// Validated configuration. Secrets stay wrapped; `Debug` never shows them.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub slack: SlackConfig,
    pub database_url: SecretString,
    pub roles: Roles,
    pub outbox: OutboxConfig,
    pub targets: BTreeMap<String, TargetConfig>,
    /// Supabase Auth admin API per target name, for those that set one.
    pub supabase_auth: BTreeMap<String, SupabaseAuth>,
    /// Target of commands whose file names none and whose user names none.
    pub default_target: Option<String>,
    pub commands_dir: PathBuf,
    pub health_checks: Vec<HealthCheck>,
    pub deploy_hooks: BTreeMap<String, DeployHook>,
    pub alerts: AlertsConfig,
    pub escalation: EscalationConfig,
    pub approvals: ApprovalsConfig,
    pub http: HttpConfig,
    pub metrics: MetricsConfig,
    pub retention: RetentionConfig,
    pub abuse: AbuseConfig,
    pub incidents: IncidentsConfig,
    pub console: ConsoleConfig,
}

#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub signing_secret: Option<SecretString>,
    pub bot_token: SecretString,
    /// The app-level token (`xapp-…`, scope `connections:write`): when set,
    /// Slack's requests also arrive over Socket Mode WebSockets.
    pub app_token: Option<SecretString>,
    /// Socket Mode connections per instance (Slack allows 10 per app).
    pub socket_connections: u32,
    pub api_url: String,
    pub incident_channel: ChannelId,
}

#[derive(Debug, Clone)]
pub struct OutboxConfig {
    pub per_channel_per_second: f64,
    pub burst: u32,
    pub max_attempts: u32,
    /// Backoff after a 5xx or connection error; doubled per attempt, capped.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            per_channel_per_second: 1.0,
            burst: 3,
            max_attempts: 12,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// Slack user ids and user-group ids, each mapped to its highest level.
#[derive(Debug, Clone, Default)]
pub struct Roles {
    pub subjects: Vec<(RoleSubject, Level)>,
}

impl Roles {
    /// The level granted directly to a user id (groups are resolved elsewhere).
    pub fn direct_level(&self, user: &str) -> Option<Level> {
        self.subjects
            .iter()
            .filter(|(s, _)| matches!(s, RoleSubject::User(u) if u.as_str() == user))
            .map(|(_, l)| *l)
            .max()
    }

    pub fn groups(&self) -> impl Iterator<Item = (&str, Level)> {
        self.subjects.iter().filter_map(|(s, l)| match s {
            RoleSubject::Group(g) => Some((g.as_str(), *l)),
            RoleSubject::User(_) => None,
        })
    }
}

/// Where configuration comes from; tests pass their own environment.
pub struct Sources<'a> {
    pub file: Option<PathBuf>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl Config {
    /// Load from the process environment: `--config`, else `RUNBOOK_BOT_CONFIG`,
    /// else `runbook-bot.toml` when present.
    pub fn from_process(file: Option<PathBuf>) -> Result<Config, Vec<Problem>> {
        let env = |k: &str| std::env::var(k).ok();
        let file = file
            .or_else(|| env("RUNBOOK_BOT_CONFIG").map(PathBuf::from))
            .or_else(|| {
                let p = PathBuf::from(DEFAULT_CONFIG_FILE);
                p.exists().then_some(p)
            });
        Config::load(&Sources { file, env: &env })
    }

    /// Who is at the terminal (`runbook-bot exec` records it in the audit):
    /// the login name from the environment, as `sudo` and shells set it.
    pub fn os_user_from_process() -> String {
        ["SUDO_USER", "USER", "LOGNAME"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
            .unwrap_or_else(|| "unknown".into())
    }

    pub fn load(src: &Sources<'_>) -> Result<Config, Vec<Problem>> {
        let (file_name, text) = match &src.file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(t) => (path.display().to_string(), t),
                Err(e) => return Err(vec![problem(path, "-", format!("cannot read: {e}"))]),
            },
            None => ("(environment)".to_string(), String::new()),
        };
        Config::parse(&file_name, &text, src.env)
    }

    pub fn parse(file: &str, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut value: toml::Value = match toml::from_str(text) {
            Ok(v) => v,
            Err(e) => return Err(vec![toml_problem(file, &e)]),
        };
        substitute_env(&mut value, "", env, file, &mut problems);
        let raw: RawConfig = match value.try_into() {
            Ok(r) => r,
            Err(e) => {
                problems.push(toml_problem(file, &e));
                return Err(problems);
            }
        };
        let cfg = build::build(file, raw, env, &mut problems);
        if problems.is_empty() {
            Ok(cfg.expect("no problems means a config"))
        } else {
            Err(problems)
        }
    }

    /// Problems that only matter for `serve`: Slack must be able to reach
    /// the bot, over signed HTTP (a signing secret) or Socket Mode (an app
    /// token; Slack authenticates that connection, nothing is signed).
    pub fn serve_problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.slack.signing_secret.is_none() && self.slack.app_token.is_none() {
            out.push(Problem {
                file: "config".into(),
                field: "slack.signing_secret".into(),
                why: "missing: set SLACK_SIGNING_SECRET (HTTP), or SLACK_APP_TOKEN (Socket Mode); serve refuses unsigned traffic".into(),
            });
        }
        out
    }

    /// A configuration for tests and examples; nothing is read from anywhere.
    pub fn for_tests(database_url: &str, slack_api_url: &str, signing_secret: &str) -> Config {
        Config {
            bind: "127.0.0.1:0".parse().expect("literal"),
            slack: SlackConfig {
                signing_secret: Some(SecretString::from(signing_secret.to_string())),
                bot_token: SecretString::from("xoxb-test".to_string()),
                app_token: None,
                socket_connections: 2,
                api_url: slack_api_url.to_string(),
                incident_channel: ChannelId::parse("CINCIDENTS").expect("literal"),
            },
            database_url: SecretString::from(database_url.to_string()),
            roles: Roles::default(),
            outbox: OutboxConfig::default(),
            targets: BTreeMap::new(),
            supabase_auth: BTreeMap::new(),
            default_target: None,
            commands_dir: PathBuf::from("commands"),
            health_checks: Vec::new(),
            deploy_hooks: BTreeMap::new(),
            alerts: AlertsConfig::default(),
            escalation: EscalationConfig::default(),
            approvals: ApprovalsConfig::default(),
            http: HttpConfig::default(),
            metrics: MetricsConfig::default(),
            retention: RetentionConfig::default(),
            abuse: AbuseConfig::default(),
            incidents: IncidentsConfig::default(),
            console: ConsoleConfig::default(),
        }
    }
}

/// Replace `${NAME}` in every string of the document. Done on parsed values,
/// not on the raw text, so a secret containing quotes cannot change the TOML.
fn substitute_env(
    value: &mut toml::Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    file: &str,
    problems: &mut Vec<Problem>,
) {
    match value {
        toml::Value::String(s) => match expand(s, env) {
            Ok(x) => *s = x,
            Err(why) => problems.push(Problem {
                file: file.into(),
                field: path.into(),
                why,
            }),
        },
        toml::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                substitute_env(v, &format!("{path}[{i}]"), env, file, problems);
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                substitute_env(v, &p, env, file, problems);
            }
        }
        _ => {}
    }
}

fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated `${` (write `${NAME}`)".to_string())?;
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`${{{name}}}` is not an environment variable name"));
        }
        let v = env(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn problem(path: &Path, field: &str, why: String) -> Problem {
    Problem {
        file: path.display().to_string(),
        field: field.into(),
        why,
    }
}

fn toml_problem(file: &str, e: &toml::de::Error) -> Problem {
    let why = e.message().replace('\n', " ");
    let field = e
        .span()
        .map(|s| format!("bytes {}..{}", s.start, s.end))
        .unwrap_or_else(|| "-".into());
    Problem {
        file: file.into(),
        field,
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    const MINIMAL: &str = r#"
        [slack]
        bot_token = "${TOKEN}"
        signing_secret = "from-file"
        incident_channel = "C0INC"
        [roles]
        l3 = ["U0LEAD", "S0LEADS"]
        l2 = ["U0LEAD", "U0ONCALL"]
    "#;

    #[test]
    fn substitutes_env_and_applies_overrides() {
        let env = env_of(&[
            ("TOKEN", "xoxb-1"),
            ("SLACK_SIGNING_SECRET", "from-env"),
            ("BIND", "0.0.0.0:8080"),
        ]);
        let c = Config::parse("f.toml", MINIMAL, &env).unwrap();
        assert_eq!(c.slack.bot_token.expose_secret(), "xoxb-1");
        assert_eq!(c.slack.signing_secret.unwrap().expose_secret(), "from-env");
        assert_eq!(c.bind.to_string(), "0.0.0.0:8080");
        assert_eq!(c.slack.api_url, DEFAULT_SLACK_API_URL);
        assert_eq!(c.database_url.expose_secret(), DEFAULT_DATABASE_URL);
        assert_eq!(c.roles.direct_level("U0LEAD"), Some(Level::L3));
        assert_eq!(c.roles.direct_level("U0ONCALL"), Some(Level::L2));
        assert_eq!(c.roles.direct_level("U0OTHER"), None);
        assert_eq!(c.roles.groups().collect::<Vec<_>>(), vec![("S0LEADS", Level::L3)]);
    }

    #[test]
    fn missing_env_var_names_the_field() {
        let e = Config::parse("f.toml", MINIMAL, &env_of(&[])).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field, "slack.bot_token");
        assert!(e[0].why.contains("TOKEN is not set"), "{}", e[0]);
    }

    #[test]
    fn env_value_with_quotes_cannot_rewrite_toml() {
        let env = env_of(&[("TOKEN", "x\"\nincident_channel = \"CEVIL")]);
        let c = Config::parse("f.toml", MINIMAL, &env).unwrap();
        assert_eq!(c.slack.incident_channel.as_str(), "C0INC");
    }

    #[test]
    fn unknown_field_is_rejected_with_its_name() {
        let text = format!("{MINIMAL}\n[server]\nbnid = \"x\"\n");
        let e = Config::parse("f.toml", &text, &env_of(&[("TOKEN", "t")])).unwrap_err();
        assert!(e[0].why.contains("bnid"), "{}", e[0]);
        assert_eq!(e[0].file, "f.toml");
    }

    #[test]
    fn every_bad_value_is_one_problem() {
        let text = r#"
            [server]
            bind = "nowhere"
            [slack]
            bot_token = "t"
            api_url = "ftp://x"
            incident_channel = "general"
            [state]
            database_url = "mysql://x"
            [roles]
            l2 = ["bob"]
            [outbox]
            burst = 0
        "#;
        let e = Config::parse("f.toml", text, &env_of(&[])).unwrap_err();
        let fields: Vec<_> = e.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "server.bind",
                "slack.api_url",
                "slack.incident_channel",
                "state.database_url",
                "roles.l2[0]",
                "outbox.burst"
            ]
        );
    }

    #[test]
    fn serve_requires_a_signing_secret() {
        let text = MINIMAL.replace("signing_secret = \"from-file\"", "");
        let c = Config::parse("f.toml", &text, &env_of(&[("TOKEN", "t")])).unwrap();
        let p = c.serve_problems();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].field, "slack.signing_secret");
    }

    #[test]
    fn socket_mode_needs_an_app_token_and_no_signing_secret() {
        let text = MINIMAL.replace("signing_secret = \"from-file\"", "socket_connections = 3");
        let env = env_of(&[("TOKEN", "t"), ("SLACK_APP_TOKEN", "xapp-1-A0-x")]);
        let c = Config::parse("f.toml", &text, &env).unwrap();
        assert_eq!(c.slack.app_token.as_ref().unwrap().expose_secret(), "xapp-1-A0-x");
        assert_eq!(c.slack.socket_connections, 3);
        assert!(c.serve_problems().is_empty());
        assert!(!format!("{c:?}").contains("xapp-1-A0-x"));

        let text = MINIMAL.replace(
            "signing_secret = \"from-file\"",
            "app_token = \"xoxb-wrong\"\nsocket_connections = 11",
        );
        let e = Config::parse("f.toml", &text, &env_of(&[("TOKEN", "t")])).unwrap_err();
        let fields: Vec<_> = e.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["slack.app_token", "slack.socket_connections"]);
        assert!(e[0].why.contains("xapp-"), "{}", e[0]);
    }

    #[test]
    fn the_incident_channel_may_come_from_the_environment() {
        let env = env_of(&[("TOKEN", "t"), ("SLACK_INCIDENT_CHANNEL", "C0FROMENV")]);
        let c = Config::parse("f.toml", MINIMAL, &env).unwrap();
        assert_eq!(c.slack.incident_channel.as_str(), "C0FROMENV");
        let text = MINIMAL.replace("incident_channel = \"C0INC\"", "");
        let c = Config::parse("f.toml", &text, &env).unwrap();
        assert_eq!(c.slack.incident_channel.as_str(), "C0FROMENV");
        let e = Config::parse("f.toml", &text, &env_of(&[("TOKEN", "t")])).unwrap_err();
        assert_eq!(e[0].field, "slack.incident_channel");
        assert!(e[0].why.contains("SLACK_INCIDENT_CHANNEL"), "{}", e[0]);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = Config::parse("f.toml", MINIMAL, &env_of(&[("TOKEN", "xoxb-very-secret")])).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("xoxb-very-secret"));
        assert!(!dbg.contains("from-file"));
    }

    #[test]
    fn alert_routes_and_ladders_are_validated() {
        let text = format!(
            "{MINIMAL}\n[alerts]\ntoken = \"file-token\"\n[[alerts.routes]]\nmatch = {{ source = \"nagios\" }}\ndeclare = \"p7\"\nchannel = \"general\"\n[escalation]\nstakeholders = [\"bob\"]\np1 = [{{ after_minutes = 5, notify = \"everyone\" }}]\n"
        );
        let e = Config::parse("f.toml", &text, &env_of(&[("TOKEN", "t")])).unwrap_err();
        let fields: Vec<_> = e.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "alerts.routes[0].channel",
                "alerts.routes[0].declare",
                "alerts.routes[0].match.source",
                "escalation.stakeholders[0]",
                "escalation.p1[0].notify"
            ]
        );
        let ok = format!("{MINIMAL}\n[alerts]\ntoken = \"file-token\"\n");
        let c = Config::parse(
            "f.toml",
            &ok,
            &env_of(&[("TOKEN", "t"), ("ALERT_WEBHOOK_TOKEN", "env-token")]),
        )
        .unwrap();
        assert_eq!(c.alerts.token.unwrap().expose_secret(), "env-token");
        assert_eq!(
            c.escalation.ladders[1].len(),
            3,
            "P1 defaults to the runbook's 15/30/60 ladder"
        );
        assert!(c.escalation.ladders[3].is_empty());
    }

    #[test]
    fn empty_alert_secrets_are_refused() {
        let text = format!("{MINIMAL}\n[alerts]\ntoken = \"t\"\ngrafana_secret = \"\"\nsentry_secret = \" \"\n");
        let e = Config::parse("f.toml", &text, &env_of(&[("TOKEN", "t")])).unwrap_err();
        let fields: Vec<_> = e.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["alerts.grafana_secret", "alerts.sentry_secret"]);
        assert!(e[0].why.contains("must not be empty"), "{}", e[0]);
    }

    #[test]
    fn bad_substitution_syntax_is_reported() {
        assert!(expand("${", &|_| None).is_err());
        assert!(expand("${A-B}", &|_| None).is_err());
        assert_eq!(expand("a${X}b", &|_| Some("1".into())).unwrap(), "a1b");
    }
}
