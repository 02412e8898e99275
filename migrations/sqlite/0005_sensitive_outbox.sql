-- Sensitive outbox rows (issue 9: password-recovery links).
--
-- A row marked sensitive carries a secret for one person (a recovery link
-- sent as a direct message). It waits in the outbox like any other row, so a
-- rate-limited or unreachable Slack does not lose it, but the moment it is
-- delivered or given up its payload is replaced by a placeholder: the state
-- store keeps no copy of the secret.
ALTER TABLE outbox ADD COLUMN sensitive INTEGER NOT NULL DEFAULT 0;
