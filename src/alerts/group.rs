//! Alert groups: which alerts of a notification belong together, and the
//! group's current run in the state store.
//!
//! A group is the source's own (Alertmanager's and Grafana's `groupKey`),
//! else the values of the route's `group_by` labels. A group opens at most
//! one incident, and once a notification brings more new alerts than the
//! threshold it has one grouped message (`grouped.rs`). A run of a group
//! lasts while its alerts keep arriving within the grouping window and its
//! incident is open; then the same key starts a new run.

use sqlx::AnyConnection;

use super::normalize::{Alert, fingerprint_key};
use super::routes::{self, Picked};
use crate::config::Route;

/// The group an alert belongs to, if any.
pub fn key(alert: &Alert, route: Option<Picked<'_>>) -> Option<String> {
    if let Some(g) = &alert.group {
        return Some(format!("{}:{g}", alert.source.as_str()));
    }
    let r = route.filter(|r| !r.route.group_by.is_empty())?;
    // JSON keeps values with commas or equals signs apart.
    let values: Vec<(&str, &str)> = r
        .route
        .group_by
        .iter()
        .map(|l| (l.as_str(), alert.labels.get(l).map(String::as_str).unwrap_or("")))
        .collect();
    let values = serde_json::to_string(&values).unwrap_or_default();
    Some(fingerprint_key(&format!("{}:{values}", r.key())))
}

/// One notification's alerts of one group (or one alert without a group).
pub struct Batch<'a> {
    pub key: Option<String>,
    pub alerts: Vec<&'a Alert>,
}

/// Split a notification into its groups, in the order each first appears;
/// an alert without a group is a batch of its own. A fingerprint twice in
/// one group counts once, as its later status.
pub fn partition<'a>(routes: &[Route], alerts: &'a [Alert]) -> Vec<Batch<'a>> {
    let mut out: Vec<Batch<'a>> = Vec::new();
    for a in alerts {
        match key(a, routes::pick(routes, a)) {
            Some(k) => match out.iter_mut().find(|b| b.key.as_deref() == Some(k.as_str())) {
                Some(b) => match b.alerts.iter_mut().find(|x| x.fingerprint == a.fingerprint) {
                    Some(seen) => *seen = a,
                    None => b.alerts.push(a),
                },
                None => out.push(Batch {
                    key: Some(k),
                    alerts: vec![a],
                }),
            },
            None => out.push(Batch {
                key: None,
                alerts: vec![a],
            }),
        }
    }
    out
}

/// A group's current run, as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct Group {
    pub id: i64,
    pub incident_id: Option<i64>,
    pub channel: Option<String>,
    pub thread_key: Option<String>,
    /// The grouped message, once there is one.
    pub message_key: Option<String>,
    /// What the grouped message calls the group.
    pub title: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Last {
    #[sqlx(flatten)]
    group: Group,
    last_seen: i64,
    incident_state: Option<String>,
}

/// Whether a run last seen at `last_seen` goes on at `now`: within the
/// window, and its incident (if any) not resolved.
pub fn goes_on(last_seen: i64, now: i64, window_ms: i64, incident_state: Option<&str>) -> bool {
    now - last_seen <= window_ms && incident_state != Some("resolved")
}

/// The current run of `key`, seen now; a new one when the last has ended.
pub async fn current(tx: &mut AnyConnection, key: &str, now: i64, window_ms: i64) -> anyhow::Result<Group> {
    let last: Option<Last> = sqlx::query_as(
        "SELECT g.id, g.incident_id, g.channel, g.thread_key, g.message_key, g.title, g.last_seen, i.state AS incident_state
         FROM alert_groups g LEFT JOIN incidents i ON i.id = g.incident_id
         WHERE g.group_key = $1 ORDER BY g.id DESC LIMIT 1",
    )
    .bind(key)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(l) = last
        && goes_on(l.last_seen, now, window_ms, l.incident_state.as_deref())
    {
        sqlx::query("UPDATE alert_groups SET last_seen = $1 WHERE id = $2")
            .bind(now)
            .bind(l.group.id)
            .execute(&mut *tx)
            .await?;
        return Ok(l.group);
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO alert_groups (group_key, opened_at, last_seen) VALUES ($1, $2, $2) RETURNING id",
    )
    .bind(key)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    Ok(Group {
        id,
        incident_id: None,
        channel: None,
        thread_key: None,
        message_key: None,
        title: None,
    })
}

