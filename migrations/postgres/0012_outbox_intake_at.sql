-- Metrics (issue 11): an alert's own post remembers when its webhook was
-- received, so the outbox can observe the alert → Slack delay when Slack
-- accepts the post, whichever replica received it. NULL for everything else.
ALTER TABLE outbox ADD COLUMN intake_at BIGINT;
