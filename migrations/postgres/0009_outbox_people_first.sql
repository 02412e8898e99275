-- People first (issue 10): within a channel, what a person caused (command
-- replies, incident roots and updates, approval cards and results) is
-- delivered before queued automated posts (alerts, automatic diagnostics),
-- at the same per-channel pace. Order is kept per `order_key` (an incident's
-- root, thread and updates share one), no longer per whole channel.
ALTER TABLE outbox ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN order_key TEXT NOT NULL DEFAULT '';
CREATE INDEX outbox_order ON outbox (lane, order_key, id) WHERE status = 'pending';
