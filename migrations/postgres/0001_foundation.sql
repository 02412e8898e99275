-- Foundation: incidents with their timeline, the Slack outbox, and the
-- Events API dedupe table. Times are Unix milliseconds (INTEGER; BIGINT on PostgreSQL) so both
-- backends share one representation through sqlx's Any driver.

CREATE TABLE incidents (
    id              BIGSERIAL PRIMARY KEY,
    channel         TEXT    NOT NULL,
    title           TEXT    NOT NULL,
    severity        TEXT    NOT NULL,          -- p0..p3
    state           TEXT    NOT NULL,          -- declared | acknowledged | resolved
    status_text     TEXT,
    commander       TEXT    NOT NULL,
    declared_by     TEXT    NOT NULL,
    declared_at     BIGINT  NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at BIGINT,
    resolved_by     TEXT,
    resolved_at     BIGINT,
    summary         TEXT,
    root_ts         TEXT,                      -- learnt from chat.postMessage
    updated_at      BIGINT  NOT NULL
);
CREATE INDEX incidents_open_by_channel ON incidents (channel, state, id);

CREATE TABLE incident_events (
    id          BIGSERIAL PRIMARY KEY,
    incident_id BIGINT  NOT NULL REFERENCES incidents (id),
    occurred_at BIGINT  NOT NULL,
    actor       TEXT    NOT NULL,              -- Slack user id, or "bot"
    kind        TEXT    NOT NULL,
    text        TEXT    NOT NULL
);
CREATE INDEX incident_events_by_incident ON incident_events (incident_id, id);

-- Every Slack write. A lane is the ordering unit (a channel, or one
-- response_url): rows in a lane are delivered strictly in id order.
CREATE TABLE outbox (
    id              BIGSERIAL PRIMARY KEY,
    lane            TEXT    NOT NULL,
    kind            TEXT    NOT NULL,          -- post | post_root | post_thread | update_root | respond
    channel         TEXT,
    incident_id     BIGINT  REFERENCES incidents (id),
    thread_ts       TEXT,
    response_url    TEXT,
    notify_url      TEXT,                      -- where to report a permanent failure
    payload         TEXT    NOT NULL,          -- JSON message content
    status          TEXT    NOT NULL,          -- pending | sent | failed | superseded
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    sent_ts         TEXT,
    created_at      BIGINT  NOT NULL,
    finished_at     BIGINT
);
CREATE INDEX outbox_pending ON outbox (status, lane, id);

CREATE TABLE slack_events (
    event_id    TEXT    PRIMARY KEY,
    received_at BIGINT  NOT NULL
);
