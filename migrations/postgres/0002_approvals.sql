-- Approvals and the generic message keys they need.
--
-- slack_messages remembers the ts of posts that are later updated or
-- replied to, under a key ("incident:42", "approval:7"); outbox rows name the
-- message they update (message_key) or the thread they reply in (thread_key).
-- This replaces incidents.root_ts.

CREATE TABLE slack_messages (
    key     TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    ts      TEXT NOT NULL
);
ALTER TABLE outbox ADD COLUMN message_key TEXT;
ALTER TABLE outbox ADD COLUMN thread_key TEXT;
CREATE INDEX outbox_message_key ON outbox (message_key, status);
ALTER TABLE incidents DROP COLUMN root_ts;

-- pending → approved → applying → applied | failed | rolled_back;
-- pending → denied | expired; applying → interrupted.
CREATE TABLE approval_requests (
    id               BIGSERIAL PRIMARY KEY,
    command          TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    words            TEXT    NOT NULL,        -- JSON array of the typed words
    target           TEXT    NOT NULL,
    channel          TEXT    NOT NULL,
    incident_id      BIGINT  REFERENCES incidents (id),
    requested_by     TEXT    NOT NULL,
    requested_at     BIGINT  NOT NULL,
    expires_at       BIGINT  NOT NULL,
    approver_level   TEXT    NOT NULL,
    approvals_needed BIGINT  NOT NULL,
    plan             TEXT    NOT NULL,        -- JSON of the plan shown on the card
    plan_hash        TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    decided_by       TEXT,
    decided_at       BIGINT,
    applying_at      BIGINT,
    finished_at      BIGINT,
    result           TEXT,
    updated_at       BIGINT  NOT NULL
);
CREATE INDEX approval_requests_by_state ON approval_requests (state, expires_at);

CREATE TABLE approval_votes (
    request_id BIGINT  NOT NULL REFERENCES approval_requests (id),
    approver   TEXT    NOT NULL,
    voted_at   BIGINT  NOT NULL,
    PRIMARY KEY (request_id, approver)
);

CREATE TABLE audit_events (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT  NOT NULL,
    actor       TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    request_id  BIGINT,
    incident_id BIGINT,
    detail      TEXT    NOT NULL
);
CREATE INDEX audit_events_by_request ON audit_events (request_id, id);
