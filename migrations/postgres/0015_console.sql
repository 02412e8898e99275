-- The incident console (issue 12).
--
-- console_links: the one-time sign-in links `/incident console` answers
-- with, one per person. Only the SHA-256 of the link's random token is stored; a link is
-- used by one conditional UPDATE (`used_at IS NULL AND expires_at > now`),
-- so two requests or two replicas cannot both sign in with it.
-- console_sessions: the browser sessions those links open, again stored
-- only as the SHA-256 of the cookie's value, with the session's CSRF token
-- for forms. The janitor deletes both once expired.
CREATE TABLE console_links (
    token_hash TEXT    PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    used_at    BIGINT
);
CREATE INDEX console_links_by_expiry ON console_links (expires_at);
-- One link per person, enforced: `issue_link` upserts on it, so two
-- `/incident console` at once (two replicas) cannot leave two live links.
CREATE UNIQUE INDEX console_links_one_per_user ON console_links (user_id);

CREATE TABLE console_sessions (
    token_hash TEXT    PRIMARY KEY,
    user_id    TEXT    NOT NULL,
    csrf       TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
CREATE INDEX console_sessions_by_user ON console_sessions (user_id, created_at);

-- The console's pages read by these: an incident's timeline in time order
-- (a page of it, the chart, its count), an incident's approvals, and
-- incidents by declaration time (MTTA/MTTR per week). The incident list
-- needs none: it walks the primary key newest first and stops at a page.
CREATE INDEX incidents_by_declared ON incidents (declared_at);
CREATE INDEX incident_events_by_incident_time ON incident_events (incident_id, occurred_at, id);
CREATE INDEX approval_requests_by_incident ON approval_requests (incident_id, id);
