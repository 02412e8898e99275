-- Foundation: incidents with their timeline, the Slack outbox, and the
-- Events API dedupe table. Times are Unix milliseconds (INTEGER) so both
-- backends share one representation through sqlx's Any driver.

CREATE TABLE incidents (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    channel         TEXT    NOT NULL,
    title           TEXT    NOT NULL,
    severity        TEXT    NOT NULL,          -- p0..p3
    state           TEXT    NOT NULL,          -- declared | acknowledged | resolved
    status_text     TEXT,
    commander       TEXT    NOT NULL,
    declared_by     TEXT    NOT NULL,
    declared_at     INTEGER NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at INTEGER,
    resolved_by     TEXT,
    resolved_at     INTEGER,
    summary         TEXT,
    root_ts         TEXT,                      -- learnt from chat.postMessage
    updated_at      INTEGER NOT NULL
);
CREATE INDEX incidents_open_by_channel ON incidents (channel, state, id);

CREATE TABLE incident_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    occurred_at INTEGER NOT NULL,
    actor       TEXT    NOT NULL,              -- Slack user id, or "bot"
    kind        TEXT    NOT NULL,
    text        TEXT    NOT NULL
);
CREATE INDEX incident_events_by_incident ON incident_events (incident_id, id);

-- Every Slack write. A lane is the ordering unit (a channel, or one
-- response_url): rows in a lane are delivered strictly in id order.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    lane            TEXT    NOT NULL,
    kind            TEXT    NOT NULL,          -- post | post_root | post_thread | update_root | respond
    channel         TEXT,
    incident_id     INTEGER REFERENCES incidents (id),
    thread_ts       TEXT,
    response_url    TEXT,
    notify_url      TEXT,                      -- where to report a permanent failure
    payload         TEXT    NOT NULL,          -- JSON message content
    status          TEXT    NOT NULL,          -- pending | sent | failed | superseded
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_error      TEXT,
    sent_ts         TEXT,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER
);
CREATE INDEX outbox_pending ON outbox (status, lane, id);

CREATE TABLE slack_events (
    event_id    TEXT    PRIMARY KEY,
    received_at INTEGER NOT NULL
);
