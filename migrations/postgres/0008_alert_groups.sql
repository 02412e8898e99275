-- Alert storms stay bounded (issue 10).
--
-- alert_groups: one row per run of an alert group (Alertmanager's or
-- Grafana's groupKey, else the route's group_by label values): the one
-- incident it opened or joined, and its grouped message once a notification
-- brought more new alerts than the threshold. A group goes on while its
-- alerts keep arriving within the grouping window and its incident is open;
-- after that the same key starts a new row. alerts.group_id says which run
-- an alert last belonged to.
CREATE TABLE alert_groups (
    id          BIGSERIAL PRIMARY KEY,
    group_key   TEXT    NOT NULL,
    incident_id BIGINT  REFERENCES incidents (id),
    channel     TEXT,                         -- of the grouped message, once there is one
    thread_key  TEXT,
    message_key TEXT,                         -- the grouped message, updated in place
    title       TEXT,                         -- what the grouped message calls the group
    opened_at   BIGINT  NOT NULL,
    last_seen   BIGINT  NOT NULL
);
CREATE INDEX alert_groups_by_key ON alert_groups (group_key, id);
ALTER TABLE alerts ADD COLUMN group_id BIGINT REFERENCES alert_groups (id);
CREATE INDEX alerts_by_group ON alerts (group_id);

-- alert_declares: the incidents alert routes declared, for each route's
-- storm limit (N incidents in M minutes); storm_noticed_at is set when the
-- incident's thread was told, once, that it takes the route's further groups.
CREATE TABLE alert_declares (
    incident_id      BIGINT  PRIMARY KEY REFERENCES incidents (id),
    route            TEXT    NOT NULL,
    declared_at      BIGINT  NOT NULL,
    storm_noticed_at BIGINT
);
CREATE INDEX alert_declares_recent ON alert_declares (route, declared_at);

-- auto_diagnose_runs: when each automatic diagnostic last started per scope
-- (an incident, or an alert's thread when there is none). A run is claimed
-- by one conditional upsert, so the many alerts of a notification, or two
-- replicas, start it once per window.
CREATE TABLE auto_diagnose_runs (
    scope      TEXT    NOT NULL,
    diagnostic TEXT    NOT NULL,
    started_at BIGINT  NOT NULL,
    PRIMARY KEY (scope, diagnostic)
);
