//! Which route an alert takes: the first whose `match` fits.

use super::normalize::Alert;
use crate::config::Route;

pub fn matches(route: &Route, alert: &Alert) -> bool {
    let m = &route.matcher;
    m.source.as_deref().is_none_or(|s| s == alert.source.as_str())
        && (m.severity.is_empty() || m.severity.iter().any(|s| s.eq_ignore_ascii_case(&alert.severity)))
        && m.labels.iter().all(|(k, v)| alert.labels.get(k) == Some(v))
}

/// The route for an alert; the default attaches to open incidents and
/// posts in the incident channel.
pub fn pick<'a>(routes: &'a [Route], alert: &Alert) -> Option<&'a Route> {
    routes.iter().find(|r| matches(r, alert))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::normalize::{Source, Status};
    use crate::config::Matcher;

    fn alert(severity: &str, service: &str) -> Alert {
        Alert {
            source: Source::Alertmanager,
            fingerprint: "f".into(),
            status: Status::Firing,
            severity: severity.into(),
            title: "t".into(),
            description: None,
            labels: [("service".to_string(), service.to_string())].into(),
            links: vec![],
            starts_at: None,
            ends_at: None,
        }
    }

    fn route(source: Option<&str>, severity: &[&str], labels: &[(&str, &str)], declare: Option<&str>) -> Route {
        Route {
            matcher: Matcher {
                source: source.map(String::from),
                severity: severity.iter().map(|s| s.to_string()).collect(),
                labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            },
            channel: None,
            declare: declare.map(String::from),
            attach: true,
            diagnose: vec![],
        }
    }

    #[test]
    fn first_matching_route_wins() {
        let routes = vec![
            route(Some("sentry"), &[], &[], Some("p3")),
            route(None, &["critical"], &[("service", "auth")], Some("p1")),
            route(None, &["warning", "critical"], &[], None),
        ];
        assert_eq!(
            pick(&routes, &alert("CRITICAL", "auth")).unwrap().declare.as_deref(),
            Some("p1")
        );
        assert_eq!(pick(&routes, &alert("critical", "billing")).unwrap().declare, None);
        assert!(pick(&routes, &alert("info", "auth")).is_none());
    }
}
