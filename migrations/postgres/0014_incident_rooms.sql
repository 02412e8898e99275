-- Dedicated incident channels ("rooms") for the severities that want one.
-- room_state: NULL = the incident lives in its #incidents thread only;
-- 'pending' = the outbox is creating the room; 'made' = room_channel holds
-- its id (written once, by a conditional update); 'failed' = it could not
-- be made and everything meant for it goes to the thread instead;
-- 'archived' = archived after the resolve (room_channel kept, and what a
-- reopened incident says goes to the thread).
-- room_name: the name the create step asked Slack for last, stored before
-- the call, so a retry that gets name_taken for it adopts the channel an
-- unanswered attempt made instead of making another.
-- archive_at: when the room of a resolved incident is archived (resolved_at
-- + incidents.archive_after_hours); cleared by reopen and once queued.
ALTER TABLE incidents ADD COLUMN room_state TEXT;
ALTER TABLE incidents ADD COLUMN room_channel TEXT;
ALTER TABLE incidents ADD COLUMN room_name TEXT;
ALTER TABLE incidents ADD COLUMN archive_at BIGINT;
CREATE INDEX incidents_by_room ON incidents (room_channel) WHERE room_channel IS NOT NULL;
CREATE INDEX incidents_archive_due ON incidents (archive_at) WHERE archive_at IS NOT NULL;

-- Messages pinned (or marked with the configured emoji) in a room or an
-- incident thread: one timeline entry per message, whichever events say so.
CREATE TABLE incident_pins (
    incident_id BIGINT  NOT NULL REFERENCES incidents (id),
    message_ts  TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    added_at    BIGINT  NOT NULL,
    PRIMARY KEY (incident_id, message_ts)
);

-- Whether a room is still being made (`outbox::rows::room_of`): a pending
-- room with no create step left goes to the thread.
CREATE INDEX outbox_room_steps ON outbox (incident_id) WHERE kind = 'room' AND status = 'pending';

-- Which incident a pinned message's thread belongs to (`pins::incident_of`
-- looks its root up by channel and ts on every pin and reaction).
CREATE INDEX slack_messages_by_ts ON slack_messages (channel, ts);
