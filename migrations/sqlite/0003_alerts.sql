-- Alerts: webhook payloads are persisted in alert_inbox before the 2xx and
-- processed in order by one instance at a time (a lease); alerts holds one
-- row per (source, fingerprint) with its current occurrence; escalations
-- records each posted escalation step so none is forgotten or repeated.

ALTER TABLE incidents ADD COLUMN service TEXT;
CREATE INDEX incidents_open_by_service ON incidents (service, state);

CREATE TABLE alert_inbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    source       TEXT    NOT NULL,
    alerts       TEXT    NOT NULL,            -- JSON array of normalized alerts
    received_at  INTEGER NOT NULL,
    processed_at INTEGER,
    error        TEXT                         -- set when it could not be handled
);
CREATE INDEX alert_inbox_unprocessed ON alert_inbox (processed_at, id);

CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    source       TEXT    NOT NULL,
    fingerprint  TEXT    NOT NULL,
    status       TEXT    NOT NULL,            -- firing | resolved
    severity     TEXT    NOT NULL,
    title        TEXT    NOT NULL,
    channel      TEXT    NOT NULL,
    message_key  TEXT    NOT NULL,            -- the post that is updated in place
    thread_key   TEXT,                        -- where replies about it go
    incident_id  INTEGER REFERENCES incidents (id),
    occurrence   INTEGER NOT NULL,
    deliveries   INTEGER NOT NULL,            -- deliveries in this occurrence
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    fired_at     INTEGER NOT NULL,            -- start of this occurrence
    resolved_at  INTEGER,
    latest       TEXT    NOT NULL,            -- JSON of the latest normalized alert
    UNIQUE (source, fingerprint)
);

CREATE TABLE escalations (
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    step        TEXT    NOT NULL,
    posted_at   INTEGER NOT NULL,
    PRIMARY KEY (incident_id, step)
);

CREATE TABLE leases (
    name  TEXT    PRIMARY KEY,
    owner TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
