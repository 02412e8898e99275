-- Approvals apply exactly what was approved (issue 8).
--
-- snapshot: the action's whole definition when requested (its SQL, the
--   rollback script's text, the deploy hook's target), covered by plan_hash
--   with the planned rows; the apply runs this, never a file re-read later.
-- lease_until: the applying instance renews it while it works; a request
--   left 'applying' past its lease was abandoned.
-- target_xid: the apply transaction's id on the target, recorded just
--   before COMMIT, so an abandoned apply can be resolved by asking the
--   target whether it committed (pg_xact_status) instead of guessing.
ALTER TABLE approval_requests ADD COLUMN snapshot TEXT;
ALTER TABLE approval_requests ADD COLUMN lease_until INTEGER;
ALTER TABLE approval_requests ADD COLUMN target_xid TEXT;

-- Where an audited action came from: 'slack', or 'terminal (os user alice)'.
ALTER TABLE audit_events ADD COLUMN via TEXT;
