-- Read state: each participant keeps the last seq it marked read. A room's unread count is its
-- newest seq (an index lookup, room_seq) minus that: never a count over the messages.
ALTER TABLE chat_participants ADD COLUMN last_read BIGINT NOT NULL DEFAULT 0;
