-- The last event announced in a new_room_event of each room, so the next output's
-- last_sent_event_id is the same after a restart as in an uninterrupted run.
ALTER TABLE rooms ADD COLUMN last_sent_event_id text;
