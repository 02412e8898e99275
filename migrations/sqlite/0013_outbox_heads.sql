-- The worker asks for the oldest pending row of each (lane, order_key) and
-- the best priority waiting under it. With priority in the index that is one
-- scan of the index, never a look-up per pending row: during an alert storm
-- thousands of paced posts wait, and the question is asked on every wake.
CREATE INDEX outbox_heads ON outbox (lane, order_key, id, priority) WHERE status = 'pending';
DROP INDEX outbox_order;