impl Group {
    /// The incident this run opened or joined; later alerts go there too.
    pub async fn set_incident(&mut self, tx: &mut AnyConnection, incident: i64) -> anyhow::Result<()> {
        sqlx::query("UPDATE alert_groups SET incident_id = $1 WHERE id = $2")
            .bind(incident)
            .bind(self.id)
            .execute(&mut *tx)
            .await?;
        self.incident_id = Some(incident);
        Ok(())
    }

    /// Give the run its grouped message, called `title`, posted in
    /// `channel` (in the thread of `thread_key` when there is one).
    pub async fn set_message(
        &mut self,
        tx: &mut AnyConnection,
        channel: &str,
        thread_key: Option<String>,
        title: &str,
    ) -> anyhow::Result<()> {
        let key = super::grouped::message_key(self.id);
        sqlx::query(
            "UPDATE alert_groups SET channel = $1, thread_key = $2, message_key = $3, title = $4 WHERE id = $5",
        )
        .bind(channel)
        .bind(thread_key.clone())
        .bind(&key)
        .bind(title)
        .bind(self.id)
        .execute(&mut *tx)
        .await?;
        self.channel = Some(channel.to_string());
        self.thread_key = thread_key;
        self.message_key = Some(key);
        self.title = Some(title.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::normalize::{Source, Status};

    fn alert(fp: &str, group: Option<&str>, labels: &[(&str, &str)]) -> Alert {
        Alert {
            source: Source::Alertmanager,
            fingerprint: fp.into(),
            status: Status::Firing,
            severity: "critical".into(),
            title: fp.into(),
            description: None,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            links: vec![],
            starts_at: None,
            ends_at: None,
            group: group.map(String::from),
        }
    }

    fn by(labels: &[&str]) -> Route {
        Route {
            group_by: labels.iter().map(|l| l.to_string()).collect(),
            ..Route::default()
        }
    }

    #[test]
    fn the_sources_group_key_wins_then_the_routes_labels() {
        let routes = [by(&["alertname"])];
        let pick = |a: &Alert| routes::pick(&routes, a);
        let a = alert("f1", Some("{}:{alertname=\"X\"}"), &[("alertname", "Y")]);
        assert_eq!(key(&a, pick(&a)).unwrap(), "alertmanager:{}:{alertname=\"X\"}");
        let mut b = alert("f2", None, &[("alertname", "Y"), ("pod", "a")]);
        b.source = Source::Generic;
        assert_eq!(key(&b, pick(&b)).unwrap(), r#"routes[0]:[["alertname","Y"]]"#);
        // A missing label is an empty value, not another group per alert.
        let c = alert("f3", None, &[]);
        assert_eq!(key(&c, pick(&c)).unwrap(), r#"routes[0]:[["alertname",""]]"#);
        // No group_by and no group key: no group, today's one post per alert.
        assert_eq!(key(&c, routes::pick(&[Route::default()], &c)), None);
        assert_eq!(key(&c, None), None);
    }

    #[test]
    fn label_values_cannot_run_into_each_other() {
        let routes = [by(&["a", "b"])];
        let one = alert("1", None, &[("a", "x\",\"b"), ("b", "")]);
        let two = alert("2", None, &[("a", "x"), ("b", "b")]);
        assert_ne!(
            key(&one, routes::pick(&routes, &one)),
            key(&two, routes::pick(&routes, &two))
        );
        let long = alert("3", None, &[("a", &"v".repeat(500))]);
        assert!(key(&long, routes::pick(&routes, &long)).unwrap().starts_with("sha256:"));
    }

    #[test]
    fn partition_keeps_groups_together_in_first_seen_order() {
        let mut again = alert("a1", Some("A"), &[]);
        again.status = Status::Resolved;
        let alerts = [
            alert("a1", Some("A"), &[]),
            alert("lone", None, &[]),
            alert("b1", Some("B"), &[]),
            alert("a2", Some("A"), &[]),
            again,
        ];
        let batches = partition(&[], &alerts);
        assert_eq!(batches[0].alerts[0].status, Status::Resolved, "the later status counts");
        let seen: Vec<(Option<&str>, Vec<&str>)> = batches
            .iter()
            .map(|b| {
                (
                    b.key.as_deref(),
                    b.alerts.iter().map(|a| a.fingerprint.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (Some("alertmanager:A"), vec!["a1", "a2"]),
                (None, vec!["lone"]),
                (Some("alertmanager:B"), vec!["b1"]),
            ]
        );
    }

    #[test]
    fn a_run_ends_after_the_window_or_with_its_incident() {
        let w = 60_000;
        assert!(goes_on(0, 60_000, w, None));
        assert!(!goes_on(0, 60_001, w, None));
        assert!(goes_on(0, 10, w, Some("acknowledged")));
        assert!(!goes_on(0, 10, w, Some("resolved")));
    }
}
