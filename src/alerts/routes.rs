//! Which route an alert takes: the first whose `match` fits.

use super::normalize::Alert;
use crate::config::Route;

pub fn matches(route: &Route, alert: &Alert) -> bool {
    let m = &route.matcher;
    m.source.as_deref().is_none_or(|s| s == alert.source.as_str())
        && (m.severity.is_empty() || m.severity.iter().any(|s| s.eq_ignore_ascii_case(&alert.severity)))
        && m.labels.iter().all(|(k, v)| alert.labels.get(k) == Some(v))
}

/// A route and its place in the config: the place names it in the state
/// store (each route's storm limit counts its own incidents).
#[derive(Debug, Clone, Copy)]
pub struct Picked<'a> {
    pub index: usize,
    pub route: &'a Route,
}

impl Picked<'_> {
    /// How the route is named in the state store and in messages.
    pub fn key(&self) -> String {
        format!("routes[{}]", self.index)
    }
}

/// The route for an alert; without one, alerts attach to open incidents
/// and post in the incident channel.
pub fn pick<'a>(routes: &'a [Route], alert: &Alert) -> Option<Picked<'a>> {
    routes
        .iter()
        .enumerate()
        .find(|(_, r)| matches(r, alert))
        .map(|(index, route)| Picked { index, route })
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
            group: None,
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
            ..Route::default()
        }
    }

    #[test]
    fn first_matching_route_wins() {
        let routes = vec![
            route(Some("sentry"), &[], &[], Some("p3")),
            route(None, &["critical"], &[("service", "auth")], Some("p1")),
            route(None, &["warning", "critical"], &[], None),
        ];
        let auth = pick(&routes, &alert("CRITICAL", "auth")).unwrap();
        assert_eq!(
            (auth.route.declare.as_deref(), auth.key().as_str()),
            (Some("p1"), "routes[1]")
        );
        assert_eq!(
            pick(&routes, &alert("critical", "billing")).unwrap().route.declare,
            None
        );
        assert!(pick(&routes, &alert("info", "auth")).is_none());
    }
}
