//! What the HTTP edge tolerates from a client: `[http]` (timeouts, the
//! connection cap, how often readiness is re-checked) and `[metrics]` (the
//! bearer token `/metrics` asks for).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

type Push<'a> = &'a mut dyn FnMut(&str, String);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    header_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    readiness_check_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    token: Option<SecretString>,
}

/// Limits of the HTTP server (see `http::serve`).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// A request head must be complete this long after the connection
    /// opened or its previous response was written (hyper's timer).
    pub header_timeout: Duration,
    /// A request body must be complete this long after its head.
    pub body_timeout: Duration,
    /// A connection with no request in flight and no bytes moving for this
    /// long is closed: idle keep-alive, or a client that stopped reading.
    pub idle_timeout: Duration,
    /// Connections served at once; more are answered 503 with Retry-After.
    pub max_connections: usize,
    /// How often the state store is checked for `/readyz` and `/metrics`.
    pub readiness_check: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(5),
            max_connections: 512,
            readiness_check: Duration::from_secs(2),
        }
    }
}

/// `/metrics` settings.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// When set, `/metrics` wants `Authorization: Bearer <token>`.
    pub token: Option<SecretString>,
}

/// A number of seconds within `range`, or a problem naming the field.
fn secs(raw: Option<u64>, field: &str, range: std::ops::RangeInclusive<u64>, push: Push<'_>) -> Option<Duration> {
    let s = raw?;
    if range.contains(&s) {
        Some(Duration::from_secs(s))
    } else {
        push(
            field,
            format!("must be between {} and {} seconds", range.start(), range.end()),
        );
        None
    }
}

pub(super) fn http(raw: RawHttp, push: Push<'_>) -> HttpConfig {
    let mut c = HttpConfig::default();
    if let Some(d) = secs(raw.header_timeout_secs, "http.header_timeout_secs", 1..=300, push) {
        c.header_timeout = d;
    }
    if let Some(d) = secs(raw.body_timeout_secs, "http.body_timeout_secs", 1..=300, push) {
        c.body_timeout = d;
    }
    if let Some(d) = secs(raw.idle_timeout_secs, "http.idle_timeout_secs", 1..=3600, push) {
        c.idle_timeout = d;
    }
    if let Some(d) = secs(raw.readiness_check_secs, "http.readiness_check_secs", 1..=60, push) {
        c.readiness_check = d;
    }
    // hyper runs its header timer while a keep-alive connection waits for
    // the next request, so a longer idle timeout could never take effect.
    if c.idle_timeout > c.header_timeout {
        push(
            "http.idle_timeout_secs",
            "must not exceed http.header_timeout_secs (the header timer also runs while a connection is idle)".into(),
        );
    }
    if let Some(n) = raw.max_connections {
        if (1..=65_536).contains(&n) {
            c.max_connections = n;
        } else {
            push("http.max_connections", "must be between 1 and 65536".into());
        }
    }
    c
}

pub(super) fn metrics(raw: RawMetrics, push: Push<'_>) -> MetricsConfig {
    if raw.token.as_ref().is_some_and(|t| t.expose_secret().trim().is_empty()) {
        push(
            "metrics.token",
            "must not be empty (leave it out to serve /metrics without a token)".into(),
        );
    }
    MetricsConfig { token: raw.token }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(f: impl FnOnce(Push<'_>)) -> Vec<String> {
        let mut out = Vec::new();
        f(&mut |field: &str, _why: String| out.push(field.to_string()));
        out
    }

    #[test]
    fn defaults_and_bounds() {
        let mut got = None;
        let p = problems(|push| got = Some(http(RawHttp::default(), push)));
        assert!(p.is_empty());
        let c = got.unwrap();
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.max_connections, 512);
        let raw = RawHttp {
            header_timeout_secs: Some(0),
            body_timeout_secs: Some(301),
            idle_timeout_secs: Some(20),
            max_connections: Some(0),
            readiness_check_secs: Some(61),
        };
        let p = problems(|push| {
            http(raw, push);
        });
        assert_eq!(
            p,
            [
                "http.header_timeout_secs",
                "http.body_timeout_secs",
                "http.readiness_check_secs",
                "http.idle_timeout_secs",
                "http.max_connections"
            ]
        );
        let empty = RawMetrics {
            token: Some(SecretString::from(" ".to_string())),
        };
        assert_eq!(
            problems(|push| {
                metrics(empty, push);
            }),
            ["metrics.token"]
        );
    }
}
