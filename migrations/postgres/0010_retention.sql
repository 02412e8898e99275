-- Retention (issue 10): the janitor deletes rows older than `[retention]`
-- in small batches. These indexes let each batch find its oldest rows
-- directly instead of scanning a table that may hold millions.
CREATE INDEX slack_events_by_time ON slack_events (received_at);
CREATE INDEX outbox_finished ON outbox (status, finished_at);
CREATE INDEX alerts_by_last_seen ON alerts (last_seen);
-- A message key is kept while an alert still updates or threads under it.
CREATE INDEX alerts_by_message_key ON alerts (message_key);
CREATE INDEX alerts_by_thread_key ON alerts (thread_key);
CREATE INDEX incident_events_by_time ON incident_events (occurred_at);
CREATE INDEX audit_events_by_time ON audit_events (at);
