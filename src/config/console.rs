//! `[console]`: the incident console in the browser (see `crate::console`).
//! Off unless `enabled = true` and a public base URL is given; the URL is
//! where the one-time sign-in links point and decides whether the session
//! cookie is `Secure`.

use std::time::Duration;

use serde::Deserialize;

use super::Level;

type Push<'a> = &'a mut dyn FnMut(&str, String);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsole {
    enabled: Option<bool>,
    public_url: Option<String>,
    audit_level: Option<Level>,
    link_minutes: Option<u64>,
    session_hours: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub enabled: bool,
    /// Scheme and host (and port), without a trailing slash.
    pub public_url: Option<String>,
    /// The level that sees approval and audit detail and catalog SQL.
    pub audit_level: Level,
    /// How long a sign-in link from `/incident console` stays usable.
    pub link_ttl: Duration,
    /// How long a console session lasts.
    pub session_ttl: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: false,
            public_url: None,
            audit_level: Level::L3,
            link_ttl: Duration::from_secs(600),
            session_ttl: Duration::from_secs(12 * 3600),
        }
    }
}

impl ConsoleConfig {
    /// The console is served only when turned on and reachable.
    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref().filter(|_| self.enabled)
    }

    /// Cookies are `Secure` when the console is reached over TLS.
    pub fn secure(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }
}

pub(super) fn console(raw: RawConsole, push: Push<'_>) -> ConsoleConfig {
    let mut c = ConsoleConfig {
        enabled: raw.enabled.unwrap_or(false),
        audit_level: raw.audit_level.unwrap_or(Level::L3),
        ..ConsoleConfig::default()
    };
    if let Some(u) = raw.public_url {
        match public_url(&u) {
            Ok(u) => c.public_url = Some(u),
            Err(why) => push("console.public_url", why),
        }
    } else if c.enabled {
        push(
            "console.public_url",
            "missing: the console needs the base URL people open it at, like https://bot.example.com".into(),
        );
    }
    match raw.link_minutes {
        Some(m) if (1..=60).contains(&m) => c.link_ttl = Duration::from_secs(m * 60),
        Some(_) => push("console.link_minutes", "must be between 1 and 60".into()),
        None => {}
    }
    match raw.session_hours {
        Some(h) if (1..=168).contains(&h) => c.session_ttl = Duration::from_secs(h * 3600),
        Some(_) => push("console.session_hours", "must be between 1 and 168".into()),
        None => {}
    }
    c
}

/// An absolute http(s) URL without query, fragment or credentials; returned
/// without its trailing slash so paths can be appended.
fn public_url(text: &str) -> Result<String, String> {
    let u = url::Url::parse(text).map_err(|_| format!("`{text}` is not a URL like https://bot.example.com"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err("must be an http:// or https:// URL with a host".into());
    }
    // Plain http would carry the session cookie and sign-in links in clear.
    if u.scheme() == "http" && !loopback(&u) {
        return Err(
            "must be https:// (the session cookie and sign-in links must not travel in clear); \
             http:// is allowed only for 127.0.0.1, ::1 or localhost"
                .into(),
        );
    }
    if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry a query, a fragment or credentials".into());
    }
    // The console's pages link to `/console/...` from the root.
    if u.path() != "/" {
        return Err("must be the site's root (the console is served under /console); no path".into());
    }
    Ok(u.as_str().trim_end_matches('/').to_string())
}

/// Whether the URL's host is this machine: 127.0.0.1 (or 127/8), ::1 or
/// localhost.
fn loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(raw: RawConsole) -> (ConsoleConfig, Vec<String>) {
        let mut fields = Vec::new();
        let c = console(raw, &mut |f: &str, _: String| fields.push(f.to_string()));
        (c, fields)
    }

    #[test]
    fn off_by_default_and_on_with_a_url() {
        let (c, p) = build(RawConsole::default());
        assert!(p.is_empty());
        assert_eq!(c.public_url(), None);
        let (c, p) = build(RawConsole {
            enabled: Some(true),
            public_url: Some("https://bot.example.com/".into()),
            ..RawConsole::default()
        });
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(c.public_url(), Some("https://bot.example.com"));
        assert!(c.secure());
        assert_eq!(c.audit_level, Level::L3);
        assert_eq!(c.link_ttl, Duration::from_secs(600));
    }

    #[test]
    fn read_from_the_file_with_unknown_keys_refused() {
        let env = |k: &str| (k == "SLACK_BOT_TOKEN").then(|| "xoxb-1".to_string());
        let text = "[slack]\nincident_channel = \"C0INC\"\n[console]\nenabled = true\n\
                    public_url = \"https://bot.example.com\"\naudit_level = \"l2\"\nlink_minutes = 5\n";
        let c = crate::config::Config::parse("f.toml", text, &env).unwrap();
        assert_eq!(c.console.public_url(), Some("https://bot.example.com"));
        assert_eq!(c.console.audit_level, Level::L2);
        assert_eq!(c.console.link_ttl, Duration::from_secs(300));
        let e = crate::config::Config::parse("f.toml", &format!("{text}colour = \"red\"\n"), &env).unwrap_err();
        assert!(e[0].why.contains("colour"), "{e:?}");
    }

    #[test]
    fn a_url_without_enabled_serves_nothing() {
        let (c, p) = build(RawConsole {
            public_url: Some("http://127.0.0.1:3000".into()),
            ..RawConsole::default()
        });
        assert!(p.is_empty());
        assert_eq!(c.public_url(), None);
        assert!(!c.secure());
    }

    #[test]
    fn plain_http_only_for_this_machine() {
        for ok in [
            "http://127.0.0.1:3000",
            "http://localhost:8080",
            "http://LOCALHOST",
            "http://[::1]:3000",
            "https://bot.example.com",
        ] {
            assert!(public_url(ok).is_ok(), "{ok}");
        }
        let why = public_url("http://bot.example.com").unwrap_err();
        assert!(why.contains("https://") && why.contains("localhost"), "{why}");
    }

    #[test]
    fn every_bad_value_is_named() {
        let (_, p) = build(RawConsole {
            enabled: Some(true),
            public_url: None,
            link_minutes: Some(0),
            session_hours: Some(1000),
            ..RawConsole::default()
        });
        assert_eq!(
            p,
            ["console.public_url", "console.link_minutes", "console.session_hours"]
        );
        for bad in [
            "bot.example.com",
            "ftp://x.example.com",
            "https://x.example.com/?a=1",
            "https://u:p@x.example.com",
            "https://x.example.com/#f",
            "https://x.example.com/ops",
            "http://bot.example.com",
            "http://10.0.0.5:8080",
            "http://localhost.example.com",
            "http://[::2]",
        ] {
            let (_, p) = build(RawConsole {
                enabled: Some(true),
                public_url: Some(bad.into()),
                ..RawConsole::default()
            });
            assert_eq!(p, ["console.public_url"], "{bad}");
        }
    }
}
