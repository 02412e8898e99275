-- Follow-ups: statements an applied action scheduled for later (the GDPR
-- hard delete on day 30). The approved keys and the SQL come from the
-- request's stored plan and snapshot; this row says when it runs and how it
-- ended. scheduled → running → done | failed, or scheduled → cancelled.
CREATE TABLE followups (
    id           BIGSERIAL PRIMARY KEY,
    request_id   BIGINT NOT NULL REFERENCES approval_requests (id),
    title        TEXT   NOT NULL,
    due_at       BIGINT NOT NULL,
    state        TEXT   NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    lease_until  BIGINT,
    lease_owner  TEXT,
    result       TEXT,
    created_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    cancelled_by TEXT
);
CREATE INDEX followups_due ON followups (state, due_at);
-- One follow-up per request, however often its result is recorded.
CREATE UNIQUE INDEX followups_once ON followups (request_id);
